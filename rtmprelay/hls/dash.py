"""A live MPEG-DASH manifest (ISO/IEC 23009-1) for CMAF tracks, as a pure model:
values in, XML text out. No clock, no files.

Rules kept here:

- Profiles ``isoff-live`` and CMAF; one AdaptationSet per track kind (video,
  audio), each with one Representation, because players do not play an
  audio+video multiplexed representation.
- Addressing is ``SegmentTemplate`` with ``$Number$`` and a ``SegmentTimeline``
  that lists exactly the segments given (those on disk): ``startNumber`` is the
  first one's number, so the numbers must follow one another. ``<S>`` carries
  ``t`` at the start of every run and ``r`` for repeats of the same duration
  with no gap, so a gap in a track shows as a new ``t``.
- Times in the timeline are presentation times in the track timescale;
  ``presentationTimeOffset`` is the track time that the Period's start maps to.
- ``type="dynamic"`` needs ``availabilityStartTime``, ``publishTime``,
  ``minimumUpdatePeriod``, ``timeShiftBufferDepth`` and
  ``suggestedPresentationDelay``; Period ``start`` is seconds after
  availabilityStartTime. ``type="static"`` has ``mediaPresentationDuration``
  instead and no availability times.
- Durations print as ``PT<seconds>.<millis>S``, dates as UTC with milliseconds.
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from fractions import Fraction

import attrs

__all__ = ["DashPeriod", "DashRepresentation", "Manifest", "TimelineSegment", "render_mpd"]

NAMESPACE = "urn:mpeg:dash:schema:mpd:2011"
PROFILES = "urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019"
_CHANNEL_SCHEME = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"


@attrs.frozen
class TimelineSegment:
    """One segment of a track: its $Number$, start and duration (track timescale)."""

    number: int
    t: int
    d: int


@attrs.frozen
class DashRepresentation:
    """One CMAF track in one Period."""

    kind: str  # "video" or "audio"
    id: str
    codecs: str
    bandwidth: int
    timescale: int
    initialization: str
    media: str  # e.g. "video_$Number$.m4s"
    presentation_time_offset: int
    segments: tuple[TimelineSegment, ...]
    width: int | None = None
    height: int | None = None
    frame_rate: Fraction | None = None
    sample_rate: int | None = None
    channels: int | None = None


@attrs.frozen
class DashPeriod:
    id: str
    start: Fraction  # seconds
    representations: tuple[DashRepresentation, ...]


@attrs.frozen
class Manifest:
    periods: tuple[DashPeriod, ...]
    dynamic: bool
    min_buffer_s: Fraction
    #: Dynamic only: epoch seconds.
    availability_start: Fraction | None = None
    publish_time: Fraction | None = None
    minimum_update_period_s: Fraction | None = None
    time_shift_buffer_s: Fraction | None = None
    suggested_delay_s: Fraction | None = None
    #: Static only.
    duration_s: Fraction | None = None


def duration(seconds: Fraction | float) -> str:
    """xs:duration to the millisecond: ``PT2.000S``."""
    millis = round(Fraction(seconds) * 1000)
    if millis < 0:
        raise ValueError(f"negative duration {seconds!r}")
    return f"PT{millis // 1000}.{millis % 1000:03d}S"


def date_time(epoch_s: Fraction | float) -> str:
    """xs:dateTime in UTC to the millisecond: ``2024-05-01T12:00:00.123Z``."""
    millis = round(Fraction(epoch_s) * 1000)
    moment = datetime.datetime.fromtimestamp(millis // 1000, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis % 1000:03d}Z"


def _frame_rate(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def _timeline(parent: ET.Element, segments: tuple[TimelineSegment, ...]) -> None:
    timeline = ET.SubElement(parent, "SegmentTimeline")
    runs: list[list[int]] = []  # [t, d, r]
    for previous, segment in zip((None, *segments), segments):
        if previous is not None and segment.number != previous.number + 1:
            raise ValueError(f"segment {segment.number} does not follow {previous.number}")
        if runs:
            t, d, r = runs[-1]
            if segment.d == d and segment.t == t + d * (r + 1):
                runs[-1][2] += 1
                continue
        runs.append([segment.t, segment.d, 0])
    for t, d, r in runs:
        element = ET.SubElement(timeline, "S", t=str(t), d=str(d))
        if r:
            element.set("r", str(r))


def _adaptation_set(period: ET.Element, index: int, rep: DashRepresentation) -> None:
    if not rep.segments:
        raise ValueError(f"representation {rep.id!r} has no segments")
    adaptation = ET.SubElement(
        period,
        "AdaptationSet",
        id=str(index),
        contentType=rep.kind,
        mimeType=f"{rep.kind}/mp4",
        segmentAlignment="true",
        startWithSAP="1",
    )
    if rep.kind == "audio":
        adaptation.set("lang", "und")
    template = ET.SubElement(
        adaptation,
        "SegmentTemplate",
        timescale=str(rep.timescale),
        presentationTimeOffset=str(rep.presentation_time_offset),
        initialization=rep.initialization,
        media=rep.media,
        startNumber=str(rep.segments[0].number),
    )
    _timeline(template, rep.segments)
    representation = ET.SubElement(
        adaptation, "Representation", id=rep.id, codecs=rep.codecs, bandwidth=str(rep.bandwidth)
    )
    if rep.kind == "video":
        if rep.width is not None and rep.height is not None:
            representation.set("width", str(rep.width))
            representation.set("height", str(rep.height))
            representation.set("sar", "1:1")
        if rep.frame_rate is not None:
            representation.set("frameRate", _frame_rate(rep.frame_rate))
    else:
        if rep.sample_rate is not None:
            representation.set("audioSamplingRate", str(rep.sample_rate))
        if rep.channels is not None:
            ET.SubElement(
                representation, "AudioChannelConfiguration", schemeIdUri=_CHANNEL_SCHEME, value=str(rep.channels)
            )


def render_mpd(manifest: Manifest) -> str:
    """The MPD as UTF-8 XML text with a declaration, ending with a newline."""
    mpd = ET.Element("MPD", xmlns=NAMESPACE, profiles=PROFILES)
    if manifest.dynamic:
        if manifest.availability_start is None or manifest.publish_time is None:
            raise ValueError("a dynamic MPD needs availability_start and publish_time")
        mpd.set("type", "dynamic")
        mpd.set("availabilityStartTime", date_time(manifest.availability_start))
        mpd.set("publishTime", date_time(manifest.publish_time))
        if manifest.minimum_update_period_s is not None:
            mpd.set("minimumUpdatePeriod", duration(manifest.minimum_update_period_s))
        if manifest.time_shift_buffer_s is not None:
            mpd.set("timeShiftBufferDepth", duration(manifest.time_shift_buffer_s))
        if manifest.suggested_delay_s is not None:
            mpd.set("suggestedPresentationDelay", duration(manifest.suggested_delay_s))
    else:
        if manifest.duration_s is None:
            raise ValueError("a static MPD needs its duration")
        mpd.set("type", "static")
        mpd.set("mediaPresentationDuration", duration(manifest.duration_s))
    mpd.set("minBufferTime", duration(manifest.min_buffer_s))
    for period in manifest.periods:
        element = ET.SubElement(mpd, "Period", id=period.id, start=duration(period.start))
        for index, representation in enumerate(period.representations):
            _adaptation_set(element, index, representation)
    ET.indent(mpd)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(mpd, encoding="unicode") + "\n"
