"""rtmprelay.relay.meters: keyframe intervals and frame rate in a stream's own timestamps."""

from __future__ import annotations

import pytest

from rtmprelay.media.message import MediaMessage
from rtmprelay.relay.meters import FrameRate, KeyframeIntervals
from rtmprelay.relay.registry import StreamRegistry
from tests.unit.test_hls_output import Publisher


def test_intervals_land_in_the_bucket_at_or_above_them():
    intervals = KeyframeIntervals(buckets_s=(0.5, 2.0, 10.0))
    for timestamp in (0, 70, 2070, 4070, 16070):  # 0.07 s, 2 s (on a bound), 2 s, 12 s
        intervals.keyframe(timestamp)
    assert intervals.cumulative() == [(0.5, 1), (2.0, 3), (10.0, 3), (float("inf"), 4)]
    assert intervals.count == 4
    assert intervals.sum_s == pytest.approx(0.07 + 2 + 2 + 12)


def test_a_reset_or_a_step_back_gives_no_interval_and_the_next_one_counts_from_it():
    intervals = KeyframeIntervals(buckets_s=(1.0, 5.0))
    for timestamp in (10_000, 12_000, 0, 0, 3_000):  # 2 s, reset to 0, same time, 3 s
        intervals.keyframe(timestamp)
    assert intervals.count == 2
    assert intervals.sum_s == pytest.approx(5.0)


def test_frame_rate_over_the_window_and_after_a_restart():
    rate = FrameRate(window_s=1.0)
    assert rate.fps is None
    for frame in range(60):  # 2 s at 15 fps: only the last second counts
        rate.frame(round(frame * 1000 / 15))
    assert rate.fps == pytest.approx(15, rel=0.02)
    for frame in range(31):  # the timeline starts again, at 30 fps
        rate.frame(round(frame * 1000 / 30))
    assert rate.fps == pytest.approx(30, rel=0.02)


def video(timestamp: int, key: bool) -> MediaMessage:
    return MediaMessage.of(9, timestamp, bytes([0x17 if key else 0x27, 1, 0, 0, 0]) + bytes(8))


def test_a_live_stream_measures_keyframes_before_and_after_delivery_and_its_output_rate():
    stream = StreamRegistry().start("live/u1/s1", Publisher())
    stream.publish_media(MediaMessage.of(9, 0, bytes([0x17, 0, 0, 0, 0]) + bytes(8)))  # sequence header: no frame, no keyframe
    for frame in range(91):  # 3 s at 30 fps, a keyframe every second
        stream.publish_media(video(round(frame * 1000 / 30), frame % 30 == 0))
    for side in (stream.input_keyframes, stream.output_keyframes):
        assert side.count == 3 and side.sum_s == pytest.approx(3.0)
    assert stream.output_frame_rate.fps == pytest.approx(30, rel=0.01)
