"""The media value: one audio or video message, classified once, carried unchanged to every sink.

A ``MediaMessage`` is made where the session completes an audio (8) or video
(9) message (``MediaMessage.of``); its classification (keyframe, sequence
header, end of sequence, codec) is read from the FLV / Enhanced RTMP tag
header by ``media.flv`` at that moment and never again. The registry, the
cleaner, the bridge and every sink (upstream forwarders, RTMP players, the
HLS worker, test recorders) take that same object; the cleaner and the bridge
make new ones only for what they change (``retimed`` keeps the
classification; ``of`` classifies bytes they made) or generate.

Data messages (18) may travel as values too (``MediaMessage.of`` leaves them
unclassified) so that what the cleaner holds stays in one queue.
"""

from __future__ import annotations

import attrs

from rtmprelay.media.flv import AUDIO, NOTHING, VIDEO, classify_audio, classify_video

__all__ = ["MediaMessage"]

_CLASSIFIERS = {VIDEO: classify_video, AUDIO: classify_audio}


@attrs.frozen
class MediaMessage:
    """One audio, video or data message: its type, timestamp (ms), payload (the FLV tag body)
    and what the tag header says, read once.

    ``keyframe``: a key picture (never a sequence header); ``header``: a sequence header
    (AVC/HEVC configuration, AudioSpecificConfig, Enhanced RTMP SequenceStart), which a
    late joiner needs before any frame; ``end``: an end of sequence; ``codec``: the legacy
    CodecID / SoundFormat (int) or the Enhanced RTMP FourCC (bytes), None when unknown.

    Make it with ``of`` (classifies); ``retimed`` is the same message at another time.
    """

    type_id: int
    timestamp: int
    payload: bytes
    keyframe: bool = False
    header: bool = False
    end: bool = False
    codec: int | bytes | None = None

    @classmethod
    def of(cls, type_id: int, timestamp: int, payload: bytes) -> "MediaMessage":
        """The message, classified from its tag header (``media.flv``)."""
        classify = _CLASSIFIERS.get(type_id)
        keyframe, header, end, codec = classify(payload) if classify is not None else NOTHING
        return cls(type_id, timestamp, payload, keyframe, header, end, codec)

    def retimed(self, timestamp: int) -> "MediaMessage":
        """This message at ``timestamp``; itself when that is its time already."""
        if timestamp == self.timestamp:
            return self
        return MediaMessage(self.type_id, timestamp, self.payload, self.keyframe, self.header, self.end, self.codec)

    @property
    def is_video(self) -> bool:
        return self.type_id == VIDEO

    @property
    def is_audio(self) -> bool:
        return self.type_id == AUDIO
