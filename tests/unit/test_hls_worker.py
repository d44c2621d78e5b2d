"""StreamWorker: order, the bounded queue, drop-until-keyframe, errors kept on the thread."""

from __future__ import annotations

import threading

import pytest

from rtmprelay.errors import MediaError
from rtmprelay.hls.worker import StreamWorker
from rtmprelay.media.message import MediaMessage
from rtmprelay.media.tags import build_aac_tag, build_video_tag

KEY, INTER = 1, 2
HEADER = build_video_tag(KEY, 0, b"\x01\x42\xc0\x1f\xff")
AUDIO_HEADER = build_aac_tag(0, b"\x11\x90")


def video(frame_type: int, tag: int, size: int = 10) -> bytes:
    return build_video_tag(frame_type, 1, bytes([tag % 256]) * size)


def audio(tag: int) -> bytes:
    return build_aac_tag(1, bytes([tag]) * 4)


class Recorder:
    """A pipeline that can be held, so the queue fills as behind a slow encoder."""

    def __init__(self) -> None:
        self.pushed: list[tuple[int, int]] = []
        self.calls: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_on: set[int] = set()

    def push(self, type_id: int, timestamp: int, payload: bytes) -> None:
        self.entered.set()
        self.gate.wait(10)
        if timestamp in self.fail_on:
            raise MediaError("bad frame", f"at {timestamp}")
        if timestamp == -1:
            raise RuntimeError("a bug")
        self.pushed.append((type_id, timestamp))

    def finish(self) -> None:
        self.calls.append("finish")


def drain(worker: StreamWorker) -> None:
    worker.stop()
    assert worker.join(10)


def test_media_and_calls_run_in_order_on_another_thread():
    pipeline = Recorder()
    seen_threads = []
    worker = StreamWorker(pipeline)
    worker.push(MediaMessage.of(9, 0, HEADER))
    worker.push(MediaMessage.of(9, 0, video(KEY, 0)))
    worker.push(MediaMessage.of(8, 10, audio(1)))
    worker.call(lambda: seen_threads.append(threading.current_thread()))
    worker.call(pipeline.finish)
    drain(worker)
    assert pipeline.pushed == [(9, 0), (9, 0), (8, 10)]
    assert pipeline.calls == ["finish"]
    assert seen_threads and seen_threads[0] is not threading.current_thread()
    assert worker.counters.frames_queued == 0 and worker.counters.bytes_queued == 0


def test_a_full_queue_drops_video_until_the_next_keyframe_and_counts_it():
    pipeline = Recorder()
    pipeline.gate.clear()  # the encoder is stuck
    worker = StreamWorker(pipeline, max_frames=3)
    assert worker.push(MediaMessage.of(9, 0, video(KEY, 0)))
    assert pipeline.entered.wait(10)  # taken by the thread, which now waits
    accepted = [worker.push(MediaMessage.of(9, ts, video(INTER, ts))) for ts in (33, 67, 100, 133, 167)]
    # one frame is being processed, three fit in the queue, the rest are dropped
    assert accepted == [True, True, True, False, False]
    assert worker.counters.video_dropped == 2
    assert worker.counters.max_frames_queued == 3
    assert worker.push(MediaMessage.of(9, 170, HEADER))  # sequence headers are never dropped
    assert not worker.push(MediaMessage.of(8, 171, audio(2)))  # audio is dropped while full
    pipeline.gate.set()  # the encoder catches up
    drain_until = threading.Event()
    worker.call(drain_until.set)
    assert drain_until.wait(10)
    # room again, but an inter frame's reference was dropped: still dropped
    assert not worker.push(MediaMessage.of(9, 200, video(INTER, 200)))
    assert worker.push(MediaMessage.of(9, 233, video(KEY, 233)))
    assert worker.push(MediaMessage.of(9, 267, video(INTER, 267)))
    drain(worker)
    timestamps = [ts for type_id, ts in pipeline.pushed if type_id == 9]
    assert timestamps[-3:] == [170, 233, 267]
    assert 200 not in timestamps
    assert worker.counters.audio_dropped == 1


def test_the_byte_bound_holds_too():
    pipeline = Recorder()
    pipeline.gate.clear()
    worker = StreamWorker(pipeline, max_frames=1000, max_bytes=1000)
    worker.push(MediaMessage.of(9, 0, video(KEY, 0, 100)))
    results = [worker.push(MediaMessage.of(9, ts, video(INTER, ts, 300))) for ts in range(1, 10)]
    assert results.count(True) <= 4
    assert worker.counters.bytes_queued <= 1000
    pipeline.gate.set()
    drain(worker)


def test_errors_are_reported_and_the_thread_goes_on():
    pipeline = Recorder()
    pipeline.fail_on = {33}
    media_errors, crashes = [], []
    worker = StreamWorker(pipeline, on_media_error=media_errors.append, on_crash=crashes.append)
    for ts in (0, 33, -1, 67):
        worker.push(MediaMessage.of(9, ts, video(KEY, 1)))
    drain(worker)
    assert [e.where for e in media_errors] == ["at 33"]
    assert [type(e) for e in crashes] == [RuntimeError]
    assert [ts for _, ts in pipeline.pushed] == [0, 67]
    assert worker.counters.errors == 2


def test_nothing_is_taken_after_stop():
    worker = StreamWorker(Recorder())
    drain(worker)
    assert not worker.push(MediaMessage.of(9, 0, video(KEY, 0)))


def test_bounds_must_be_positive():
    with pytest.raises(ValueError):
        StreamWorker(Recorder(), max_frames=0)
