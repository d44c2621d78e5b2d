"""TrackTimeline: jumps, resets and wraps re-based; real gaps kept."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rtmprelay.media.timeline import Repair, TrackTimeline

STEP = 1000 / 30


def feed(timeline, stamps_and_arrivals):
    return [timeline.place(ts, arrival) for ts, arrival in stamps_and_arrivals]


def test_regular_input_keeps_its_spacing():
    t = TrackTimeline(STEP)
    out = feed(t, [(1000 + 33 * i, i * 0.033) for i in range(5)])
    assert [s.time_ms for s in out] == [0, 33, 66, 99, 132]
    assert all(s.repair is None for s in out)


def test_forward_jump_is_rebased_when_no_time_passed():
    t = TrackTimeline(STEP, jump_threshold_ms=1000)
    out = feed(t, [(0, 0.0), (33, 0.033), (60_033, 0.066), (60_066, 0.099)])
    assert out[2].repair is Repair.FORWARD_JUMP
    assert out[2].time_ms == 33 + STEP
    assert out[3].time_ms == 33 + STEP + 33


def test_forward_step_that_matches_the_wait_is_a_real_gap():
    t = TrackTimeline(STEP, jump_threshold_ms=1000)
    out = feed(t, [(0, 0.0), (33, 0.033), (3033, 3.033)])
    assert out[2].repair is None
    assert out[2].time_ms == 3033


def test_backward_jump_and_reset():
    t = TrackTimeline(STEP, jump_threshold_ms=1000)
    out = feed(t, [(50_000, 0.0), (50_033, 0.033), (40_000, 0.066), (5, 0.1), (38, 0.133)])
    assert out[2].repair is Repair.BACKWARD_JUMP
    assert out[3].repair is Repair.RESET
    assert [round(s.time_ms, 1) for s in out] == [0, 33, round(33 + STEP, 1), round(33 + 2 * STEP, 1), round(66 + 2 * STEP, 1)]


def test_32_bit_wrap_is_not_a_jump():
    t = TrackTimeline(STEP)
    out = feed(t, [(0xFFFF_FFF0, 0.0), (0x10, 0.032)])
    assert out[1].repair is None and out[1].time_ms == 0x20


def test_anchor_places_the_first_message_and_rebased_ones():
    t = TrackTimeline(STEP)
    assert t.place(123456, 0.0, anchor_ms=500).time_ms == 500
    # after a reset the anchor wins when it is later than the next step
    assert t.place(0, 0.01, anchor_ms=900).time_ms == 900
    assert t.place(33, 0.043, anchor_ms=0).time_ms == 933


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.floats(0, 0.5)), min_size=2, max_size=60))
def test_output_never_goes_back(steps):
    t = TrackTimeline(STEP)
    arrival = 0.0
    last = None
    for ts, wait in steps:
        arrival += wait
        stamp = t.place(ts, arrival)
        if last is not None:
            assert stamp.time_ms >= last
        last = stamp.time_ms


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-5000, 5000), min_size=2, max_size=60))
def test_output_never_jumps_further_than_the_wall_clock_allows(deltas):
    """Arriving 33 ms apart, no step may exceed the threshold plus the wait."""
    t = TrackTimeline(STEP, jump_threshold_ms=1000)
    ts, last = 10_000_000, None
    for i, d in enumerate(deltas):
        ts = (ts + d) % 2**32
        stamp = t.place(ts, i * 0.033)
        if last is not None:
            assert stamp.time_ms - last <= 1000 + 33 + 1e-6
        last = stamp.time_ms
