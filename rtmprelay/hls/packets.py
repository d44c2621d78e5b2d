"""What a segmenter is fed: encoded packets and the formats they belong to.

Both HLS modes end here. Copy mode turns the cleaned FLV bodies into these
values (AVCC -> Annex B, AAC raw frames as they are); transcode mode gets them
straight from its encoders. The segmenter does not care which.

Timestamps are integers in ``time_base`` (a Fraction of a second), so a 30 fps
encode keeps exact frame times (1/90000 or 1/30) while copy mode keeps the RTMP
milliseconds (1/1000).
"""

from __future__ import annotations

from fractions import Fraction

import attrs

__all__ = ["AudioFormat", "EncodedPacket", "VideoFormat", "avc_codec_string"]

VIDEO = "video"
AUDIO = "audio"


def avc_codec_string(sps: bytes) -> str:
    """RFC 6381 ``avc1.PPCCLL`` from an SPS NAL unit (header byte first)."""
    if len(sps) < 4:
        return "avc1"
    return f"avc1.{sps[1]:02x}{sps[2]:02x}{sps[3]:02x}"


@attrs.frozen
class VideoFormat:
    """H.264 parameters of the packets that follow."""

    #: SPS and PPS NAL units, each behind a 4-byte Annex B start code.
    extradata: bytes
    width: int
    height: int
    #: RFC 6381 codec string for playlists and manifests, e.g. ``avc1.42c01f``.
    codec: str = "avc1"
    #: Frames per second when known (SPS timing, encoder setting); manifests
    #: declare it, nothing is timed by it.
    frame_rate: Fraction | None = None


@attrs.frozen
class AudioFormat:
    """AAC parameters of the packets that follow."""

    #: The AudioSpecificConfig (ISO 14496-3 1.6.2.1).
    config: bytes
    sample_rate: int
    channels: int
    #: RFC 6381 codec string, e.g. ``mp4a.40.2``.
    codec: str = "mp4a.40.2"
    #: Samples per frame at ``sample_rate`` (1024, or 960 per the config's
    #: frameLengthFlag): fMP4 gives each frame this duration unless the
    #: timestamps show a gap.
    frame_samples: int = 1024


@attrs.frozen
class EncodedPacket:
    """One access unit or AAC frame, in decode order within its kind."""

    kind: str  # VIDEO or AUDIO
    #: Video: an Annex B access unit, SPS and PPS in front of every IDR.
    #: Audio: one raw AAC frame (no ADTS header).
    data: bytes
    dts: int
    pts: int
    time_base: Fraction
    key: bool

    def seconds(self, value: int | None = None) -> Fraction:
        """``value`` (default: the pts) in seconds."""
        return (self.pts if value is None else value) * self.time_base
