"""Bridging a publisher outage without sockets: a registry on a ``task.Clock``
fed the tags of x264 + AAC files that ffmpeg wrote, a recording sink, and the
recording decoded with PyAV.

The publisher goes away, the bridge fills at the frame rate with skip frames
and silence, a publisher back within the grace (its timestamps starting at 0
again) is spliced in at its first keyframe: the sink sees one stream whose
timeline goes on and which decodes without a warning. Past the grace the
stream ends."""

from __future__ import annotations

import subprocess

import pytest
from twisted.internet import task
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs

from rtmprelay.media import flv as media_flv
from rtmprelay.media.message import MediaMessage
from rtmprelay.testing.sinks import RecordingSink
from rtmprelay.relay.bridge import Bridge, BridgeStart, Splice
from rtmprelay.relay.forward import Forwarding, ForwardTemplate, ForwardTemplates
from rtmprelay.relay.registry import StreamRegistry
from rtmprelay.rtmp import session as s
from rtmprelay.testing.dirty import flv_bytes
from rtmprelay.testing.flv import decode_check, read_flv_tags
from rtmprelay.testing.peers import find_tool
from rtmprelay.testing.publishers import make_test_flv
from rtmprelay.web.api import stream_info
from tests.unit.test_forwarding import Upstream

PATH = "live/user1/glasses"
FPS = 25
PERIOD_MS = 1000 / FPS


Recorder = RecordingSink


class Publisher:
    def __init__(self) -> None:
        self.dropped = False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def drop_publisher(self, stream) -> None:
        self.dropped = True


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """2 s of 160x96 25 fps x264 (one reference frame) + AAC, a keyframe every second."""
    path = make_test_flv(tmp_path_factory.mktemp("bridge") / "clip.flv", seconds=2, size="160x96", fps=FPS)
    return [t for t in read_flv_tags(path) if t.kind in ("video", "audio")]


