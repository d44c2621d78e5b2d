"""The dirty-stream fixtures checked on their own: factory, validator, publisher.

Each fault must make a stream the validator rejects for Cloudflare in the
expected way, and only that way; a clean stream must pass; what the dirty
publisher sends must be what nginx-rtmp records, timestamps and bytes. If
these fail, relay tests built on the same fixtures cannot be trusted.
Streams are 320x240 and a few seconds long; the file runs in about 20 s.
"""

from __future__ import annotations

import socket
import time

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtmprelay.testing import PeerTimeout, assert_payload_subsequence, decode_check, read_flv_tags
from rtmprelay.testing.dirty import (
    AUDIO,
    VIDEO,
    AudioGap,
    AVSkew,
    DirtyStreamSpec,
    IrregularGop,
    LongGop,
    StreamMessage,
    TimestampJump,
    TimestampReset,
    VariableFrameRate,
    make_dirty_stream,
)
from rtmprelay.testing.dirty_publisher import DirtyPublisher, PublishError
from rtmprelay.testing.validate import VALIDATION_PROFILES, validate

CLEAN = DirtyStreamSpec(seconds=4.5, fps=30, gop_s=2.0)


def frames(messages, kind):
    """(timestamp, payload) of the audio or video frames, sequence headers left out."""
    type_id = {"audio": AUDIO, "video": VIDEO}[kind]
    out = []
    for m in messages:
        tag_type = getattr(m, "type_id", None) or m.tag_type
        payload = m.payload
        if tag_type == type_id and len(payload) > 1 and payload[1] == 1:
            out.append((m.timestamp, payload))
    return out


# -- the factory ----------------------------------------------------------------


def test_clean_stream_passes_cloudflare(dirty_stream_factory, tmp_path):
    stream = dirty_stream_factory(CLEAN)
    report = validate(stream, "cloudflare", fps=30)
    report.assert_ok()
    assert report.video_frames == stream.expected.video_frames == 135
    assert report.keyframe_timestamps_ms == stream.expected.keyframe_timestamps_ms == (0, 2000, 4000)
    assert stream.expected.keyframe_times_s == (0.0, 2.0, 4.0)
    assert report.output_fps == pytest.approx(30, rel=0.005)
    assert report.decoded_video_frames == 135 and report.decode_errors == 0 and not report.decode_warnings
    assert report.decoded_audio_frames == report.audio_frames == stream.expected.audio_frames
    assert abs(report.max_av_drift_ms) < 50
    assert not report.has_bframes and report.max_composition_time_ms == 0

    # Sequence headers first, at timestamp 0, then the first frame: an IDR keyframe.
    first = stream.messages[:3]
    assert [(m.type_id, m.timestamp, m.is_header) for m in first[:2]] == [(VIDEO, 0, True), (AUDIO, 0, True)]
    assert first[0].payload[:5] == b"\x17\x00\x00\x00\x00" and first[0].payload[5:] == stream.video_config
    assert first[1].payload == b"\xaf\x00" + stream.audio_config
    # Interleaved by send time, as a device sends them.
    assert [m.send_at for m in stream.messages] == sorted(m.send_at for m in stream.messages)
    assert stream.metadata["width"] == 320 and stream.metadata["framerate"] == 30

    # The same verdict on the FLV file, which ffmpeg/PyAV decode cleanly.
    flv = stream.to_flv(tmp_path / "clean.flv")
    assert validate(flv, "cloudflare", fps=30).ok
    assert read_flv_tags(flv)[0].kind == "script"  # onMetaData
    assert decode_check(flv).clean


