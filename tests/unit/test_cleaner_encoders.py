"""The cleaner on real encoders' own FLV output, at every arrival phase and with jitter.

Each encoder (`rtmprelay.testing.dirty.ENCODERS`: ffmpeg's libx264 baseline, main
and high with 1-3 B-frames and its defaults, x264 zerolatency with 3 references,
GStreamer's x264enc behind flvmux) writes 10 s of 30 fps video with a keyframe
every 2 s and AAC audio once per session. Hypothesis then varies only how it
arrives: video late against the audio by any phase of one frame interval, each
message delayed by up to 20 ms more (the order within a track kept, as TCP
keeps it), so the examples stay fast.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rtmprelay.media.cleaner import START_HOLD_S, CleanerConfig, StreamCleaner
from rtmprelay.media.message import MediaMessage
from rtmprelay.testing.dirty import ENCODERS
from rtmprelay.testing.validate import validate

CLOUDFLARE = CleanerConfig.from_profile("cloudflare")
FPS = 30
PERIOD_MS = 1000 / FPS


def arrivals(tags, video_phase_ms: float, jitter_ms: float, seed: int):
    """(arrival s, tag) in arrival order: the video ``video_phase_ms`` after the audio,
    every message up to ``jitter_ms`` late, each track's order kept."""
    rng = random.Random(seed)
    out = []
    last = {8: 0.0, 9: 0.0}
    for index, tag in enumerate(tags):
        at = tag.timestamp + (video_phase_ms if tag.tag_type == 9 else 0.0) + rng.uniform(0, jitter_ms)
        at = last[tag.tag_type] = max(at, last[tag.tag_type])
        out.append((at / 1000.0, index, tag))
    out.sort()
    return [(at, tag) for at, _, tag in out]


def clean(tags, video_phase_ms=0.0, jitter_ms=0.0, seed=0, config=CLOUDFLARE):
    cleaner = StreamCleaner(config)
    out = []
    now = 0.0
    for now, tag in arrivals(tags, video_phase_ms, jitter_ms, seed):
        out.extend(cleaner.push(MediaMessage.of(tag.tag_type, tag.timestamp, tag.payload), now))
    out.extend(cleaner.poll(now + 5))
    out.extend(cleaner.finish())
    return cleaner, [(m.type_id, m.timestamp, m.payload) for m in out]


def grid_slots(decoding_times):
    """The grid slot each frame is decoded in: its own decoding time, 33 or 34 ms after
    the last slot; or, for a frame a muxer squashed onto the one before (given a decoding
    time of its own within that frame's slot), the slot's, less than a period before it.
    Decoding times strictly increase."""
    slots = [decoding_times[0]]
    for before, dts in zip(decoding_times, decoding_times[1:]):
        assert dts > before, (before, dts)
        if dts - slots[-1] in (33, 34):
            slots.append(dts)
        else:
            assert dts - slots[-1] < PERIOD_MS, (slots[-1], dts)
            slots.append(slots[-1])
    return slots


def composition_time(payload):
    return int.from_bytes(payload[2:5], "big", signed=True)


