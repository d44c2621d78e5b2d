"""Checking what came out: FLV tags, payload runs, and a full decode with PyAV.

Deliberately independent of ``rtmprelay.media``: the relay's own FLV code is
what these checks judge, so they must not share its bugs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from rtmprelay.errors import MediaError

__all__ = [
    "DecodeReport",
    "FlvTag",
    "PayloadRun",
    "assert_payload_subsequence",
    "decode_check",
    "media_payloads",
    "read_flv_tags",
    "sequence_headers",
]

AUDIO, VIDEO, SCRIPT = 8, 9, 18
KINDS = {"audio": AUDIO, "video": VIDEO, "script": SCRIPT}

FlvSource = str | os.PathLike[str] | bytes | Sequence["FlvTag"]


class FlvTag(NamedTuple):
    """One FLV tag; unpacks as ``(tag_type, timestamp, payload)``."""

    tag_type: int  # 8 audio, 9 video, 18 script data
    timestamp: int  # ms, with the extended byte applied
    payload: bytes

    @property
    def kind(self) -> str:
        return {AUDIO: "audio", VIDEO: "video", SCRIPT: "script"}.get(self.tag_type, "other")

    @property
    def is_header(self) -> bool:
        """Codec configuration or end of sequence, not a coded frame.

        AVC/HEVC (codec 7/12) packet type 0 or 2, AAC packet type 0, and the
        enhanced-RTMP video forms (SequenceStart 0, SequenceEnd 2, Metadata 4).
        """
        data = self.payload
        if self.tag_type == VIDEO and len(data) >= 2:
            if data[0] & 0x80:  # enhanced RTMP: packet type in the low nibble
                return (data[0] & 0x0F) in (0, 2, 4)
            return (data[0] & 0x0F) in (7, 12) and data[1] in (0, 2)
        if self.tag_type == AUDIO and len(data) >= 2:
            return (data[0] >> 4) == 10 and data[1] == 0
        return False

    @property
    def is_keyframe(self) -> bool:
        return self.tag_type == VIDEO and bool(self.payload) and (self.payload[0] >> 4) & 0x7 == 1


def read_flv_tags(source: str | os.PathLike[str] | bytes, *, strict: bool = False) -> list[FlvTag]:
    """Every tag of an FLV file (path or bytes).

    A truncated last tag (a file still being written, a killed recorder) is
    dropped, unless ``strict``, which raises `MediaError` for it. A file that
    does not start with an FLV header always raises `MediaError`.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    view = memoryview(data)
    if len(data) < 9 or data[:3] != b"FLV":
        raise MediaError("not an FLV file", "offset 0")
    offset = int.from_bytes(view[5:9], "big") + 4  # header, then PreviousTagSize0
    tags = []
    while offset < len(data):
        if offset + 11 > len(data):
            break
        header = view[offset:offset + 11]
        size = int.from_bytes(header[1:4], "big")
        end = offset + 11 + size
        if end > len(data):
            break
        timestamp = int.from_bytes(header[4:7], "big") | (header[7] << 24)
        tags.append(FlvTag(header[0] & 0x1F, timestamp, bytes(view[offset + 11:end])))
        offset = end + 4
    else:
        return tags
    if strict:
        raise MediaError(f"truncated tag after {len(tags)} tags", f"offset {offset}")
    return tags


def _tags(source: FlvSource) -> Sequence[FlvTag]:
    if isinstance(source, (str, bytes, os.PathLike)):
        return read_flv_tags(source)
    return source


def media_payloads(tags: FlvSource, kind: str, *, headers: bool = False) -> list[bytes]:
    """Payloads of the ``kind`` ("audio" or "video") tags, in order.

    Sequence headers and end-of-sequence tags are left out unless
    ``headers``: servers repeat or drop them freely (nginx writes the AAC
    header twice into its recordings), so frames are compared on their own
    and headers with `sequence_headers`.
    """
    tag_type = KINDS[kind]
    return [t.payload for t in _tags(tags) if t.tag_type == tag_type and (headers or not t.is_header)]


def sequence_headers(tags: FlvSource, kind: str) -> list[bytes]:
    """The distinct codec configuration payloads of ``kind``, first seen first."""
    tag_type = KINDS[kind]
    seen: dict[bytes, None] = {}
    for tag in _tags(tags):
        if tag.tag_type == tag_type and tag.is_header:
            seen.setdefault(tag.payload, None)
    return list(seen)


class PayloadRun(NamedTuple):
    """Where a recorded sequence of payloads sits in the published one."""

    kind: str
    start: int  # index in the published payloads of the first recorded one
    count: int  # recorded payloads, all matching
    published: int  # published payloads in all

    @property
    def dropped_head(self) -> int:
        return self.start

    @property
    def dropped_tail(self) -> int:
        return self.published - self.start - self.count