def test_same_spec_same_bytes_and_seeds_matter():
    spec = DirtyStreamSpec(
        seconds=2.0, faults=[VariableFrameRate(9, 15, seed=5), IrregularGop(lo_s=0.07, hi_s=0.9, seed=5)]
    )
    first = make_dirty_stream(spec)
    from rtmprelay.testing import dirty

    dirty._encode.cache_clear()  # a fresh encode, not the cached one
    second = make_dirty_stream(spec)
    assert first.messages == second.messages
    assert [m.send_at for m in first.messages] == [m.send_at for m in second.messages]
    assert first.expected == second.expected

    other = make_dirty_stream(attrs.evolve(spec, faults=[VariableFrameRate(9, 15, seed=6)]))
    assert other.expected.capture_times_s != first.expected.capture_times_s


@pytest.mark.parametrize(
    ("entropy", "bframes", "profile_idc"),
    [("cabac", 0, 100), ("cavlc", 0, 66), ("cavlc", 2, 77)],
    ids=["cabac-high", "cavlc-baseline", "cavlc-main-bframes"],
)
def test_entropy_and_profile(dirty_stream_factory, entropy, bframes, profile_idc):
    stream = dirty_stream_factory(seconds=2.5, entropy=entropy, bframes=bframes, sample_rate=48000, channels=2)
    assert stream.video_config[1] == profile_idc  # AVCProfileIndication
    assert stream.audio_config[:2] == bytes([0x11, 0x90])  # AAC-LC, 48 kHz, 2 channels
    validate(stream, "cloudflare").assert_ok()


def test_bframes_have_composition_times(dirty_stream_factory):
    stream = dirty_stream_factory(seconds=4.5, bframes=2)
    cts = [m.composition_time for m in stream.video_messages if not m.is_header]
    assert any(c > 0 for c in cts) and min(cts) >= 0
    report = validate(stream, "cloudflare")
    report.assert_ok()  # Cloudflare takes B-frames in closed GOPs
    assert report.has_bframes and report.max_composition_time_ms == max(cts)
    assert report.decoded_video_frames == stream.expected.video_frames

    no_bframes = attrs.evolve(VALIDATION_PROFILES["cloudflare"], name="no-bframes", allow_bframes=False)
    assert validate(stream, no_bframes, decode=False).failed_checks() == {"bframes"}


# -- each fault fails the validator, in its own way -------------------------------

FAULTS = [
    pytest.param(
        DirtyStreamSpec(seconds=4.5, faults=[VariableFrameRate(9, 15, seed=7)]),
        {"frame_interval", "frame_rate"},
        id="variable-frame-rate",
    ),
    pytest.param(
        DirtyStreamSpec(seconds=10, faults=[IrregularGop(intervals_s=(0.07, 0.5, 3.0, 6.0))]),
        {"keyframe_interval"},
        id="irregular-gop-list",
    ),
    pytest.param(
        DirtyStreamSpec(seconds=6, faults=[IrregularGop(lo_s=0.07, hi_s=1.5, seed=3)]),
        {"keyframe_interval"},
        id="irregular-gop-random",
    ),
    pytest.param(
        DirtyStreamSpec(seconds=12.5, faults=[LongGop(seconds=12)]),
        {"keyframe_interval"},
        id="long-gop",
    ),
    pytest.param(
        DirtyStreamSpec(seconds=4.5, faults=[TimestampJump(at_s=1.0, delta_ms=3000)]),
        {"frame_interval", "frame_rate", "audio_gap"},
        id="jump-forward",
    ),
    pytest.param(
        DirtyStreamSpec(seconds=4.5, faults=[TimestampJump(at_s=1.0, delta_ms=-800)]),
        {"monotonic"},
        id="jump-back",
    ),
    pytest.param(
        DirtyStreamSpec(seconds=4.5, faults=[TimestampJump(at_s=1.0, delta_ms=1000, track="video")]),
        {"frame_interval", "frame_rate", "av_drift"},
        id="jump-video-only",
    ),
    pytest.param(
        DirtyStreamSpec(seconds=4.5, faults=[TimestampJump(at_s=1.0, delta_ms=1000, track="audio")]),
        {"audio_gap", "av_drift"},
        id="jump-audio-only",
    ),
    pytest.param(
        DirtyStreamSpec(seconds=4.5, faults=[TimestampReset(at_s=2.5)]),
        {"monotonic"},
        id="reset",
    ),
    pytest.param(
        DirtyStreamSpec(seconds=4.5, faults=[AVSkew(audio_ahead_ms=500)]),
        {"av_drift"},
        id="audio-ahead",
    ),
    pytest.param(
        DirtyStreamSpec(seconds=4.5, faults=[AudioGap(at_s=1.0, duration_s=0.5)]),
        {"audio_gap"},
        id="audio-gap",
    ),
]


