"""media.gate.KeyframeGate: the one "drop to the next keyframe" rule of every sink."""

from __future__ import annotations

from rtmprelay.media.gate import KeyframeGate
from rtmprelay.media.message import MediaMessage

AVC_HEADER = MediaMessage.of(9, 0, b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f")
AAC_HEADER = MediaMessage.of(8, 0, b"\xaf\x00\x12\x10")
KEY = MediaMessage.of(9, 0, b"\x17\x01\x00\x00\x00" + b"K" * 1000)
INTER = MediaMessage.of(9, 0, b"\x27\x01\x00\x00\x00" + b"P" * 1000)
AUDIO = MediaMessage.of(8, 0, b"\xaf\x01" + b"A" * 200)


def test_a_paused_socket_past_its_bound_drops_to_the_next_keyframe_after_it_resumes():
    """What players and upstreams do (their socket's IPushProducer pauses the gate)."""
    gate = KeyframeGate(limit=2_000)
    assert all(gate.admit(INTER) for _ in range(10))  # not paused: no bound
    gate.pause()
    assert [gate.admit(INTER) for _ in range(5)] == [True, True, False, False, False]  # 2,010 bytes > 2,000
    assert gate.admit(AVC_HEADER) and gate.admit(AAC_HEADER)  # headers always pass
    assert not gate.admit(AUDIO)  # audio waits for the keyframe too
    assert not gate.admit(KEY)  # still paused and over the bound: the keyframe is not sent either
    gate.resume()
    assert not gate.admit(INTER)  # resumed, but no keyframe yet
    assert gate.admit(KEY) and gate.admit(INTER) and gate.admit(AUDIO)
    assert gate.dropped == 6


def test_a_full_queue_drops_to_the_next_keyframe_that_fits():
    """What the HLS worker does with its bounded queue (``full`` from the caller)."""
    gate = KeyframeGate()
    assert gate.admit(KEY) and gate.admit(INTER, full=False)
    assert not gate.admit(INTER, full=True)
    assert not gate.admit(INTER, full=False)  # the skip goes on: its reference was dropped
    assert not gate.admit(KEY, full=True)  # a keyframe that does not fit is dropped as well
    assert gate.admit(AVC_HEADER, full=True)  # sequence headers are never dropped
    assert gate.admit(KEY, full=False) and gate.admit(INTER)
    assert gate.dropped == 3


def test_a_sink_that_lost_what_came_before_waits_for_a_keyframe():
    gate = KeyframeGate(limit=10)
    gate.skip_to_keyframe()
    assert not gate.admit(INTER) and gate.admit(KEY) and gate.admit(INTER)
