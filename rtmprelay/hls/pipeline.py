"""What one stream's HLS worker runs: copy or transcode, ending in a segmenter.

Both pipelines take the cleaned FLV bodies (``push``) and the life-cycle calls
(``restart``, ``reopen``, ``finish``, ``remove_files``) in the order the
stream made them; ``StreamWorker`` calls them on its thread.
"""

from __future__ import annotations

from rtmprelay.hls.packets import AudioFormat, EncodedPacket, VideoFormat
from rtmprelay.hls.segmenter import Segmenter
from rtmprelay.hls.transcode import TranscodeSettings, Transcoder, TranscoderOutput

__all__ = ["TranscodePipeline"]


class TranscodePipeline:
    """Transcoder -> Segmenter. A reconnect gets fresh decoders and encoders; the
    segmenter continues its playlist after a discontinuity."""

    def __init__(self, segmenter: Segmenter, settings: TranscodeSettings) -> None:
        self.segmenter = segmenter
        self.settings = settings
        self.transcoder = Transcoder(settings)
        self._video: VideoFormat | None = None
        self._audio: AudioFormat | None = None

    @property
    def counters(self) -> dict[str, int]:
        return self.transcoder.counters

    def push(self, type_id: int, timestamp_ms: int, payload: bytes) -> None:
        self._feed(self.transcoder.push(type_id, timestamp_ms, payload))

    def restart(self) -> None:
        self._end_encode()
        self.segmenter.restart()

    def reopen(self) -> None:
        self.transcoder = Transcoder(self.settings)
        self.segmenter.reopen()

    def finish(self) -> None:
        self._end_encode()
        self.segmenter.finish()

    def remove_files(self) -> None:
        self.segmenter.remove_files()

    def _end_encode(self) -> None:
        try:
            self._feed(self.transcoder.flush())
        finally:
            self.transcoder = Transcoder(self.settings)

    def _feed(self, outputs: list[TranscoderOutput]) -> None:
        for output in outputs:
            if type(output) is EncodedPacket:
                self.segmenter.push(output)
            elif type(output) is VideoFormat:
                self._video = output
                self.segmenter.set_formats(output, self._audio)
            elif type(output) is AudioFormat:
                self._audio = output
                if self._video is not None:
                    self.segmenter.set_formats(self._video, output)