def presentation_keyframes(out):
    return [ts + int.from_bytes(p[2:5], "big", signed=True) for type_id, ts, p in out if type_id == 9 and p[1] == 1 and p[0] >> 4 == 1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    encoder=st.sampled_from(sorted(ENCODERS)),
    phase=st.floats(0, PERIOD_MS, exclude_max=True),
    jitter=st.sampled_from([0.0, 20.0]),
    seed=st.integers(0, 2**16),
)
# Found by this test: video first arriving after the start hold, audio already out past its
# first frame; the grid started above it and a B-frame early by that much was dropped.
@example(encoder="x264-default", phase=32.0, jitter=20.0, seed=140)
# GStreamer's flvmux clamps x264's negative DTS to 0: I, P and B all at DTS 0. The P and B
# are squeezed into the first slot; with the video late, audio already left past 0 and the
# squeezed frames start above it.
@example(encoder="gst-x264enc", phase=0.0, jitter=0.0, seed=0)
@example(encoder="gst-x264enc-b2", phase=30.0, jitter=20.0, seed=3)
# Found by this test: video 31 ms late, audio out past the slot, a squeezed B-frame put in the
# slot's last millisecond (47 after a slot at 14), which reads as the next slot.
@example(encoder="gst-x264enc", phase=11.0, jitter=20.0, seed=62)
def test_constant_rate_input_at_the_output_rate_comes_out_frame_for_frame(encoder_tags, encoder, phase, jitter, seed):
    tags = encoder_tags(encoder)
    cleaner, out = clean(tags, phase, jitter, seed)
    counters = cleaner.counters
    assert counters.video_in == FPS * 10
    assert counters.video_out == counters.video_in, counters
    assert counters.keyframes_relabelled == 0 and counters.dropped == 0, counters
    frames = [(ts, composition_time(p)) for type_id, ts, p in out if type_id == 9 and p[1] == 1]
    assert all(cts >= 0 for _, cts in frames), frames
    # decoding times on the grid, but for frames a muxer squashed, spread within their slot ...
    slots = grid_slots([dts for dts, _ in frames])
    assert sum(dts != slot for (dts, _), slot in zip(frames, slots)) == counters.squeezed, counters
    assert counters.squeezed == (2 if encoder.startswith("gst-") else 0), counters
    # ... and every frame shown its own composition time after its slot (the squeezed ones
    # too: their presentation times, so A/V sync, are what they were)
    given_cts = [composition_time(t.payload) for t in tags if t.tag_type == 9 and t.payload[1] == 1]
    assert [dts + cts - slot for (dts, cts), slot in zip(frames, slots)] == given_cts
    # what the viewer sees: one picture every period, none lost, none twice (B-frames show
    # the input's composition times, rounded to the ms, after decoding times that during
    # the start shift's work-off step up to 0.3 ms short)
    shown = sorted(dts + cts for dts, cts in frames)
    assert all(abs(b - a - PERIOD_MS) < 3 for a, b in zip(shown, shown[1:])), shown
    # keyframes already 2 s apart stay keyframes, 2 s apart; the first may start up to a
    # frame late: video arriving after the first audio has left (phase + jitter past
    # START_HOLD_S) cannot go before it
    keys = presentation_keyframes(out)
    assert len(keys) == 5 and all(abs(b - a - 2000) <= 17 for a, b in zip(keys[1:], keys[2:])), keys
    assert 2000 - PERIOD_MS - 1 <= keys[1] - keys[0] <= 2017, keys
    timestamps = [ts for _, ts, _ in out]
    assert timestamps == sorted(timestamps)


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_half_frame_phase_loses_nothing(encoder_tags, encoder):
    """The case that lost 76 of 300 frames: video half a frame after the audio's position."""
    cleaner, out = clean(encoder_tags(encoder), video_phase_ms=PERIOD_MS / 2)
    assert cleaner.counters.video_out == cleaner.counters.video_in, cleaner.counters
    report = validate(out, "generic", fps=FPS)
    assert report.decode_errors == 0 and not report.failed_checks() - {"keyframe_interval"}, report.summary()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    # no B-frame stream: dropping frames from one breaks its references
    encoder=st.sampled_from(["x264-baseline", "x264-zerolatency-ref3"]),
    keep_every=st.sampled_from([2, 3]),
    phase=st.floats(0, PERIOD_MS, exclude_max=True),
)
def test_variable_rate_input_lands_on_the_grid_losing_nothing_the_rate_does_not_need(encoder_tags, encoder, keep_every, phase):
    """Every ``keep_every``-th frame of a no-B stream (a 15 or 10 fps device): every frame kept,
    on the 30 fps grid, the slots between filled with skip frames or left empty."""
    tags = encoder_tags(encoder)
    video = [t for t in tags if t.tag_type == 9 and t.payload[1] == 1]
    kept_ids = {id(t) for i, t in enumerate(video) if i % (keep_every * 60) == 0 or (i % 60) % keep_every == 0}
    thinned = [t for t in tags if t.tag_type != 9 or t.payload[1] != 1 or id(t) in kept_ids]
    cleaner, out = clean(thinned, phase)
    counters = cleaner.counters
    assert counters.video_out - counters.duplicated == counters.video_in, counters
    assert counters.dropped == 0 and counters.keyframes_relabelled == 0
    frames = [ts for type_id, ts, p in out if type_id == 9 and p[1] == 1]
    assert all(abs(s - round(s / PERIOD_MS) * PERIOD_MS) <= 1 for s in (b - a for a, b in zip(frames, frames[1:])))


@pytest.mark.parametrize(
    "encoder, most_s, median_s",
    [
        # ffmpeg sends in DTS order: at most the 1 ms between an audio frame's own stamp
        # and its sample-clock time
        ("x264-default", 0.0011, 0.0),
        ("x264-baseline", 0.0011, 0.0),
        # flvmux interleaves audio by presentation time, video by DTS: audio may arrive up
        # to the reorder delay (3 frames) before the video it must follow
        ("gst-x264enc", 0.101, 0.07),
    ],
)
def test_messages_in_timestamp_order_leave_at_once(encoder_tags, encoder, most_s, median_s):
    """What a muxer sends in DTS order needs no holding: each message leaves when it
    arrives, or when the message of the other track stamped alike arrives with it (the
    old interleaver held audio for the next video: p50 +11 ms in the forwarding bench)."""
    tags = encoder_tags(encoder)
    cleaner = StreamCleaner(CLOUDFLARE)
    arrived, holds, released = {}, [], []
    last_video = max(t.timestamp for t in tags if t.tag_type == 9)
    for tag in tags:
        now = tag.timestamp / 1000
        arrived[id(tag.payload)] = now
        for message in cleaner.push(MediaMessage.of(tag.tag_type, tag.timestamp, tag.payload), now):
            released.append(message.type_id)
            if id(message.payload) in arrived:
                holds.append((now - arrived.pop(id(message.payload)), message.type_id, message.timestamp))
    # at the start a track waits up to START_HOLD_S for the other's first frame; after the
    # last video frame the audio waits for the bound: the video may go on
    assert max(hold for hold in holds if hold[2] < 100)[0] <= START_HOLD_S + 0.005
    steady = [hold for hold in holds if 100 <= hold[2] < last_video]
    assert max(steady)[0] <= most_s, max(steady)
    assert sorted(steady)[len(steady) // 2][0] <= median_s
    # every video message leaves while the stream runs (GStreamer's frames with squashed
    # decoding times too: squeezed into their slot, neither dropped nor held); at the end,
    # the audio after the last video frame waits for the bound
    assert released.count(9) == sum(1 for t in tags if t.tag_type == 9)
    assert len(tags) - len(released) <= 10


def test_the_first_audio_leaves_before_any_video_comes(encoder_tags):
    tags = [t for t in encoder_tags("x264-baseline") if t.tag_type == 8][:5]
    cleaner = StreamCleaner(CLOUDFLARE)
    released = {}
    for tag in tags:
        now = tag.timestamp / 1000
        for message in cleaner.push(MediaMessage.of(8, tag.timestamp, tag.payload), now):
            released.setdefault(message.timestamp, now)
    first = min(released)
    assert released[first] - first / 1000 < 0.05