@pytest.mark.parametrize(("spec", "expected_checks"), FAULTS)
def test_fault_fails_cloudflare_as_expected(dirty_stream_factory, spec, expected_checks):
    stream = dirty_stream_factory(spec)
    report = validate(stream, "cloudflare", fps=spec.fps)
    assert report.failed_checks() == expected_checks, report.summary()
    with pytest.raises(AssertionError, match=r"profile cloudflare: \d+ violation"):
        report.assert_ok()
    # Faults are in timestamps and GOPs, never in the media: it all decodes.
    assert report.decode_errors == 0, report.summary()
    assert report.decoded_video_frames == stream.expected.video_frames
    for violation in report.violations:
        assert violation.where and violation.what


def test_fault_details(dirty_stream_factory):
    """The violations say what the fault did, where and when."""
    gap = validate(dirty_stream_factory(seconds=4.5, faults=[AudioGap(1.0, 0.5)]), "cloudflare")
    (violation,) = gap.violations
    assert 500 <= gap.audio_gaps_ms[0] <= 550 and 1500 <= violation.when_ms <= 1530
    assert "audio frame #" in violation.where

    back = validate(dirty_stream_factory(seconds=4.5, faults=[TimestampJump(1.0, -800)]), "cloudflare")
    assert {v.what.split(":")[0] for v in back.violations} == {"video DTS went back", "audio timestamp went back"}

    reset = dirty_stream_factory(seconds=4.5, faults=[TimestampReset(2.5)])
    assert min(m.timestamp for m in reset.messages[reset.reset_indices[0]:]) == 0
    headers = [m for m in reset.messages if m.is_header]
    assert len(headers) == 4  # sent again at the reset, as a reconnecting encoder does
    assert reset.expected.keyframe_times_s == (0.0, 2.0, 2.5)

    skew = validate(dirty_stream_factory(seconds=4.5, faults=[AVSkew(500)]), "cloudflare")
    assert 450 <= skew.max_av_drift_ms <= 510

    vfr = dirty_stream_factory(seconds=4.5, faults=[VariableFrameRate(9, 15, seed=7)])
    per_second = [sum(1 for t in vfr.expected.capture_times_s if s <= t < s + 1) for s in range(4)]
    assert all(9 <= n <= 15 for n in per_second), per_second
    assert all(abs(t * 30 - round(t * 30)) < 1e-3 for t in vfr.expected.capture_times_s)  # on the camera's grid

    long = dirty_stream_factory(seconds=12.5, faults=[LongGop(12)])
    assert long.expected.keyframe_intervals_s == (12.0,)


def test_generic_profile_only_minds_structure(dirty_stream_factory):
    for faults in ([VariableFrameRate(9, 15, seed=7)], [AVSkew(500)], [AudioGap(1.0, 0.5)]):
        validate(dirty_stream_factory(seconds=4.5, faults=faults), "generic").assert_ok()
    jumped = dirty_stream_factory(seconds=4.5, faults=[TimestampJump(1.0, -800)])
    assert validate(jumped, "generic").failed_checks() == {"monotonic"}


def test_negative_timestamps_are_refused():
    with pytest.raises(ValueError, match="AVSkew.*negative"):
        make_dirty_stream(DirtyStreamSpec(seconds=1, faults=[AVSkew(-300)]))
    with pytest.raises(ValueError, match="TimestampJump.*negative"):
        make_dirty_stream(DirtyStreamSpec(seconds=1, faults=[TimestampJump(0.5, -2000)]))