def _describe(payload: bytes) -> str:
    digest = hashlib.sha1(payload).hexdigest()[:12]
    return f"{len(payload)} bytes sha1 {digest} starting {payload[:8].hex()}"


def _matching_run(published: Sequence[bytes], recorded: Sequence[bytes], start: int) -> int:
    n = 0
    while n < len(recorded) and start + n < len(published) and published[start + n] == recorded[n]:
        n += 1
    return n


def assert_payload_subsequence(
    published: FlvSource,
    recorded: FlvSource,
    *,
    kinds: Iterable[str] = ("video", "audio"),
    min_count: int = 1,
    check_headers: bool = True,
) -> dict[str, PayloadRun]:
    """Assert the recorded audio/video payloads are one contiguous run of the published.

    For each kind, the recorded frame payloads (headers aside) must equal
    published[start:start + n] for some start: the recorder may join late
    (nginx push starts at a keyframe) or stop early, but nothing in between
    may be lost, added, reordered or altered. With ``check_headers`` every
    recorded sequence header must be one that was published. At least
    ``min_count`` payloads of each kind must have been recorded.

    Returns the `PayloadRun` of each kind; raises ``AssertionError`` naming
    the first mismatch otherwise.
    """
    published_tags, recorded_tags = _tags(published), _tags(recorded)
    runs = {}
    for kind in kinds:
        pub = media_payloads(published_tags, kind)
        rec = media_payloads(recorded_tags, kind)
        if len(rec) < min_count:
            raise AssertionError(
                f"{kind}: {len(rec)} payloads recorded, expected at least {min_count} "
                f"(published {len(pub)})"
            )
        if check_headers:
            known = set(sequence_headers(published_tags, kind))
            for header in sequence_headers(recorded_tags, kind):
                if header not in known:
                    raise AssertionError(
                        f"{kind}: recorded sequence header {_describe(header)} was never "
                        f"published ({len(known)} published)"
                    )
        if not rec:
            runs[kind] = PayloadRun(kind, 0, 0, len(pub))
            continue
        starts = [i for i, p in enumerate(pub) if p == rec[0]]
        if not starts:
            index = {p: i for i, p in reversed(list(enumerate(pub)))}
            found = next(((k, index[p]) for k, p in enumerate(rec) if p in index), None)
            later = (
                f"; the first recorded payload that was published is #{found[0]} "
                f"(published #{found[1]})" if found else "; no recorded payload was published"
            )
            raise AssertionError(
                f"{kind}: recorded payload #0 ({_describe(rec[0])}) appears nowhere in the "
                f"{len(pub)} published payloads{later}"
            )
        best_start, best_len = max(
            ((s, _matching_run(pub, rec, s)) for s in starts), key=lambda item: item[1]
        )
        if best_len < len(rec):
            k = best_len
            where = best_start + k
            if where >= len(pub):
                theirs = "the published stream had already ended"
            else:
                theirs = f"published #{where} is {_describe(pub[where])}"
            raise AssertionError(
                f"{kind}: recorded payloads match published from #{best_start} for {k} of "
                f"{len(rec)}; first mismatch: recorded #{k} is {_describe(rec[k])}, {theirs}"
            )
        runs[kind] = PayloadRun(kind, best_start, len(rec), len(pub))
    return runs


class DecodeReport(NamedTuple):
    """What a full decode of a media file found."""

    video_frames: int
    audio_frames: int
    errors: list[str]  # exceptions raised by demuxing or decoding
    warnings: list[str]  # libav log lines at warning level or worse

    @property
    def clean(self) -> bool:
        return not self.errors and not self.warnings


def decode_check(path: str | os.PathLike[str]) -> DecodeReport:
    """Decode every audio and video frame of ``path`` with PyAV.

    Errors raised for a packet are recorded and decoding goes on; libav's own
    warnings and errors (concealment, missing references, bad headers) are
    captured from its log while the file is decoded.
    """
    import av
    import av.logging

    errors: list[str] = []
    counts = {"video": 0, "audio": 0}
    previous_level = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    try:
        with av.logging.Capture(local=False) as logs:
            try:
                with av.open(os.fspath(path)) as container:
                    streams = [s for s in container.streams if s.type in counts]
                    for stream in streams:
                        stream.thread_type = "NONE"
                    for packet in container.demux(streams):
                        try:
                            frames = packet.decode()
                        except av.error.FFmpegError as exc:
                            errors.append(f"{packet.stream.type} packet pts={packet.pts}: {exc}")
                            continue
                        counts[packet.stream.type] += len(frames)
            except av.error.FFmpegError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        av.logging.set_level(previous_level)
    warnings = [
        f"{name}: {message.strip()}"
        for level, name, message in logs
        if level <= av.logging.WARNING
    ]
    return DecodeReport(counts["video"], counts["audio"], errors, warnings)