@pytest.fixture(scope="module")
def multi_ref_clip(tmp_path_factory):
    """2 s of x264 with three reference frames and a 2 s GOP: skip frames run out after a few."""
    path = tmp_path_factory.mktemp("bridge") / "refs.flv"
    subprocess.run(
        [find_tool("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size=160x96:rate={FPS}:duration=2",
         "-c:v", "libx264", "-preset", "medium", "-refs", "3", "-bf", "0", "-g", "50", "-threads", "1",
         "-an", "-f", "flv", str(path)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return [t for t in read_flv_tags(path) if t.kind == "video"]


def publish(registry: StreamRegistry, clock: task.Clock, tags, start: float) -> None:
    """The tags at their own pace, arriving ``start`` s after the clock's 0."""
    stream = registry.get(PATH)
    for tag in tags:
        at = start + tag.timestamp / 1000
        if at > clock.seconds():
            clock.advance(at - clock.seconds())
        stream.publish_media(MediaMessage.of(tag.tag_type, tag.timestamp, tag.payload), now=clock.seconds())


def advance(clock: task.Clock, seconds: float, step: float = 0.01) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)


def started(clock: task.Clock, grace: float = 10.0) -> tuple[StreamRegistry, Recorder]:
    registry = StreamRegistry(clock=clock, bridge_grace_s=grace)
    recorder = Recorder()
    registry.subscribe(PATH, recorder)
    assert registry.start(PATH, Publisher()) is not None
    return registry, recorder


def decodes_cleanly(recorder: Recorder, tmp_path, audio: bool = True) -> None:
    path = tmp_path / "recorded.flv"
    path.write_bytes(flv_bytes(recorder.media, audio=audio))
    report = decode_check(path)
    assert report.clean, report
    assert report.video_frames == len(recorder.video())


def steps(messages: list[MediaMessage]) -> list[int]:
    return [b.timestamp - a.timestamp for a, b in zip(messages, messages[1:])]


def one_timeline_that_decodes(recorder: Recorder, tmp_path, audio: bool = True) -> None:
    """Video never steps back nor leaves a hole longer than a frame, and all of it decodes."""
    assert all(0 < step <= PERIOD_MS + 1 for step in steps(recorder.video())), steps(recorder.video())
    decodes_cleanly(recorder, tmp_path, audio)


def test_an_outage_is_filled_and_the_publisher_back_is_spliced_in_one_timeline(clip, tmp_path):
    clock = task.Clock()
    registry, recorder = started(clock)
    publish(registry, clock, clip, start=0.0)
    stream = registry.get(PATH)
    last_video = recorder.video()[-1].timestamp
    with capturedLogs() as events:
        registry.stop(stream)  # the publisher's connection dropped
        advance(clock, 2.0)
        assert registry.get(PATH) is stream and stream.bridging and not recorder.ended
        filler = recorder.video()[len([t for t in clip if t.kind == "video" and not t.is_header]):]
        assert len(filler) >= 45  # ~2 s at 25 fps, from the last real frame on
        assert all(f.payload[0] == 0x27 and len(f.payload) < 64 for f in filler)  # tiny inter frames
        # back on the same path; ffmpeg starts its timestamps at 0 again
        assert registry.takes_publish(PATH)
        assert registry.start(PATH, Publisher()) is stream
        publish(registry, clock, clip, start=clock.seconds())
    assert not stream.bridging
    video, audio = recorder.video(), recorder.audio()
    # one timeline: never back, never a hole longer than a frame and a bit
    assert all(0 < step <= PERIOD_MS + 1 for step in steps(video)), steps(video)
    assert all(step > 0 for step in steps(audio))
    assert max(steps(audio)) <= 2 * 1024 * 1000 / 44100 + 1
    assert video[-1].timestamp > last_video + 2000 + 1900
    # the second publish starts at its keyframe, which went where the next filler frame would have
    joined = next(m for m in video if m.timestamp > last_video + 2000 and m.keyframe)
    assert joined.payload == next(t.payload for t in clip if media_flv.classify_video(t.payload)[0])
    decodes_cleanly(recorder, tmp_path)
    text = " ".join(e["log_format"] for e in events)
    assert "bridged for up to" in text and "joined on at its first keyframe" in text
    assert registry.get(PATH) is stream and registry.streams() == [stream]


def test_past_the_grace_the_stream_ends(clip):
    clock = task.Clock()
    registry, recorder = started(clock, grace=3.0)
    publish(registry, clock, clip[: len(clip) // 2], start=0.0)
    stream = registry.get(PATH)
    ended = []
    registry.add_listener(type("L", (), {"stream_started": lambda s, x: None, "stream_ended": lambda s, x: ended.append(x)})())
    registry.stop(stream)
    advance(clock, 2.9)
    assert not ended and stream.bridging
    advance(clock, 0.2)
    assert ended == [stream] and recorder.ended and registry.get(PATH) is None
    assert clock.getDelayedCalls() == []  # the filler's timer is gone with the stream
    assert registry.takes_publish(PATH)


def test_an_unpublish_is_bridged_like_a_drop(clip):
    """Android SDKs unpublish before they reconnect: the upstream must not see two publishes."""
    clock = task.Clock()
    registry, recorder = started(clock)
    publish(registry, clock, clip[:20], start=0.0)
    registry.stop(registry.get(PATH), unpublished=True)
    assert not recorder.ended and registry.get(PATH) is not None and clock.getDelayedCalls()


def test_with_end_on_unpublish_an_unpublish_ends_the_stream_at_once(clip):
    clock = task.Clock()
    registry, recorder = started(clock)
    registry.bridge_unpublished = False
    publish(registry, clock, clip[:20], start=0.0)
    registry.stop(registry.get(PATH), unpublished=True)
    assert recorder.ended and registry.get(PATH) is None and clock.getDelayedCalls() == []


def test_without_a_grace_the_publisher_leaving_ends_the_stream(clip):
    clock = task.Clock()
    registry, recorder = started(clock, grace=0.0)
    publish(registry, clock, clip[:20], start=0.0)
    registry.stop(registry.get(PATH))
    assert recorder.ended and registry.get(PATH) is None


def test_stopping_the_relay_ends_a_bridged_stream_and_takes_no_publish(clip):
    clock = task.Clock()
    registry, recorder = started(clock)
    publish(registry, clock, clip[:30], start=0.0)
    registry.stop(registry.get(PATH))
    assert registry.end_all() == 1
    assert recorder.ended and not registry.takes_publish(PATH) and clock.getDelayedCalls() == []


def test_a_publisher_leaving_again_before_its_keyframe_keeps_the_bridge_going(clip, tmp_path):
    clock = task.Clock()
    registry, recorder = started(clock)
    publish(registry, clock, clip, start=0.0)
    stream = registry.get(PATH)
    registry.stop(stream)
    advance(clock, 1.0)
    registry.start(PATH, Publisher())
    audio_only = [t for t in clip if t.kind == "audio"][:10]  # audio, headers: no keyframe yet
    publish(registry, clock, audio_only, start=clock.seconds())
    registry.stop(stream)
    advance(clock, 1.0)
    assert stream.bridging
    registry.start(PATH, Publisher())
    publish(registry, clock, clip, start=clock.seconds())
    one_timeline_that_decodes(recorder, tmp_path)


def test_a_publisher_silent_for_2_s_is_taken_over_by_a_new_one(clip, tmp_path):
    """A phone that changed networks leaves a half-open connection: a new publish of the
    path does not wait for the server's idle timeout, it is spliced in as after an outage."""
    clock = task.Clock()
    registry = StreamRegistry(clock=clock, bridge_grace_s=10.0)
    recorder = Recorder()
    registry.subscribe(PATH, recorder)
    old = Publisher()
    stream = registry.start(PATH, old)
    publish(registry, clock, clip, start=0.0)
    advance(clock, 1.5)
    assert not registry.takes_publish(PATH) and registry.start(PATH, Publisher()) is None  # not silent long enough
    advance(clock, 0.6)
    assert registry.takes_publish(PATH)
    new = Publisher()
    assert registry.start(PATH, new) is stream and old.dropped and stream.publisher is new
    registry.stop(stream, old)  # the old connection's close comes later: it no longer matters
    assert stream.publisher is new and stream.bridging
    publish(registry, clock, clip, start=clock.seconds())
    assert not stream.bridging
    one_timeline_that_decodes(recorder, tmp_path)


def test_a_gop_too_long_to_cache_is_bridged_from_its_keyframe(clip, tmp_path):
    """Past --gop-cache-bytes the frames since the keyframe are not kept, so skip frames
    cannot be numbered after them: the bridge sends the keyframe again and repeats that."""
    clock = task.Clock()
    registry = StreamRegistry(clock=clock, bridge_grace_s=10.0, gop_cache_bytes=4000)
    recorder = Recorder()
    registry.subscribe(PATH, recorder)
    stream = registry.start(PATH, Publisher())
    publish(registry, clock, clip, start=0.0)
    assert stream.since_keyframe() == ()
    registry.stop(stream)
    advance(clock, 1.0)
    assert stream.bridge.restarts == 1 and not stream.bridge.why_no_video
    one_timeline_that_decodes(recorder, tmp_path)


def test_an_audio_only_stream_is_filled_with_silence_and_joined_at_its_first_audio_frame(clip):
    clock = task.Clock()
    registry, recorder = started(clock)
    audio = [t for t in clip if t.kind == "audio"]
    publish(registry, clock, audio, start=0.0)
    stream = registry.get(PATH)
    last = recorder.audio()[-1].timestamp
    registry.stop(stream)
    advance(clock, 1.0)
    assert stream.bridge.why_no_video == "the stream has no video" and stream.bridge.audio_frames >= 40
    registry.start(PATH, Publisher())
    publish(registry, clock, audio, start=clock.seconds())
    assert not stream.bridging
    out = recorder.audio()
    frame_ms = 1024 * 1000 / 44100
    assert all(0 < step <= frame_ms + 1 for step in steps(out)), steps(out)
    assert out[-1].timestamp >= last + 1000 + audio[-1].timestamp - 50


def test_skip_frames_that_run_out_start_over_at_the_last_keyframe(multi_ref_clip, tmp_path):
    """x264 with ref=3: frame_num distances to old references bound a run of skip frames;
    the bridge sends the last keyframe again and goes on from there."""
    clock = task.Clock()
    registry, recorder = started(clock)
    publish(registry, clock, multi_ref_clip, start=0.0)
    stream = registry.get(PATH)
    registry.stop(stream)
    advance(clock, 8.0)
    bridge = stream.bridge
    assert bridge.restarts == 1 and "skip frames ran out" in bridge.why_restarted, bridge.why_restarted
    assert bridge.video_frames >= 8 * FPS - 2
    one_timeline_that_decodes(recorder, tmp_path, audio=False)


# -- the pure parts -----------------------------------------------------------------------


def test_a_bridge_without_sequence_headers_has_nothing_to_fill_with():
    bridge = Bridge(BridgeStart(1000, 1000, 5.0), video_header=None, audio_header=None, since_keyframe=(), fps=None)
    assert not bridge.can_fill
    assert bridge.why_no_video == "the stream has no video" and bridge.why_no_audio == "the stream has no audio"


def test_the_filler_follows_the_wall_clock_from_the_last_arrival(clip):
    video_header = next(t.payload for t in clip if t.kind == "video" and t.is_header)
    audio_header = next(t.payload for t in clip if t.kind == "audio" and t.is_header)
    gop = [MediaMessage.of(t.tag_type, t.timestamp, t.payload) for t in clip if t.kind == "video" and not t.is_header][:5]
    start = BridgeStart(gop[-1].timestamp, gop[-1].timestamp, last_arrival=100.0)
    bridge = Bridge(start, video_header=video_header, audio_header=audio_header, since_keyframe=gop, fps=FPS)
    assert bridge.fill(100.0) == []
    out = bridge.fill(101.0)  # a second later: 25 pictures and 43 AAC frames (44.1 kHz)
    assert [m.timestamp for m in out] == sorted(m.timestamp for m in out)
    assert sum(m.type_id == media_flv.VIDEO for m in out) == 25
    assert sum(m.type_id == media_flv.AUDIO for m in out) == 1000 * 44100 // 1024 // 1000
    assert bridge.fill(101.0) == []
    splice = Splice(bridge, video_header, audio_header)
    key = next(t for t in clip if media_flv.classify_video(t.payload)[0])
    assert splice.take(MediaMessage.of(media_flv.VIDEO, 400, b"\x27\x01\x00\x00\x00")) == []  # before the keyframe
    joined = splice.take(MediaMessage.of(media_flv.VIDEO, 440, key.payload))
    assert [m.timestamp for m in joined] == [bridge.next_video_ms] and splice.done
    assert splice.take(MediaMessage.of(media_flv.VIDEO, 480, b"x"))[0].timestamp == bridge.next_video_ms + 40


# -- with forwarding: the upstream publish stays open --------------------------------------


def test_the_upstream_publish_stays_open_through_the_outage_and_ends_after_the_grace(clip):
    clock = MemoryReactorClock()
    registry = StreamRegistry(clock=clock, bridge_grace_s=3.0)
    upstream = Upstream()
    forwarding = Forwarding(clock, ForwardTemplates([ForwardTemplate.parse("rtmp://up/live/{path}")]), connect=upstream)
    registry.add_listener(forwarding)
    stream = registry.start(PATH, Publisher(), forwarding.admit(PATH).result)
    attempt = upstream.last.publish()
    publish(registry, clock, clip[:40], start=0.0)
    sent = len(attempt.media())
    registry.stop(stream)
    assert stream_info(stream)["upstreams"][0]["state"] == "bridging"
    assert stream_info(stream)["bridge"]["video_frames"] == 0
    advance(clock, 1.0)
    assert stream_info(stream)["bridge"]["video_frames"] >= 20
    registry.start(PATH, Publisher())
    publish(registry, clock, clip, start=clock.seconds())
    info = stream_info(stream)
    assert info["bridge"] is None and info["upstreams"][0]["state"] == "live"
    media = attempt.media()
    assert len(media) > sent + 20 + len(clip) - 10
    assert len(upstream.attempts) == 1  # one connection, one publish, throughout
    assert not any(type(e) is s.PublishEnded for e in attempt.events)
    registry.stop(stream)
    advance(clock, 3.1)
    attempt.pump()
    assert any(type(e) is s.PublishEnded for e in attempt.events), attempt.events


@pytest.fixture(scope="module")
def b_frame_clip(tmp_path_factory):
    """2 s of 160x96 25 fps x264 at its defaults (high profile, 3 B-frames, b-pyramid) + AAC,
    as ffmpeg publishes by default: the last picture decoded is not the last one shown."""
    path = tmp_path_factory.mktemp("bridge") / "bframes.flv"
    subprocess.run(
        [find_tool("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size=160x96:rate={FPS}:duration=2",
         "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100:duration=2",
         "-c:v", "libx264", "-g", str(FPS), "-threads", "1", "-c:a", "aac", "-f", "flv", str(path)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return [t for t in read_flv_tags(path) if t.kind in ("video", "audio")]


def presentation_times(messages: list[MediaMessage]) -> list[int]:
    from rtmprelay.media import tags

    return [m.timestamp + tags.parse_video_tag(m.payload).composition_time for m in messages if not m.header]


def test_a_b_frame_stream_is_bridged_from_its_last_keyframe_and_decodes(b_frame_clip, tmp_path):
    """The SPS allows reordering, so the last picture cannot be repeated by a skip frame;
    the bridge sends the last keyframe again and skip frames after it (the keyframe is
    all they follow). It used to send no video at all: audio only for the whole grace.
    Every picture is shown a frame interval after the one before, none at a time already
    used (the publisher's last P-frame is shown after the B-frames decoded after it)."""
    clock = task.Clock()
    registry, recorder = started(clock)
    publish(registry, clock, b_frame_clip, start=0.0)
    stream = registry.get(PATH)
    real = len(recorder.video())
    registry.stop(stream)
    advance(clock, 1.0)
    assert stream.bridging and not stream.bridge.why_no_video, stream.bridge.why_no_video
    filler = recorder.video()[real:]
    assert len(filler) >= 20 and filler[0].keyframe and stream.bridge.restarts == 1
    shown = sorted(presentation_times(recorder.video()))
    assert all(later - earlier >= PERIOD_MS - 1 for earlier, later in zip(shown, shown[1:])), sorted(set(
        later - earlier for earlier, later in zip(shown, shown[1:])))
    decodes_cleanly(recorder, tmp_path)


def test_a_publisher_back_is_joined_where_the_silence_has_got_to_when_no_video_could_be_made(clip):
    """Without video filler (here: no keyframe to start a run from), the bridge still sends
    silence for as long as the outage lasts; the returning publisher's keyframe goes after
    that silence, not right after the last real frame, or its audio would be dropped as
    overlapping the silence for as long as the outage lasted (its sound missing that long)."""
    video = [t for t in clip if t.kind == "video"]
    last_video = max(t.timestamp for t in video)
    last_audio = max(t.timestamp for t in clip if t.kind == "audio")
    header = next(t.payload for t in clip if t.kind == "audio" and t.is_header)
    bridge = Bridge(
        BridgeStart(last_video, last_audio, 10.0),
        video_header=next(t.payload for t in video if t.is_header),
        audio_header=header,
        since_keyframe=[],
        fps=FPS,
        keyframe=None,
    )
    assert bridge.why_no_video and bridge.can_fill
    silence = bridge.fill(13.0)  # a 3 s outage
    assert len(silence) >= 120 and all(m.type_id == 8 for m in silence)
    splice = Splice(bridge, None, None)
    keyframe = next(t for t in video if not t.is_header and media_flv.classify_video(t.payload)[0])
    out = splice.take(MediaMessage.of(9, 0, keyframe.payload))
    assert out and out[-1].timestamp >= silence[-1].timestamp, (out[-1].timestamp, silence[-1].timestamp)
    # the publisher's first audio after its keyframe is kept, not dropped as overlapping
    sound = next(t for t in clip if t.kind == "audio" and not t.is_header and t.timestamp >= keyframe.timestamp)
    assert splice.take(MediaMessage.of(8, sound.timestamp - keyframe.timestamp + 30, sound.payload))


def test_a_returning_keyframe_is_shown_after_every_picture_already_sent(b_frame_clip):
    """In a B-frame stream the last P-frame decoded is shown after the B-frames decoded
    after it, up to a few frames after its decoding time: a keyframe put in the next
    decoding slot could be shown at that same moment (two pictures, one time: ffmpeg's
    "non monotonically increasing dts"). The join goes a frame interval past the latest."""
    from rtmprelay.media import tags

    video = [MediaMessage.of(t.tag_type, t.timestamp, t.payload) for t in b_frame_clip if t.kind == "video" and not t.is_header]
    last_key = max(i for i, m in enumerate(video) if m.keyframe)
    gop = video[last_key:]
    latest = max(presentation_times(gop))
    assert latest > gop[-1].timestamp + PERIOD_MS  # the case: shown well after its decoding time
    audio = [t for t in b_frame_clip if t.kind == "audio"]
    bridge = Bridge(
        BridgeStart(gop[-1].timestamp, audio[-1].timestamp, 10.0),
        video_header=next(t.payload for t in b_frame_clip if t.kind == "video" and t.is_header),
        audio_header=next(t.payload for t in audio if t.is_header),
        since_keyframe=gop,
        fps=FPS,
        keyframe=gop[0].payload,
    )
    for cts in (0, tags.parse_video_tag(gop[0].payload).composition_time, 2 * round(PERIOD_MS)):
        at = bridge.join_ms(cts)
        assert at > gop[-1].timestamp and at + cts >= latest + PERIOD_MS - 1, (cts, at, latest)
