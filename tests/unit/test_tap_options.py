"""The daemon's options: HLS and encoder settings, and the TOML config file."""

from __future__ import annotations

import pytest
from twisted.python import usage

from rtmprelay.tap import Options


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_the_default_is_the_old_relays_transcode():
    settings = parse()["hls-settings"]
    # the old relay's encode, 2 s segments and a list of 5; in fMP4 with LL-HLS parts (MediaMTX's default)
    assert (settings.mode, settings.container, settings.segment_s, settings.window) == ("transcode", "fmp4", 2.0, 5)
    t = settings.transcode
    assert (t.fps, t.gop, t.preset, t.tune, t.profile, t.level) == (30, 60, "veryfast", "zerolatency", "baseline", "3.1")
    assert (t.video_bitrate, t.maxrate, t.bufsize, t.pix_fmt) == (2_000_000, 2_500_000, 4_000_000, "yuv420p")
    assert (t.audio_rate, t.audio_channels, t.audio_bitrate) == (48_000, 2, 128_000)
    assert settings.cleanup_after_s == 60.0


def test_encoder_and_hls_options():
    options = parse(
        "--hls-mode", "copy", "--hls-segment-type", "fmp4", "--video-bitrate", "3M", "--video-size", "1280x720",
        "--gop", "48", "--fps", "24", "--x264-tune", "none", "--hls-cleanup", "never", "--audio-channels", "1",
    )  # fmt: skip
    settings = options["hls-settings"]
    assert (settings.mode, settings.container, settings.cleanup_after_s) == ("copy", "fmp4", None)
    t = settings.transcode
    assert (t.video_bitrate, t.width, t.height, t.gop, t.fps, t.tune, t.audio_channels) == (
        3_000_000, 1280, 720, 48, 24, "", 1
    )  # fmt: skip
    assert "tune" not in t.x264_options()


def test_ll_hls_parts_come_with_fmp4_and_hls_part_0_turns_them_off():
    assert parse()["hls-settings"].low_latency  # the default: fMP4 with LL-HLS parts, as MediaMTX
    assert not parse("--hls-segment-type", "mpegts")["hls-settings"].low_latency  # MPEG-TS: whole segments
    fmp4 = parse("--hls-segment-type", "fmp4")["hls-settings"]
    assert fmp4.low_latency and fmp4.segment_settings().part_target_s == 0.2
    assert parse("--hls-segment-type", "fmp4", "--hls-part", "0.333")["hls-settings"].segment_settings().part_target_s == 0.333
    assert not parse("--hls-segment-type", "fmp4", "--hls-part", "0")["hls-settings"].low_latency


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hls-segment-type", "fmp4", "--hls-part", "3"], "longer than the segment target"),
        (["--hls-part", "-1"], "0 or more"),
        (["--hls-segment-type", "mpegts", "--hls-part", "0.5"], "need --hls-segment-type fmp4"),
        (["--hls-mode", "remux"], "choose one of transcode, copy"),
        (["--hls-segment-type", "webm"], "choose one of mpegts, fmp4"),
        (["--video-size", "1280"], "WIDTHxHEIGHT"),
        (["--video-size", "1281x720"], "even"),
        (["--hls-cleanup", "soon"], "seconds or 'never'"),
        (["--video-bitrate", "lots"], "not a bit rate"),
        (["--audio-channels", "6"], "channels"),
    ],
)
def test_bad_hls_options_are_usage_errors(args, message):
    with pytest.raises(usage.UsageError, match=message):
        parse(*args)


def test_a_config_file_gives_defaults_and_the_command_line_wins(tmp_path):
    config = tmp_path / "rtmprelay.toml"
    config.write_text(
        'rtmp = ["tcp:1935", "tcp:1936"]\n'
        'hls = "/srv/hls"\n'
        'hls-mode = "copy"\n'
        'hls-window = 7\n'
        'video-bitrate = "3M"\n'
        "no-clean = true\n"
    )
    options = parse("--config", str(config), "--hls-window", "4")
    assert options["rtmp"] == ["tcp:1935", "tcp:1936"]
    assert options["hls"] == "/srv/hls"
    assert options["hls-settings"].mode == "copy"
    assert options["hls-settings"].window == 4  # the command line wins
    assert options["hls-settings"].transcode.video_bitrate == 3_000_000
    assert options["cleaning"] is None
    # --rtmp on the command line replaces the file's list rather than adding to it
    assert parse(f"--config={config}", "--rtmp", "tcp:2000")["rtmp"] == ["tcp:2000"]


