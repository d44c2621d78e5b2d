"""The real-peer fixtures checked against nginx-rtmp alone, with no relay.

If these fail, relay tests built on the same fixtures cannot be trusted.
Streams are 2-3 s long; the file runs in well under a minute.
"""

from __future__ import annotations

import time

import pytest

from rtmprelay.testing import (
    FlvTag,
    PeerProcess,
    PeerTimeout,
    PeerUnavailable,
    assert_payload_subsequence,
    decode_check,
    ffprobe_stream,
    find_tool,
    media_payloads,
    read_flv_tags,
    sequence_headers,
)

REFERENCE_VIDEO_FRAMES = 75  # make_test_flv: 3 s at 25 fps
GOP = 25


def codecs(streams):
    return {(s.codec_type, s.codec_name) for s in streams}


# -- nginx + ffmpeg: what is recorded is what was published ------------------


@pytest.mark.peers
def test_nginx_records_ffmpeg_copy_byte_for_byte(nginx_rtmp, reference_flv, ffmpeg_publisher_factory):
    assert nginx_rtmp.startup_seconds < 5
    publisher = ffmpeg_publisher_factory(
        nginx_rtmp.url("copy"), source_file=reference_flv, seconds=None
    )
    assert publisher.wait() == 0, publisher.describe()

    recording = nginx_rtmp.wait_recording("copy")
    assert recording in nginx_rtmp.recordings
    runs = assert_payload_subsequence(reference_flv, recording)
    # nginx's `record all` keeps everything: no GOP dropped at the start.
    assert runs["video"].start == 0 and runs["video"].dropped_tail == 0
    assert runs["audio"].start == 0 and runs["audio"].dropped_tail == 0
    assert runs["video"].count == REFERENCE_VIDEO_FRAMES

    report = decode_check(recording)
    assert report.clean, report
    assert report.video_frames == REFERENCE_VIDEO_FRAMES
    assert report.audio_frames > 100


@pytest.mark.peers
def test_stream_names_with_slashes(
    nginx_rtmp_factory, reference_flv, ffmpeg_publisher_factory, gst_publisher_factory
):
    server = nginx_rtmp_factory(applications=("live", "live/user1"))
    fast = dict(source_file=reference_flv, seconds=None, realtime=False)

    # app "live" + stream "user1/stream1": the recording escapes the slash.
    forced = ffmpeg_publisher_factory(server.url("user1/stream1"), app="live", **fast)
    # The client's own split: app "live/user1" + stream "stream2".
    natural = ffmpeg_publisher_factory(server.url("user1/stream2"), **fast)
    # No application "live/user9": nginx refuses the connect.
    refused = ffmpeg_publisher_factory(server.url("user9/stream3"), **fast)
    # app= through librtmp's URL options and rtmp2sink's properties.
    gst = [
        gst_publisher_factory(server.url(f"user1/{sink}"), element=sink, app="live",
                              seconds=1, realtime=False)
        for sink in ("rtmpsink", "rtmp2sink")
    ]
    for publisher in (forced, natural, *gst):
        assert publisher.wait() == 0, publisher.describe()
    assert refused.wait() != 0

    first = server.wait_recording("user1/stream1", app="live")
    second = server.wait_recording("stream2", app="live/user1")
    assert first.name == "user1%2Fstream1.flv"
    assert second.relative_to(server.records_dir).as_posix() == "live/user1/stream2.flv"
    assert "application not found: 'live/user9'" in server.error_log_text()
    for recording in (first, second):
        assert_payload_subsequence(reference_flv, recording)
    gst_recordings = [server.wait_recording(f"user1/{sink}") for sink in ("rtmpsink", "rtmp2sink")]
    assert [r.name for r in gst_recordings] == ["user1%2Frtmpsink.flv", "user1%2Frtmp2sink.flv"]
    assert sorted(server.recordings) == sorted([first, second, *gst_recordings])


# -- GStreamer publishers, seen by ffprobe and rtmpdump -----------------------


@pytest.mark.peers
@pytest.mark.parametrize("element", ["rtmpsink", "rtmp2sink"])
def test_gst_publisher_seen_by_ffprobe_and_rtmpdump(
    element, nginx_rtmp, gst_publisher_factory, rtmpdump_player_factory
):
    url = nginx_rtmp.url(f"gst-{element}")
    player = rtmpdump_player_factory(url, seconds=2.5)  # waits for the publisher
    publisher = gst_publisher_factory(url, element=element, seconds=3)

    streams = ffprobe_stream(url, timeout=30)
    assert codecs(streams) >= {("video", "h264"), ("audio", "aac")}, streams
    video = next(s for s in streams if s.codec_type == "video")
    assert (video.width, video.height) == (320, 240)

    assert publisher.wait() == 0, publisher.describe()
    player.wait()
    player.check()
    played = read_flv_tags(player.out)
    assert media_payloads(played, "video") and media_payloads(played, "audio")
    assert decode_check(player.out).clean

    recording = nginx_rtmp.wait_recording(f"gst-{element}")
    report = decode_check(recording)
    assert report.clean, report
    assert report.video_frames >= 50 and report.audio_frames >= 80
    # What rtmpdump played is a contiguous run of what nginx recorded.
    assert_payload_subsequence(recording, player.out)


