"""Publishers faster than the output rate: 50 and 60 fps into a 30 fps profile.

Phones and OBS publish at 50 or 60 fps. The grid used to stay at the profile's 30 fps:
frames that could not be dropped (x264 baseline and zerolatency make every frame a
reference) each took a later slot, the video fell behind its audio by a frame interval
every two frames, and after a second whole GOPs were dropped to catch up, while the
audio clock correction, seeing audio run "fast" against that video, dropped 40 % of
the audio. A 60 fps baseline stream came out with 181 of 360 frames and 148 of 260
audio frames. Now the grid's rate rises to the input's (snapped to a standard rate,
at most 60), every frame is kept, and sound stays with the picture.
"""

from __future__ import annotations

import random

import pytest

from rtmprelay.media.cleaner import RATE_EVIDENCE, CleanerConfig, StreamCleaner
from rtmprelay.media.message import MediaMessage
from rtmprelay.testing.dirty import StreamMessage, flv_bytes, sync_marks

CLOUDFLARE = CleanerConfig.from_profile("cloudflare")


def clean(tags, *, video_phase_ms=0.0, jitter_ms=0.0, seed=0, metadata=None):
    """Each message arrives at its timestamp, video ``video_phase_ms`` later, each up to
    ``jitter_ms`` more (a track's order kept)."""
    rng = random.Random(seed)
    last = {8: 0.0, 9: 0.0}
    arrivals = []
    for index, tag in enumerate(tags):
        at = tag.timestamp + (video_phase_ms if tag.tag_type == 9 else 0.0) + rng.uniform(0, jitter_ms)
        at = last[tag.tag_type] = max(at, last[tag.tag_type])
        arrivals.append((at / 1000.0, index, tag))
    arrivals.sort()
    cleaner = StreamCleaner(CLOUDFLARE)
    if metadata is not None:
        cleaner.rewrite_metadata(metadata)
    out = []
    now = 0.0
    for now, _, tag in arrivals:
        out += cleaner.push(MediaMessage.of(tag.tag_type, tag.timestamp, tag.payload), now)
    out += cleaner.poll(now + 5)
    out += cleaner.finish()
    return cleaner, out


def video_steps(out):
    times = [m.timestamp for m in out if m.type_id == 9 and m.payload[1] == 1]
    return [b - a for a, b in zip(times, times[1:])]


@pytest.mark.parametrize("fps", [50, 60])
@pytest.mark.parametrize("encoder", ["x264-baseline", "x264-zerolatency-ref3", "x264-default", "gst-x264enc"])
def test_every_frame_of_a_faster_publisher_is_kept_on_a_raised_grid(encoder_tags, encoder, fps):
    tags = encoder_tags(encoder, fps, seconds=6)
    for phase in (0.0, 7.0, 13.0):
        cleaner, out = clean(tags, video_phase_ms=phase)
        counters = cleaner.counters
        assert counters.video_out == counters.video_in, (phase, counters)
        assert counters.dropped == counters.dropped_for_lag == counters.audio_dropped == 0, (phase, counters)
        period = 1000.0 / fps
        # after the first few frames (retimed while the evidence gathered), every step is one period
        steps = video_steps(out)[RATE_EVIDENCE + 2 :]
        assert steps and all(abs(step - period) <= 1 for step in steps), (phase, sorted(set(steps)))
        verdict = {v.rule: v for v in cleaner.verdicts()}["constant_frame_rate"]
        assert verdict.repaired and f"raised to {fps}" in verdict.detail


def test_the_metadata_announces_the_raised_rate():
    """onMetaData goes out before the first frame: a declared 60 fps is announced as the
    rate the grid will take, not the profile's 30."""
    assert StreamCleaner(CLOUDFLARE).rewrite_metadata({"framerate": 59.94})["framerate"] == 60.0
    assert StreamCleaner(CLOUDFLARE).rewrite_metadata({"framerate": 25.0})["framerate"] == 30.0


def sync_offsets(out):
    flashes, beeps = sync_marks(flv_bytes([StreamMessage(m.type_id, m.timestamp, m.payload) for m in out]))
    assert len(flashes) >= 10 and len(beeps) >= 10, (flashes, beeps)
    return [min(beeps, key=lambda b: abs(b - f)) - f for f in flashes]


@pytest.mark.parametrize("jitter_ms", [0.0, 20.0])
@pytest.mark.parametrize("phase", [0.0, 8.0, 16.0])
def test_a_60_fps_stream_keeps_its_sound_with_its_picture(encoder_tags, phase, jitter_ms):
    """On content: the beep of second k plays within 40 ms of the white frame of second k."""
    cleaner, out = clean(encoder_tags(fps=60, seconds=12, marked=True), video_phase_ms=phase, jitter_ms=jitter_ms, seed=3)
    assert cleaner.counters.video_out == cleaner.counters.video_in, cleaner.counters
    assert max(map(abs, sync_offsets(out))) <= 40, (sync_offsets(out), cleaner.counters)


