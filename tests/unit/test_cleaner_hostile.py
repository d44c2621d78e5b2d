"""The cleaner under pauses and hostile timestamps (issue 9, point 4): nothing raises,
what it generates is bounded per call and per second, publisher rates are clamped."""

from __future__ import annotations

import time

import pytest

from rtmprelay.media import aac
from rtmprelay.media.cleaner import (
    GENERATED_BURST_S,
    MAX_FPS,
    CleanerConfig,
    StreamCleaner,
    silent_audio_payloads,
)
from rtmprelay.media.message import MediaMessage
from rtmprelay.testing.validate import validate
from tests.unit.test_cleaner_encoders import CLOUDFLARE

#: Generated messages one call may return beyond what came in: two seconds of each track.
GENERATED_BOUND = int(GENERATED_BURST_S * (MAX_FPS + 96000 / 1024)) + 1


def run(cleaner, messages):
    """Push (type, ts, payload, now) tuples; the output and the most any one push returned."""
    out, most = [], 0
    for type_id, ts, payload, now in messages:
        got = cleaner.push(MediaMessage.of(type_id, ts, payload), now)
        most = max(most, len(got))
        out.extend(got)
    out.extend(cleaner.finish())
    return out, most


def as_messages(tags, *, pause=None, stall=None):
    """Tags as (type, ts, payload, arrival) in arrival order: video from ``pause[0]`` ms
    stamped and arriving ``pause[1]`` ms later (the camera paused, the encoder went on
    where it stopped) while audio runs on; everything from ``stall[0]`` ms stamped and
    arriving ``stall[1]`` ms later."""
    out = []
    for index, tag in enumerate(tags):
        ts = tag.timestamp
        if pause and tag.tag_type == 9 and ts >= pause[0]:
            ts += pause[1]
        if stall and ts >= stall[0]:
            ts += stall[1]
        out.append((ts / 1000, index, (tag.tag_type, ts, tag.payload, ts / 1000)))
    return [message for _, _, message in sorted(out)]


@pytest.mark.parametrize("pause_ms", [500, 1000, 3000])
def test_a_video_pause_from_x264_zerolatency_ref3_is_bridged_not_raised(encoder_tags, pause_ms):
    """MaxFrameNum 16 with 3 references allows 12 skip frames in a row: the 13th raised
    MediaError and disconnected the publisher. The rest of the gap stays a gap."""
    cleaner = StreamCleaner(CLOUDFLARE)
    out, _ = run(cleaner, as_messages(encoder_tags("x264-zerolatency-ref3"), pause=(3000, pause_ms)))
    counters = cleaner.counters
    assert 0 < counters.duplicated <= 12, counters
    assert counters.video_out == counters.video_in + counters.duplicated
    report = validate([(m.type_id, m.timestamp, m.payload) for m in out], "generic", fps=30)
    assert report.decode_errors == 0 and report.decoded_video_frames == counters.video_out, report.summary()
    verdict = {v.rule: v for v in cleaner.verdicts()}["constant_frame_rate"]
    assert "MaxFrameNum" in verdict.detail and not verdict.repaired


def test_a_three_hour_stall_generates_a_bounded_amount(encoder_tags):
    """After a 3 h stall one video frame emitted 465,116 silent AAC frames in one call."""
    cleaner = StreamCleaner(CLOUDFLARE)
    out, most = run(cleaner, as_messages(encoder_tags("x264-baseline"), stall=(5000, 3 * 3600 * 1000)))
    assert most <= GENERATED_BOUND
    assert cleaner.counters.silence_inserted + cleaner.counters.duplicated <= 2 * GENERATED_BOUND, cleaner.counters
    timestamps = [m.timestamp for m in out]
    assert timestamps == sorted(timestamps)


@pytest.mark.parametrize("step_ms", [9_000, 2**31 - 1, 2**32 - 33, 10 * 3600 * 1000])
def test_a_timestamp_step_generates_a_bounded_amount(encoder_tags, step_ms):
    """One push turned a timestamp step into 155,042 generated messages."""
    tags = encoder_tags("x264-baseline")
    messages = [(t.tag_type, (t.timestamp + (step_ms if t.timestamp >= 4000 else 0)) % 2**32, t.payload, t.timestamp / 1000) for t in tags]
    # and a real 9 s gap: the arrival clock agrees
    messages += [(t.tag_type, t.timestamp + 30_000, t.payload, t.timestamp / 1000 + 19) for t in tags if t.payload[1] == 1][:200]
    cleaner = StreamCleaner(CLOUDFLARE)
    out, most = run(cleaner, messages)
    assert most <= GENERATED_BOUND
    timestamps = [m.timestamp for m in out]
    assert timestamps == sorted(timestamps)