# -- players agree with the recording ----------------------------------------


@pytest.mark.peers
def test_players_receive_contiguous_runs(
    nginx_rtmp, ffmpeg_publisher_factory, gst_player_factory, ffmpeg_recorder_factory
):
    url = nginx_rtmp.url("players")
    # Players first: nginx holds them until the stream is published.
    gst = gst_player_factory(url)  # rtmp2src ends on unpublish
    recorder = ffmpeg_recorder_factory(url, idle_timeout=2)  # ends ~4 s after the data
    nginx_rtmp.wait_players("players", count=2)
    publisher = ffmpeg_publisher_factory(url, seconds=2)
    assert publisher.wait() == 0, publisher.describe()
    recording = nginx_rtmp.wait_recording("players")

    assert gst.wait() == 0, gst.describe()
    assert recorder.wait() == 0, recorder.describe()
    for output in (gst.out, recorder.out):
        runs = assert_payload_subsequence(recording, output, min_count=30)
        # Players joined before the publisher: they start at the first frame.
        assert runs["video"].start == 0, (output, runs)
        assert decode_check(output).clean


# -- nginx's own push: the benchmark anchor -----------------------------------


@pytest.mark.peers
def test_nginx_push_starts_at_a_keyframe(nginx_rtmp_factory, reference_flv, ffmpeg_publisher_factory):
    downstream = nginx_rtmp_factory()
    upstream = nginx_rtmp_factory(push=[f"rtmp://127.0.0.1:{downstream.port}/live"], record=False)
    publisher = ffmpeg_publisher_factory(upstream.url("pushed"), source_file=reference_flv, seconds=None)
    assert publisher.wait() == 0, publisher.describe()

    pushed = downstream.wait_recording("pushed")
    runs = assert_payload_subsequence(reference_flv, pushed)
    assert runs["video"].start % GOP == 0, runs  # joins at a keyframe
    assert read_flv_tags(pushed) and upstream.recordings == []


# -- the helpers themselves, no peers ----------------------------------------


def _flv(tags):
    out = bytearray(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00")
    for tag_type, timestamp, payload in tags:
        out += bytes([tag_type]) + len(payload).to_bytes(3, "big")
        out += (timestamp & 0xFFFFFF).to_bytes(3, "big") + bytes([timestamp >> 24]) + b"\0\0\0"
        out += payload + (11 + len(payload)).to_bytes(4, "big")
    return bytes(out)


AVC_HEADER = FlvTag(9, 0, b"\x17\x00\x00\x00\x00\x01\x64")
AAC_HEADER = FlvTag(8, 0, b"\xaf\x00\x12\x10")


def _video(n, key=False):
    return FlvTag(9, 40 * n, bytes([0x17 if key else 0x27, 1, 0, 0, 0, n]))


def _audio(n):
    return FlvTag(8, 23 * n, bytes([0xAF, 1, n, n]))


def test_read_flv_tags_tolerates_a_truncated_last_tag():
    data = _flv([AVC_HEADER, _video(0, key=True), _audio(0), (18, 16777216 + 5, b"\x02meta")])
    tags = read_flv_tags(data)
    assert [t.tag_type for t in tags] == [9, 9, 8, 18]
    assert tags[3].timestamp == 16777221 and tags[0].is_header and tags[1].is_keyframe
    assert len(read_flv_tags(data[:-10])) == 3
    with pytest.raises(Exception, match="truncated"):
        read_flv_tags(data[:-10], strict=True)


def test_payload_subsequence_finds_the_run_and_names_the_mismatch():
    published = [AVC_HEADER, AAC_HEADER] + [t for n in range(10) for t in (_video(n, n % 5 == 0), _audio(n))]
    recorded = [AAC_HEADER, AVC_HEADER, AAC_HEADER] + [t for n in range(5, 9) for t in (_video(n, n == 5), _audio(n))]
    runs = assert_payload_subsequence(published, recorded)
    assert runs["video"].start == 5 and runs["video"].count == 4 and runs["video"].dropped_tail == 1
    assert sequence_headers(recorded, "audio") == [AAC_HEADER.payload]

    lost = [t for t in recorded if t.payload != _video(7).payload]
    with pytest.raises(AssertionError, match=r"video: .* for 2 of 3; first mismatch: recorded #2"):
        assert_payload_subsequence(published, lost)
    alien = [AVC_HEADER, FlvTag(9, 0, b"\x27\x01\x00\x00\x00\xff")]
    with pytest.raises(AssertionError, match="appears nowhere"):
        assert_payload_subsequence(published, alien, kinds=["video"])


def test_peer_timeout_kills_the_process_group():
    peer = PeerProcess(["sh", "-c", "sleep 60 & sleep 60"], timeout=0.3).start()
    started = time.monotonic()
    with pytest.raises(PeerTimeout, match="still running"):
        peer.wait()
    assert time.monotonic() - started < 5
    assert not peer.running


def test_missing_tool_is_unavailable():
    with pytest.raises(PeerUnavailable, match="README test command"):
        find_tool("no-such-rtmp-tool")
