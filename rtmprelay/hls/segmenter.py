"""MPEG-TS segments and a live playlist from clean FLV audio/video bodies (copy mode).

``TsSegmenter`` takes the relay's cleaned messages in decode order: H.264 in
AVCC framing with its AVCDecoderConfigurationRecord, AAC raw frames with their
AudioSpecificConfig. Nothing is re-encoded; PyAV's ``mpegts`` muxer writes the
packets as they are, which needs two things from us:

- H.264 as Annex B: each AVCC access unit is rewritten with 4-byte start codes,
  and the SPS/PPS from the config record go in front of every keyframe, so each
  segment decodes on its own. The stream's extradata is the Annex B SPS/PPS.
- AAC raw, with ``extradata`` = AudioSpecificConfig: the muxer writes the ADTS
  headers itself (without extradata it refuses raw AAC).

Packets are stamped in a 1/1000 time base (dts = the message timestamp,
pts = dts + composition time); the muxer rescales to 90 kHz.

A segment is cut at the first video keyframe at or after ``target_duration_s``
since the segment began. Each file is written as ``<name>.tmp`` and renamed
into place when closed; only then is it added to the playlist, ``index.m3u8``
rewritten (also via a rename), and the segments that left the window deleted.
Memory is bounded by the one open muxer.

After ``restart()`` the new publisher's clock (which starts again, usually at
0) is shifted so that its first keyframe lands where the last segment ended:
the segments carry ``#EXT-X-DISCONTINUITY`` as the spec asks, and their
timestamps still only grow, which players that ignore the tag (ffmpeg's HLS
demuxer among them) need.

Bad input raises ``MediaError``; the segmenter then drops video until the next
keyframe and carries on.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path

import av

from rtmprelay.errors import MediaError
from rtmprelay.hls.playlist import MediaPlaylist
from rtmprelay.media.aac import parse_aac_config
from rtmprelay.media.avcc import AVCConfig, parse_avc_config, split_nal_units, nal_units_to_annexb
from rtmprelay.media.tags import (
    AAC_PACKET_RAW,
    AAC_PACKET_SEQUENCE_HEADER,
    PACKET_CODED_FRAMES,
    PACKET_SEQUENCE_HEADER,
    parse_audio_tag,
    parse_video_tag,
)

__all__ = ["TsSegmenter"]

AUDIO, VIDEO = 8, 9
PLAYLIST_NAME = "index.m3u8"
_TIME_BASE = Fraction(1, 1000)


def _replace_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class _OpenSegment:
    """One segment being muxed: its muxer, streams and presentation span (ms)."""

    def __init__(self, path: Path, avc: AVCConfig, aac: bytes | None, start_ms: int) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.start_ms = start_ms
        self.end_ms = start_ms
        self.container = av.open(str(self.tmp), "w", format="mpegts")
        try:
            self.video = self.container.add_stream("h264")
            self.video.codec_context.extradata = nal_units_to_annexb(avc.sps + avc.pps)
            self.video.time_base = _TIME_BASE
            self.audio = None
            if aac is not None:
                rate = parse_aac_config(aac).sample_rate
                self.audio = self.container.add_stream("aac", rate=rate)
                self.audio.codec_context.extradata = aac
                self.audio.time_base = _TIME_BASE
        except BaseException:
            self.abort()
            raise
        self._last_dts: dict[int, int] = {}

    def mux(self, stream: av.stream.Stream, data: bytes, dts: int, pts: int, key: bool) -> None:
        last = self._last_dts.get(stream.index)
        if last is not None and dts <= last:
            raise MediaError(f"timestamp {dts} ms does not follow {last} ms", "segment mux")
        packet = av.Packet(data)
        packet.stream = stream
        packet.time_base = _TIME_BASE
        packet.dts = dts
        packet.pts = pts
        packet.is_keyframe = key
        try:
            self.container.mux(packet)
        except av.FFmpegError as exc:
            raise MediaError(f"muxer refused a packet ({exc})", "segment mux") from None
        self._last_dts[stream.index] = dts

    def close(self) -> None:
        self.container.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


class TsSegmenter:
    """Live HLS in ``out_dir``: ``<prefix><n>.ts`` segments and ``index.m3u8``."""

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        target_duration_s: float = 2.0,
        window: int = 5,
        name_prefix: str = "seg",
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.target_ms = round(target_duration_s * 1000)
        self.name_prefix = name_prefix
        self.playlist = MediaPlaylist(window)
        self._avc: AVCConfig | None = None
        self._aac: bytes | None = None
        self._segment: _OpenSegment | None = None
        self._sequence = 0
        self._discontinuity = False
        self._need_keyframe = True
        self._frame_ms = 0  # last step between video timestamps, for the last frame's length
        self._last_video_ms: int | None = None
        self._finished = False
        self._offset_ms = 0  # added to the publisher's timestamps
        self._rebase = False  # set by restart(): the next keyframe sets _offset_ms
        self._end_ms = 0  # where the last closed segment ended, output clock

    @property
    def playlist_path(self) -> Path:
        return self.out_dir / PLAYLIST_NAME

    def push(self, type_id: int, timestamp_ms: int, payload: bytes) -> None:
        """One audio (8) or video (9) message body, in decode order."""
        if self._finished:
            raise ValueError("the segmenter has finished")
        if type_id == VIDEO:
            try:
                self._push_video(timestamp_ms, payload)
            except MediaError:
                self._need_keyframe = True
                raise
        elif type_id == AUDIO:
            self._push_audio(timestamp_ms, payload)

    def restart(self) -> None:
        """The publisher reconnected: close this segment; the next one is a discontinuity."""
        self._close_segment()
        self._discontinuity = True
        self._rebase = True
        self._need_keyframe = True
        self._avc = None
        self._aac = None
        self._last_video_ms = None

    def reopen(self) -> None:
        """After ``finish()``: the publisher came back; go on with the same playlist,
        EXT-X-ENDLIST removed and a discontinuity before the next segment."""
        if self._finished:
            self._finished = False
            self.playlist.reopen()
        self.restart()

    def finish(self) -> None:
        """Close the open segment and end the playlist (``#EXT-X-ENDLIST``)."""
        if self._finished:
            return
        self._close_segment()
        self._finished = True
        self.playlist.end()
        self._write_playlist()

    # --- video and audio

    def _push_video(self, timestamp_ms: int, payload: bytes) -> None:
        tag = parse_video_tag(payload)
        if tag.codec not in (7, b"avc1"):
            raise MediaError(f"video codec {tag.codec!r} is not H.264", "video tag byte 0")
        if tag.packet_type == PACKET_SEQUENCE_HEADER:
            avc = parse_avc_config(tag.data)
            if self._avc is not None and avc != self._avc:
                self._close_segment()  # new parameters: the next keyframe opens a fresh muxer
            self._avc = avc
            return
        if tag.packet_type != PACKET_CODED_FRAMES:
            return  # end of sequence, metadata: nothing to mux
        if self._avc is None:
            raise MediaError("video frame before the AVC sequence header", "video tag byte 1")
        key = tag.is_keyframe
        if self._need_keyframe and not key:
            return
        nals = [nal for nal in split_nal_units(tag.data, self._avc.nal_length_size) if nal]
        if key:
            nals = [*self._avc.sps, *self._avc.pps, *nals]
        if key and self._rebase:
            self._offset_ms = self._end_ms - (timestamp_ms + tag.composition_time)
            self._rebase = False
        timestamp_ms += self._offset_ms
        pts = timestamp_ms + tag.composition_time
        # segments are measured in presentation time, from keyframe to keyframe
        if key and (self._segment is None or pts - self._segment.start_ms >= self.target_ms):
            self._close_segment(end_ms=pts)
            self._open_segment(self._avc, pts)
        segment = self._segment
        if segment is None:
            return
        segment.mux(segment.video, nal_units_to_annexb(nals), timestamp_ms, pts, key)
        self._need_keyframe = False
        if self._last_video_ms is not None and timestamp_ms > self._last_video_ms:
            self._frame_ms = timestamp_ms - self._last_video_ms
        self._last_video_ms = timestamp_ms
        # a stream cut short (finish, restart) ends after its latest picture
        segment.end_ms = max(segment.end_ms, pts + self._frame_ms)

    def _push_audio(self, timestamp_ms: int, payload: bytes) -> None:
        tag = parse_audio_tag(payload)
        if tag.aac_packet_type is None:
            raise MediaError(f"audio format {tag.sound_format} is not AAC", "audio tag byte 0")
        if tag.aac_packet_type == AAC_PACKET_SEQUENCE_HEADER:
            parse_aac_config(tag.data)  # raises MediaError when it is not one
            self._aac = tag.data
            return
        if tag.aac_packet_type != AAC_PACKET_RAW:
            return
        segment = self._segment
        if segment is None or segment.audio is None:
            return  # before the first keyframe, or no config when the segment opened
        timestamp_ms += self._offset_ms
        segment.mux(segment.audio, tag.data, timestamp_ms, timestamp_ms, True)

    # --- segments

    def _open_segment(self, avc: AVCConfig, start_ms: int) -> None:
        path = self.out_dir / f"{self.name_prefix}{self._sequence}.ts"
        self._sequence += 1
        try:
            self._segment = _OpenSegment(path, avc, self._aac, start_ms)
        except av.FFmpegError as exc:
            raise MediaError(f"cannot open a segment ({exc})", str(path)) from None

    def _close_segment(self, end_ms: int | None = None) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        try:
            segment.close()
        except (av.FFmpegError, OSError):
            segment.abort()
            raise
        end = segment.end_ms if end_ms is None else end_ms
        self._end_ms = end
        removed = self.playlist.add_segment(
            segment.path.name, (end - segment.start_ms) / 1000, self._discontinuity
        )
        self._discontinuity = False
        self._write_playlist()
        for name in removed:
            with contextlib.suppress(FileNotFoundError):
                (self.out_dir / name).unlink()

    def _write_playlist(self) -> None:
        _replace_atomically(self.playlist_path, self.playlist.render().encode())