@pytest.mark.parametrize("declared", [1e9, 2.0**53, 1e300, float("inf"), float("nan"), -5.0, 0.0, 1e-300])
def test_an_absurd_declared_frame_rate_is_clamped(encoder_tags, declared):
    """``--fps source`` with an onMetaData frame rate of 1e9 hung the cleaner."""
    cleaner = StreamCleaner(CleanerConfig.from_profile("cloudflare", fps=None))
    metadata = cleaner.rewrite_metadata({"framerate": declared})
    started = time.perf_counter()
    out, most = run(cleaner, as_messages(encoder_tags("x264-baseline")[:200]))
    assert time.perf_counter() - started < 5
    assert 1 <= metadata["framerate"] <= MAX_FPS
    assert most <= GENERATED_BOUND


def test_an_sps_changing_its_order_count_type_then_a_p_frame(encoder_tags):
    """A sequence header that changes pic_order_cnt_type (2 -> 0), then a P frame of the
    new stream without an IDR: a TypeError in skipframe.py."""
    first = [t for t in encoder_tags("x264-baseline") if t.tag_type == 9]  # type 2, no B-frames
    then = [t for t in encoder_tags("x264-high-b2") if t.tag_type == 9]  # type 0
    cleaner = StreamCleaner(CLOUDFLARE)
    messages = [(9, t.timestamp, t.payload, t.timestamp / 1000) for t in first[:40]]
    messages.append((9, 1400, then[0].payload, 1.4))  # the other sequence header
    messages += [(9, 1400 + 33 * i, t.payload, 1.4 + 0.033 * i) for i, t in enumerate(then[5:20])]
    out, _ = run(cleaner, messages)
    assert cleaner.counters.video_in == 40 - 1 + 15


def test_an_inter_frame_of_one_empty_nal_is_counted_and_skipped(encoder_tags):
    tags = encoder_tags("x264-zerolatency-ref3")[:60]
    empty = bytes((0x27, 1, 0, 0, 0)) + bytes(4)  # one NAL unit of length 0
    cleaner = StreamCleaner(CLOUDFLARE)
    messages = as_messages(tags)
    messages.insert(30, (9, messages[29][1], empty, messages[29][3]))
    out, _ = run(cleaner, messages)
    assert cleaner.counters.malformed == 1
    assert empty not in [m.payload for m in out]
    assert {v.rule for v in cleaner.verdicts()} >= {"well_formed_media"}


@pytest.mark.parametrize("config", [bytes.fromhex("1788000000080000"), bytes.fromhex("12080000")])
def test_an_absurd_or_unusual_aac_config_is_not_raised(encoder_tags, config):
    """Explicit sampling frequencies (1 Hz here) and 8 kHz: audio passes, nothing raises."""
    tags = encoder_tags("x264-baseline")[:200]
    cleaner = StreamCleaner(CLOUDFLARE)
    messages = as_messages(tags)
    messages.insert(5, (8, 100, bytes((0xAF, 0)) + config, 0.1))
    out, most = run(cleaner, messages)
    assert most <= GENERATED_BOUND


def test_silence_for_bridging_lasts_a_frame_each():
    config = aac.parse_aac_config(bytes.fromhex("1210"))
    frames = silent_audio_payloads(config, 3)
    assert len(frames) == 3 and all(f[:2] == b"\xaf\x01" for f in frames)


def _bitrate_verdict(mbit_s: float, first_second_mbit_s: float):
    """A stream of ``mbit_s`` (after a first second of ``first_second_mbit_s``), as
    non-AAC audio messages every 20 ms: only their sizes matter to the rule."""
    cleaner = StreamCleaner(CLOUDFLARE)
    for n in range(14 * 50):
        rate = first_second_mbit_s if n < 50 else mbit_s
        cleaner.push(MediaMessage.of(8, n * 20, b"\x2f" + bytes(int(rate * 1e6 / 8 / 50) - 1)), n * 0.02)
    return {v.rule: v for v in cleaner.verdicts()}.get("bitrate")


def test_the_bitrate_rule_is_judged_over_several_gops_and_names_its_threshold():
    """A 2.00 Mbit/s stream was flagged and a 1.86 one logged as 0.99: judged on the first second."""
    assert _bitrate_verdict(2.0, first_second_mbit_s=0.99) is None
    verdict = _bitrate_verdict(1.86, first_second_mbit_s=1.86)
    assert verdict is not None and verdict.broken and not verdict.repaired
    assert "1.86 Mbit/s" in verdict.detail and "cloudflare minimum of 2 Mbit/s" in verdict.detail, verdict.detail
