"""Transcode mode: the cleaned FLV stream decoded and encoded again with PyAV.

``Transcoder.push(type_id, timestamp_ms, payload)`` takes the relay's cleaned
audio/video message bodies and returns what a segmenter is fed
(``VideoFormat``, ``AudioFormat``, ``EncodedPacket``). The defaults are the old
relay's FFmpeg command: libx264 veryfast/zerolatency, baseline 3.1, 30 fps, an
IDR every 60 frames and no other (keyint_min 60, no scene cut), 2 Mbit/s with
maxrate 2.5M and bufsize 4M, yuv420p; AAC 48 kHz stereo 128k.

Why the output is constant-rate whatever comes in: the encoder's time base is
1/fps and every picture gets the next frame number. A decoded picture is
placed on that grid from its presentation time; a picture that lands on a
slot already filled is dropped, and a hole (the stream skipped ahead by less
than ``MAX_FILL_S``) is filled by repeating the previous picture, as FFmpeg's
``-r`` does. A larger jump re-bases the grid instead of inventing seconds of
frozen video.

Audio is resampled to the encoder's rate and layout and cut into the encoder's
1024-sample frames by an ``AudioFifo``; its clock is the sample count, started
from the first audio timestamp on the same origin as video, and re-synced when
the input drifts more than ``AUDIO_RESYNC_S`` from it (after a timestamp jump).

This module does no I/O and holds no thread; a worker runs it off the reactor.
Decoding or encoding errors raise ``MediaError``; the caller drops the
stream's video until the next keyframe (``need_keyframe``) and carries on.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Union

import av

from rtmprelay.errors import ConfigError, MediaError
from rtmprelay.hls.encoding import TranscodeSettings
from rtmprelay.hls.packets import AUDIO, VIDEO, AudioFormat, EncodedPacket, VideoFormat, avc_codec_string
from rtmprelay.media import flv
from rtmprelay.media.avc import NAL_PPS, NAL_SPS, nal_unit_type
from rtmprelay.media.avcc import annexb_to_nal_units, nal_units_to_annexb
from rtmprelay.media.elementary import AacSequenceHeader, AvcSequenceHeader, read_audio, read_video

__all__ = ["TranscodeSettings", "Transcoder", "TranscoderOutput"]

_MS = Fraction(1, 1000)
#: Holes up to this long are filled with repeated pictures; longer ones re-base.
MAX_FILL_S = 2.0
#: Audio whose timestamp strays this far from its sample clock is re-synced.
AUDIO_RESYNC_S = 0.2

TranscoderOutput = Union[VideoFormat, AudioFormat, EncodedPacket]


def _even(value: int) -> int:
    return max(2, value - value % 2)


class _VideoPath:
    """H.264 decoder -> frame-rate grid -> libx264."""

    def __init__(self, settings: TranscodeSettings) -> None:
        self.settings = settings
        self.time_base = Fraction(1, settings.fps)
        self.decoder: av.CodecContext | None = None
        self.encoder: av.CodecContext | None = None
        self.format: VideoFormat | None = None
        self._last_index: int | None = None
        self._grid_origin_ms: Fraction | None = None
        self._previous: av.VideoFrame | None = None
        self.repeated = 0
        self.dropped = 0

    def configure(self, avc_record: bytes) -> None:
        """A (new) AVC sequence header: a fresh decoder; the encoder goes on."""
        decoder = av.CodecContext.create("h264", "r")
        decoder.extradata = avc_record
        decoder.thread_count = 1  # frame threads would delay every picture by a frame per thread
        self.decoder = decoder

    def decode(self, data: bytes, dts_ms: int, pts_ms: int) -> list[av.VideoFrame]:
        if self.decoder is None:
            raise MediaError("video frame before the AVC sequence header", "video tag byte 1")
        packet = av.Packet(data)
        packet.time_base = _MS
        packet.dts = dts_ms
        packet.pts = pts_ms
        try:
            return self.decoder.decode(packet)
        except av.FFmpegError as exc:
            raise MediaError(f"H.264 decoder refused a frame ({exc})", f"video at {dts_ms} ms") from None

    def place(self, frame: av.VideoFrame, origin_ms: int) -> list[EncodedPacket | VideoFormat]:
        """Put a decoded picture on the output grid and encode what that yields."""
        pts_ms = Fraction(frame.pts or 0) * (frame.time_base or _MS) * 1000
        if self._grid_origin_ms is None:
            self._grid_origin_ms = Fraction(origin_ms)
        index = round((pts_ms - self._grid_origin_ms) * self.settings.fps / 1000)
        last = self._last_index
        if last is not None and index <= last:
            self.dropped += 1
            return []
        out: list[EncodedPacket | VideoFormat] = []
        if last is not None and index > last + 1:
            gap = index - last - 1
            if gap > MAX_FILL_S * self.settings.fps:
                # A jump: the grid follows the stream instead of inventing frozen video.
                self._grid_origin_ms += Fraction(gap * 1000, self.settings.fps)
                index = last + 1
            elif self._previous is not None:
                for missing in range(last + 1, index):
                    out += self._encode(self._previous, missing)
                    self.repeated += 1
        out += self._encode(frame, index)
        self._previous = frame
        self._last_index = index
        return out

    def flush(self) -> list[EncodedPacket | VideoFormat]:
        out: list[EncodedPacket | VideoFormat] = []
        if self.decoder is not None:
            try:
                frames = self.decoder.decode(None)
            except av.FFmpegError:
                frames = []
            for frame in frames:
                out += self.place(frame, 0)
        if self.encoder is not None:
            out += self._packets(self.encoder.encode(None))
        return out

    def _open_encoder(self, frame: av.VideoFrame) -> av.CodecContext:
        settings = self.settings
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width = settings.width or _even(frame.width)
        encoder.height = settings.height or _even(frame.height)
        encoder.pix_fmt = settings.pix_fmt
        encoder.time_base = self.time_base
        encoder.framerate = Fraction(settings.fps)
        encoder.bit_rate = settings.video_bitrate
        encoder.options = settings.x264_options()
        try:
            encoder.open()
        except av.FFmpegError as exc:
            raise ConfigError(f"libx264 refused the settings ({exc})") from None
        return encoder

    def _encode(self, frame: av.VideoFrame, index: int) -> list[EncodedPacket | VideoFormat]:
        if self.encoder is None:
            self.encoder = self._open_encoder(frame)
        encoder = self.encoder
        if (frame.width, frame.height, frame.format.name) != (encoder.width, encoder.height, encoder.pix_fmt):
            frame = frame.reformat(width=encoder.width, height=encoder.height, format=encoder.pix_fmt)
        frame.pts = index
        frame.time_base = self.time_base
        frame.pict_type = av.video.frame.PictureType.NONE
        try:
            return self._packets(encoder.encode(frame))
        except av.FFmpegError as exc:
            raise MediaError(f"libx264 refused a picture ({exc})", f"output frame {index}") from None

    def _packets(self, packets: list[av.Packet]) -> list[EncodedPacket | VideoFormat]:
        out: list[EncodedPacket | VideoFormat] = []
        for packet in packets:
            data = bytes(packet)
            if packet.is_keyframe and self.format is None:
                self.format = self._format_from(data)
                out.append(self.format)
            out.append(EncodedPacket(VIDEO, data, packet.dts, packet.pts, self.time_base, packet.is_keyframe))
        return out

    def _format_from(self, keyframe: bytes) -> VideoFormat:
        # Without a global header x264 puts SPS and PPS in front of every IDR: take them from there.
        nals = annexb_to_nal_units(keyframe)
        sps = [nal for nal in nals if nal_unit_type(nal) == NAL_SPS]
        pps = [nal for nal in nals if nal_unit_type(nal) == NAL_PPS]
        if not sps or not pps:
            raise MediaError("libx264 wrote a keyframe without SPS/PPS", "transcoder output")
        return VideoFormat(
            nal_units_to_annexb([sps[0], pps[0]]),
            self.encoder.width,
            self.encoder.height,
            avc_codec_string(sps[0]),
            frame_rate=Fraction(self.settings.fps),
        )


class _AudioPath:
    """AAC decoder -> resampler -> 1024-sample FIFO -> AAC encoder."""

    def __init__(self, settings: TranscodeSettings) -> None:
        self.settings = settings
        self.rate = settings.audio_rate
        self.time_base = Fraction(1, settings.audio_rate)
        layout = "stereo" if settings.audio_channels == 2 else "mono"
        self.decoder: av.CodecContext | None = None
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=self.rate)
        self.fifo = av.AudioFifo()
        self.encoder = av.CodecContext.create("aac", "w")
        self.encoder.sample_rate = self.rate
        self.encoder.layout = layout
        self.encoder.format = "fltp"
        self.encoder.bit_rate = settings.audio_bitrate
        self.encoder.time_base = self.time_base
        self.encoder.open()
        # The encoder's AudioSpecificConfig is known before any packet: announce it with the
        # input's, so a segmenter learns both formats before the first picture.
        self.format = AudioFormat(bytes(self.encoder.extradata), self.rate, settings.audio_channels)
        self._announced = False
        self._next_sample: int | None = None  # output clock, in samples since the origin

    def configure(self, config: bytes) -> list[AudioFormat]:
        decoder = av.CodecContext.create("aac", "r")
        decoder.extradata = config
        self.decoder = decoder
        if self._announced:
            return []
        self._announced = True
        return [self.format]

    def push(self, data: bytes, timestamp_ms: int, origin_ms: int) -> list[EncodedPacket | AudioFormat]:
        if self.decoder is None:
            raise MediaError("AAC frame before the AAC sequence header", "audio tag byte 1")
        packet = av.Packet(data)
        packet.time_base = _MS
        packet.pts = packet.dts = timestamp_ms
        try:
            frames = self.decoder.decode(packet)
        except av.FFmpegError as exc:
            raise MediaError(f"AAC decoder refused a frame ({exc})", f"audio at {timestamp_ms} ms") from None
        expected = round(Fraction(timestamp_ms - origin_ms, 1000) * self.rate)
        if self._next_sample is None or abs(expected - self._next_sample - self.fifo.samples) > AUDIO_RESYNC_S * self.rate:
            # First audio, or the stream jumped: restart the sample clock where the stream says.
            self.fifo = av.AudioFifo()
            self._next_sample = expected
        out: list[EncodedPacket | AudioFormat] = []
        for frame in frames:
            frame.pts = None
            for resampled in self.resampler.resample(frame):
                resampled.pts = None
                self.fifo.write(resampled)
        out += self._drain(final=False)
        return out

    def flush(self) -> list[EncodedPacket | AudioFormat]:
        out = self._drain(final=True)
        out += self._packets(self.encoder.encode(None))
        return out

    def _drain(self, final: bool) -> list[EncodedPacket | AudioFormat]:
        out: list[EncodedPacket | AudioFormat] = []
        size = self.encoder.frame_size or 1024
        while self.fifo.samples >= size or (final and self.fifo.samples):
            frame = self.fifo.read(size, partial=final)
            if frame is None:
                break
            frame.pts = self._next_sample
            frame.time_base = self.time_base
            self._next_sample += frame.samples
            out += self._packets(self.encoder.encode(frame))
        return out

    def _packets(self, packets: list[av.Packet]) -> list[EncodedPacket | AudioFormat]:
        out: list[EncodedPacket | AudioFormat] = []
        for packet in packets:
            if packet.pts is None or packet.pts < 0:
                continue  # the encoder's priming frame comes before the origin
            out.append(EncodedPacket(AUDIO, bytes(packet), packet.dts, packet.pts, self.time_base, True))
        return out


class Transcoder:
    """Cleaned FLV bodies in, formats and encoded packets out (see the module doc)."""

    def __init__(self, settings: TranscodeSettings = TranscodeSettings()) -> None:
        self.settings = settings
        self._video = _VideoPath(settings)
        self._audio = _AudioPath(settings)
        self._origin_ms: int | None = None
        #: After a decoding error, video is skipped until the next keyframe.
        self.need_keyframe = True

    @property
    def counters(self) -> dict[str, int]:
        return {"frames_repeated": self._video.repeated, "frames_dropped": self._video.dropped}

    def push(self, type_id: int, timestamp_ms: int, payload: bytes) -> list[TranscoderOutput]:
        if type_id == flv.VIDEO:
            try:
                return self._push_video(timestamp_ms, payload)
            except MediaError:
                self.need_keyframe = True
                raise
        if type_id == flv.AUDIO:
            return self._push_audio(timestamp_ms, payload)
        return []

    def flush(self) -> list[TranscoderOutput]:
        """The stream ended: everything the decoders and encoders still hold."""
        return [*self._video.flush(), *self._audio.flush()]

    def _origin(self, timestamp_ms: int) -> int:
        if self._origin_ms is None:
            self._origin_ms = timestamp_ms
        return self._origin_ms

    def _push_video(self, timestamp_ms: int, payload: bytes) -> list[TranscoderOutput]:
        unit = read_video(timestamp_ms, payload)
        if type(unit) is AvcSequenceHeader:
            self._video.configure(unit.record)
            self.need_keyframe = True
            return []
        if unit is None or (self.need_keyframe and not unit.key):
            return []
        self.need_keyframe = False
        origin = self._origin(timestamp_ms)
        out: list[TranscoderOutput] = []
        for frame in self._video.decode(unit.data, unit.dts_ms, unit.pts_ms):
            out += self._video.place(frame, origin)
        return out

    def _push_audio(self, timestamp_ms: int, payload: bytes) -> list[TranscoderOutput]:
        unit = read_audio(timestamp_ms, payload)
        if type(unit) is AacSequenceHeader:
            return self._audio.configure(unit.raw)
        if unit is None:
            return []
        return self._audio.push(unit.data, timestamp_ms, self._origin(timestamp_ms))