# -- the validator fails on broken structure too ------------------------------------


def test_validator_catches_structural_faults(dirty_stream_factory):
    stream = dirty_stream_factory(CLEAN)
    messages = list(stream.messages)
    video = [i for i, m in enumerate(messages) if m.type_id == VIDEO and not m.is_header]

    # A P-frame labelled keyframe: not an IDR.
    p_frame = video[10]
    relabelled = list(messages)
    m = messages[p_frame]
    relabelled[p_frame] = StreamMessage(m.type_id, m.timestamp, bytes([0x17]) + m.payload[1:], m.send_at)
    report = validate(relabelled, "cloudflare", decode=False)
    assert "idr" in report.failed_checks()
    assert "no IDR slice" in report.of("idr")[0].what

    # Joining after the first keyframe: the first frame is not one, and it does not decode.
    late = [m for i, m in enumerate(messages) if i not in video[:5]]
    report = validate(late, "cloudflare")
    assert {"first_keyframe", "decode"} <= report.failed_checks()

    # No sequence header at all.
    headless = [m for m in messages if not m.is_header]
    assert "sequence_header" in validate(headless, "cloudflare", decode=False).failed_checks()

    # A stuttering frame (same DTS twice) is not strictly increasing.
    v = messages[video[20]]
    stutter = list(messages)
    stutter[video[21]] = StreamMessage(VIDEO, v.timestamp, messages[video[21]].payload)
    assert "monotonic" in validate(stutter, "cloudflare", decode=False).failed_checks()


# -- the publisher, against nginx-rtmp -----------------------------------------------


@pytest.mark.peers
def test_publisher_nginx_records_exactly_what_was_sent(nginx_rtmp_factory, dirty_stream_factory, dirty_publisher_factory):
    nginx = nginx_rtmp_factory(applications=("live", "live/user1"))
    stream = dirty_stream_factory(
        seconds=3,
        bframes=2,
        faults=[VariableFrameRate(9, 15, seed=2), TimestampJump(1.0, -800), AVSkew(300), AudioGap(2.0, 0.3)],
    )
    publisher = dirty_publisher_factory(nginx.url("user1/dirty"), stream, speed=4.0)
    assert publisher.wait() == 0, publisher.describe()
    publisher.check()
    assert publisher.result.messages_sent == len(stream.messages)

    recording = nginx.wait_recording("dirty", app="live/user1")
    runs = assert_payload_subsequence(stream.flv_bytes(), recording)
    for kind in ("video", "audio"):
        assert runs[kind].start == 0 and runs[kind].dropped_tail == 0
    tags = read_flv_tags(recording)
    # nginx keeps the device's timestamps, backward jump and all: nothing normalized on the way.
    assert frames(tags, "video") == frames(stream.messages, "video")
    assert frames(tags, "audio") == frames(stream.messages, "audio")
    assert validate(recording, "cloudflare").failed_checks() == validate(stream, "cloudflare").failed_checks()


@pytest.mark.peers
def test_publisher_paces_like_a_device_and_reconnects(nginx_rtmp, dirty_stream_factory, dirty_publisher_factory):
    stream = dirty_stream_factory(seconds=2.5, faults=[TimestampReset(1.5)])
    publisher = dirty_publisher_factory(nginx_rtmp.url("paced"), stream, speed=1.0, reconnect_at_resets=True)
    assert publisher.wait() == 0, publisher.describe()
    result = publisher.result
    assert result.connections == 2
    # Real time: the last message went out at its send time, not before, not much after.
    assert stream.duration_s - 0.01 <= result.publish_seconds <= stream.duration_s + 0.5, publisher.describe()
    assert result.max_lateness < 0.5, publisher.describe()

    recording = nginx_rtmp.wait_recording("paced", count=2)  # nginx rewrites the file per publish
    second = stream.segments()[1]
    assert frames(read_flv_tags(recording), "video") == frames(second, "video")
    assert frames(second, "video")[0][0] <= 20  # restarted at zero