def test_a_rate_declared_wrong_is_found_from_the_frames(encoder_tags):
    """onMetaData says 30 fps, the frames come at 60: the rate is measured over
    RATE_EVIDENCE intervals, the video is then a few frames behind its input for good,
    and the audio is moved on as far (silent frames), so the content stays in sync."""
    cleaner, out = clean(encoder_tags(fps=60, seconds=12, marked=True), metadata={"framerate": 30.0})
    counters = cleaner.counters
    assert counters.video_out == counters.video_in and counters.dropped_for_lag == 0, counters
    assert counters.silence_inserted >= 1, counters
    assert max(map(abs, sync_offsets(out))) <= 40, (sync_offsets(out), counters)
    assert all(abs(step - 1000 / 60) <= 1 for step in video_steps(out)[RATE_EVIDENCE + 2 :])


def test_a_burst_of_frames_after_a_stall_is_not_a_rate(encoder_tags):
    """A 30 fps publisher that stalls and then sends the frames it held stamped a
    millisecond apart: the grid stays at 30 fps (the burst is retimed or dropped as
    before), so one stall does not double a stream's frame rate for good."""
    tags = list(encoder_tags("x264-baseline", 30, seconds=6))
    video = [i for i, t in enumerate(tags) if t.tag_type == 9]
    burst = video[60:72]  # 12 frames after the first keyframe's GOP has started
    base = tags[burst[0]].timestamp
    for n, index in enumerate(burst):
        tag = tags[index]
        tags[index] = tag._replace(timestamp=base + n)
    cleaner, out = clean(tags)
    assert "raised" not in {v.rule: v for v in cleaner.verdicts()}.get("constant_frame_rate", _NoVerdict).detail
    steps = video_steps(out)
    assert all(abs(step - round(step * 30 / 1000) * 1000 / 30) <= 1 for step in steps), sorted(set(steps))


class _NoVerdict:
    detail = ""



def test_a_bridge_fills_at_the_raised_rate(encoder_tags):
    """A 60 fps publisher that goes away is bridged at 60 fps (skip frames 16-17 ms
    apart), not at the profile's 30: the stream keeps one frame rate through the outage."""
    from rtmprelay.relay.registry import LiveStream

    class Publisher:
        def pause_reading(self):
            pass

        def resume_reading(self):
            pass

    stream = LiveStream("live/u/s", Publisher(), cleaner=StreamCleaner(CLOUDFLARE))
    tags = [t for t in encoder_tags("x264-baseline", 60, seconds=6) if t.timestamp < 3000]
    now = 0.0
    for tag in tags:
        now = tag.timestamp / 1000
        stream.publish_media(MediaMessage.of(tag.tag_type, tag.timestamp, tag.payload), now)
    assert stream.cleaner.output_fps == 60
    bridge = stream.start_bridge(now)
    assert bridge is not None
    filled = [m.timestamp for m in bridge.fill(now + 1.0) if m.type_id == 9]
    steps = [b - a for a, b in zip(filled, filled[1:])]
    assert len(filled) >= 50 and set(steps) <= {16, 17}, steps


@pytest.mark.parametrize(("fps", "announced"), [(15, 30), (25, 30), (30, 30), (60, 60)])
def test_the_sequence_header_says_the_output_rate(encoder_tags, fps, announced):
    """The SPS's timing says the rate the output has: ffmpeg takes a stream's frame rate from
    it, and a stream cleaned from 15 to 30 fps that still said 15 made ffmpeg put two frames
    in one tick (165 "non monotonically increasing dts" in 8 s, found by QA)."""
    from rtmprelay.media import avc, avcc, tags

    tags_in = encoder_tags("x264-baseline", fps, seconds=2)
    _, out = clean(tags_in)
    header = next(m for m in out if m.type_id == 9 and m.header)
    config = avcc.parse_avc_config(tags.parse_video_tag(header.payload).data)
    assert [avc.parse_sps(nal).frame_rate for nal in config.sps] == [announced]
    original = next(t for t in tags_in if t.tag_type == 9)
    if fps == announced:
        assert header.payload == original.payload  # nothing to say: the same bytes
    else:
        before = avcc.parse_avc_config(tags.parse_video_tag(original.payload).data)
        assert (config.pps, config.nal_length_size) == (before.pps, before.nal_length_size)


def test_an_sps_sent_in_band_says_the_output_rate_too(encoder_tags):
    """GStreamer's x264enc repeats SPS and PPS inside every keyframe; a decoder takes the
    last SPS it meets, so those say the output rate as well."""
    from rtmprelay.media import avc, avcc, tags

    _, out = clean(encoder_tags("gst-x264enc", 15, seconds=3))
    rates = []
    for message in out:
        if message.type_id == 9 and message.keyframe:
            for nal in avcc.split_nal_units(tags.parse_video_tag(message.payload).data):
                if avc.nal_unit_type(nal) == 7:
                    rates.append(avc.parse_sps(nal).frame_rate)
    assert rates and set(rates) == {30}, rates
