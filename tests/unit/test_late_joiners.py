"""A player that joins a running stream gets a timeline of its own (issue 9, point 5)."""

from __future__ import annotations

from rtmprelay.media.message import MediaMessage
from rtmprelay.relay.registry import LiveStream
from tests.unit.test_server_protocol import AAC_HEADER as AUDIO_HEADER
from tests.unit.test_server_protocol import AUDIO
from tests.unit.test_server_protocol import AVC_HEADER as VIDEO_HEADER
from tests.unit.test_server_protocol import INTERFRAME as INTER
from tests.unit.test_server_protocol import KEYFRAME as KEY


class Recorder:
    def __init__(self):
        self.media = []
        self.ended = False

    def on_metadata(self, metadata):
        pass

    def on_media(self, message):
        self.media.append((message.type_id, message.timestamp, message.payload))

    def on_stream_end(self):
        self.ended = True


class Publisher:
    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


def publish(stream, first, last):
    """Frames ``first`` to ``last - 1`` at 30 fps, a keyframe every 60; audio with each."""
    for n in range(first, last):
        ts = n * 100 // 3
        stream.publish_media(MediaMessage.of(9, ts, KEY if n % 60 == 0 else INTER))
        stream.publish_media(MediaMessage.of(8, ts, AUDIO))


def test_a_late_player_starts_at_zero_where_its_first_frame_starts():
    stream = LiveStream("live/s", Publisher())
    early = Recorder()
    stream.attach(early)
    stream.publish_media(MediaMessage.of(9, 0, VIDEO_HEADER))
    stream.publish_media(MediaMessage.of(8, 0, AUDIO_HEADER))
    publish(stream, 0, 78)  # keyframes at frames 0 and 60 (2000 ms)
    late = Recorder()
    stream.attach(late)
    publish(stream, 78, 90)
    headers = late.media[:2]
    assert [(t, ts) for t, ts, _ in headers] == [(9, 0), (8, 0)]
    media = late.media[2:]
    assert media[0] == (9, 0, KEY)  # the cached GOP's keyframe (2000 ms on the stream) at 0
    timestamps = [ts for _, ts, _ in late.media]
    assert timestamps == sorted(timestamps) and timestamps[-1] == 2966 - 2000
    # the sink that was there from the start keeps the stream's own timeline
    assert early.media[-1][1] == 2966
    stream.detach(late)
    assert stream.sinks == (early,)
    publish(stream, 90, 93)
    assert late.media[-1][1] == 2966 - 2000


def test_without_a_gop_kept_a_late_player_waits_for_the_next_keyframe():
    """The GOP cache off (``--gop-cache-bytes 0``, or a GOP longer than it): a late player
    gets the sequence headers, then nothing up to the stream's next keyframe, which starts
    its timeline at 0. It used to get every frame from where it joined: about 1.5 s of
    inter frames a decoder can only make garbage of (found by QA with GStreamer rtmp2src
    and rtmpdump: 46 and 49 inter frames before the first keyframe)."""
    stream = LiveStream("live/s", Publisher(), gop_cache_bytes=0)
    stream.publish_media(MediaMessage.of(9, 0, VIDEO_HEADER))
    stream.publish_media(MediaMessage.of(8, 0, AUDIO_HEADER))
    publish(stream, 0, 20)
    late = Recorder()
    stream.attach(late)
    publish(stream, 20, 70)  # the next keyframe is frame 60 (2000 ms)
    assert [(t, ts) for t, ts, _ in late.media[:2]] == [(9, 0), (8, 0)]
    media = late.media[2:]
    assert media[0] == (9, 0, KEY), media[:3]
    assert all(ts >= 0 for _, ts, _ in media) and len([m for m in media if m[0] == 9]) == 10