@pytest.mark.peers
def test_publisher_reports_errors(nginx_rtmp, free_port, dirty_stream_factory, dirty_publisher_factory):
    stream = dirty_stream_factory(CLEAN)

    refused = dirty_publisher_factory(f"rtmp://127.0.0.1:{free_port}/live/x", stream, speed=None)
    assert refused.wait() == 1
    assert "cannot connect" in refused.error and "Connection refused" in refused.error
    with pytest.raises(PublishError, match="cannot connect"):
        refused.check()

    no_app = dirty_publisher_factory(nginx_rtmp.url("x", app="nope"), stream, speed=None)
    assert no_app.wait() == 1
    assert "closed the connection" in no_app.error

    # The same name published twice: nginx answers NetStream.Publish.BadName.
    first = dirty_publisher_factory(nginx_rtmp.url("dup"), stream, speed=1.0)
    nginx_rtmp.wait_log(r"publish: name='dup'")
    second = dirty_publisher_factory(nginx_rtmp.url("dup"), stream, speed=None)
    assert second.wait() == 1
    assert "NetStream.Publish.BadName" in second.error, second.describe()
    first.stop()
    assert first.error.startswith("stopped before the end")


@pytest.mark.peers
def test_ffmpeg_copy_of_the_flv_is_the_other_publisher(nginx_rtmp, dirty_stream_factory, ffmpeg_publisher_factory, tmp_path):
    stream = dirty_stream_factory(CLEAN)
    flv = stream.to_flv(tmp_path / "clean.flv")
    publisher = ffmpeg_publisher_factory(nginx_rtmp.url("copy"), source_file=flv, seconds=None, realtime=False)
    assert publisher.wait() == 0, publisher.describe()
    recording = nginx_rtmp.wait_recording("copy")
    # ffmpeg adds an AVC end-of-sequence tag, which counts as a header: compare frames only.
    runs = assert_payload_subsequence(flv, recording, check_headers=False)
    assert runs["video"].count == stream.expected.video_frames
    validate(recording, "cloudflare").assert_ok()


def test_publisher_is_bounded_in_time(dirty_stream_factory):
    """A server that accepts and says nothing, and a wait shorter than the stream."""
    stream = dirty_stream_factory(CLEAN)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        mute = DirtyPublisher(f"rtmp://127.0.0.1:{port}/live/x", stream, connect_timeout=0.5).start()
        assert mute.wait() == 1
        assert time.monotonic() - started < 3
        assert "no NetStream.Publish.Start within 0.5 s" in mute.error, mute.describe()

        slow = DirtyPublisher(f"rtmp://127.0.0.1:{port}/live/x", stream, connect_timeout=5).start()
        with pytest.raises(PeerTimeout, match="still publishing"):
            slow.wait(timeout=0.2)
        assert not slow.running and slow.returncode == 1


# -- the validator never trips over garbage ----------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([AUDIO, VIDEO, 18]), st.integers(0, 2**32 - 1), st.binary(max_size=40)),
        max_size=40,
    ),
    st.sampled_from(sorted(VALIDATION_PROFILES)),
)
def test_validator_survives_any_tags(tags, profile):
    report = validate(tags, profile, decode=False)
    assert report.ok == (not report.violations)
    report.summary()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_validator_decodes_damaged_frames(dirty_stream_factory, data):
    """Flipped bytes in real frames: decode errors are reported, never raised."""
    messages = list(dirty_stream_factory(seconds=1.0).messages)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(messages) - 1))
        m = messages[i]
        if len(m.payload) < 8:
            continue
        at = data.draw(st.integers(5, len(m.payload) - 1))
        damaged = m.payload[:at] + bytes([m.payload[at] ^ data.draw(st.integers(1, 255))]) + m.payload[at + 1:]
        messages[i] = StreamMessage(m.type_id, m.timestamp, damaged)
    report = validate(messages, "generic")
    assert report.decode_errors == len(report.of("decode"))