@pytest.mark.parametrize(
    "text, message",
    [
        ('hls-mod = "copy"\n', "unknown option 'hls-mod'"),
        ('no-clean = "yes"\n', "flag: true or false"),
        ("hls = [\n", "config file"),
        ('hls = { dir = "x" }\n', "a string or a number"),
    ],
)
def test_a_bad_config_file_is_a_usage_error(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(usage.UsageError, match=message):
        parse("--config", str(config))


def test_a_missing_config_file_is_a_usage_error(tmp_path):
    with pytest.raises(usage.UsageError, match="cannot read config file"):
        parse("--config", str(tmp_path / "nope.toml"))


def test_cloud_webhooks_without_the_lookup_for_on_premise_hls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # tcp:1935 is exposed: makeService makes the auth secret beside ./hls
    from rtmprelay.relay.forward import Forwarding
    from rtmprelay.tap import makeService

    looked_up = parse("--cloud", "http://cloud.example", "--public-url", "http://relay.example")
    assert looked_up.forwarding and looked_up["hls"] is None
    assert looked_up["cleaning"].min_keyframe_interval_s == 2.0  # cleaned for Cloudflare
    announce_only = parse("--cloud", "http://cloud.example", "--public-url", "http://relay.example", "--no-cloud-lookup")
    assert not announce_only.forwarding and announce_only["hls"] == "hls"
    service = makeService(announce_only)
    listeners = [type(listener).__name__ for listener in service.registry._listeners]
    assert "Forwarding" not in listeners and {"HlsOutput", "CloudAnnouncer"} <= set(listeners)
    assert all(not isinstance(listener, Forwarding) for listener in service.registry._listeners)


def test_limit_options_reach_the_server_and_web_configs():
    options = parse(
        "--max-message-size", "1000000", "--max-chunk-size", "65536", "--max-amf-values", "100",
        "--command-timeout", "3", "--idle-publisher-timeout", "4", "--ping-interval", "5", "--ping-timeout", "6",
        "--max-connections", "7", "--max-connections-per-address", "0", "--max-publishes-per-address", "2",
        "--http-request-timeout", "8", "--http-max-body", "10",
    )
    config, http = options["server-config"], options["http-limits"]
    assert config.connection.max_message_size == 1_000_000
    assert config.connection.max_peer_chunk_size == 65536
    assert config.connection.amf.max_values == 100
    limits = config.limits
    assert (limits.command_timeout, limits.idle_publisher_timeout, limits.ping_interval, limits.ping_timeout) == (3, 4, 5, 6)
    assert (limits.max_connections, limits.max_connections_per_address, limits.max_publishes_per_address) == (7, 0, 2)
    assert (http.request_timeout, http.max_body_bytes) == (8, 10)


def test_a_message_size_over_the_length_field_is_a_usage_error():
    with pytest.raises(usage.UsageError, match="24-bit"):
        parse("--max-message-size", str(16 * 1024 * 1024))


def test_limit_defaults_are_the_documented_ones():
    from rtmprelay.relay.limits import ServerLimits
    from rtmprelay.rtmp.connection import ConnectionConfig
    from rtmprelay.web import HttpLimits

    options = parse()
    assert options["server-config"].limits == ServerLimits()
    assert options["server-config"].connection == ConnectionConfig()
    assert options["http-limits"] == HttpLimits()


def test_bridging_is_on_for_forwarded_streams_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from rtmprelay.tap import makeService

    forwarded = makeService(parse("--rtmp", "tcp:0:interface=127.0.0.1", "--forward", "rtmp://up/live/{path}"))
    assert forwarded.registry.bridge_grace_s == 10.0
    shorter = makeService(parse("--rtmp", "tcp:0:interface=127.0.0.1", "--forward", "rtmp://up/live/{path}", "--bridge-grace", "3"))
    assert shorter.registry.bridge_grace_s == 3.0
    local = makeService(parse("--rtmp", "tcp:0:interface=127.0.0.1", "--bridge-grace", "3"))
    assert local.registry.bridge_grace_s == 0.0  # nothing upstream to keep going: players and HLS see the end
    assert forwarded.registry.bridge_unpublished
    ending = makeService(parse("--rtmp", "tcp:0:interface=127.0.0.1", "--forward", "rtmp://up/live/{path}", "--end-on-unpublish"))
    assert not ending.registry.bridge_unpublished
    with pytest.raises(usage.UsageError):
        parse("--forward", "rtmp://up/live/{path}", "--bridge-grace", "-1")


def test_the_gop_cache_can_be_turned_off_for_a_forwarding_only_relay():
    """0 keeps no frames for late players (nginx-rtmp's way); a negative bound is a usage error."""
    assert parse("--gop-cache-bytes", "0")["gop-cache-bytes"] == 0
    with pytest.raises(usage.UsageError):
        parse("--gop-cache-bytes", "-1")
