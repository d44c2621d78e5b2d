"""twistd plugin options and service, and the ``rtmprelay`` console script."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import attrs

from twisted.application import service, strports
from twisted.logger import Logger
from twisted.python import usage

from rtmprelay.auth.secret import SECRET_ENV, make_secret_file, readable_by_others
from rtmprelay.auth.settings import AuthSettings, auth_settings
from rtmprelay.auth.signing import DEFAULT_CLOCK_SKEW, PLAY, PUBLISH
from rtmprelay.cloud.announce import CloudAnnouncer, default_public_url
from rtmprelay.cloud.hook import DEFAULT_HOOK_TIMEOUT, HttpAdmissionHook
from rtmprelay.cloud.client import CloudClient, CloudConfig
from rtmprelay.cloud.routing import CloudLookup
from rtmprelay.errors import ConfigError
from rtmprelay.hls.output import HLS_MODES, HlsOutput, HlsSettings
from rtmprelay.hls.segmenter import CONTAINERS
from rtmprelay.hls.encoding import TranscodeSettings
from rtmprelay.hls.worker import DEFAULT_QUEUE_FRAMES
from rtmprelay.media.cleaner import CleanerConfig
from rtmprelay.media.profiles import PROFILES, get_profile
from rtmprelay.relay.client import DEFAULT_CONNECT_TIMEOUT, DEFAULT_UPSTREAM_QUEUE_BYTES, UpstreamConfig, load_trust
from rtmprelay.relay.forward import Forwarding, ForwardTemplate, ForwardTemplates
from rtmprelay.relay.admission import AdmissionChain, PathHookCheck, SignedUrlCheck
from rtmprelay.relay.lag import ReactorLagMonitor
from rtmprelay.relay.limits import ServerLimits
from rtmprelay.relay.registry import DEFAULT_BRIDGE_GRACE_S, DEFAULT_GOP_CACHE_BYTES, StreamRegistry
from rtmprelay.relay.server import DEFAULT_HANDSHAKE_TIMEOUT, RTMPServerFactory, ServerConfig
from rtmprelay.relay.shutdown import GracefulStop
from rtmprelay.rtmp.chunks import (
    DEFAULT_MAX_CHUNK_STREAMS,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PEER_CHUNK_SIZE,
    DEFAULT_MIN_PEER_CHUNK_SIZE,
)
from rtmprelay.rtmp.connection import ConnectionConfig
from rtmprelay.rtmp.messages import DEFAULT_AMF_LIMITS, AmfLimits
from rtmprelay.web import HttpLimits, make_site

_SERVER_LIMITS = ServerLimits()
_HTTP_LIMITS = HttpLimits()
DEFAULT_RTMP_ENDPOINT = "tcp:1935"
DEFAULT_HTTP_ENDPOINT = "tcp:8888"
DEFAULT_HLS_DIR = "hls"
DEFAULT_HLS_PART_S = 0.2
#: Where --cloud-secret is read from when not given, so that it stays off the command line.
CLOUD_SECRET_ENV = "RTMPRELAY_CLOUD_SECRET"


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(f"{value} is not a positive whole number")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"{value} is negative")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(f"{value} is not a positive number")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise ValueError(f"{value} is not a number of seconds, 0 or more")
    return number


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "An RTMP relay. It accepts publishes on the RTMP endpoints, cleans them, serves "
        "them to players (rtmp://HOST/APP/PATH), writes HLS served over HTTP "
        "(http://HOST:8888/hls/USER/STREAM/index.m3u8), and with --forward publishes "
        "every stream to an upstream rtmp:// or rtmps:// URL made from a template. Endpoints are "
        "Twisted endpoint strings: tcp:1935, tcp:1935:interface=127.0.0.1, "
        "ssl:1936:privateKey=key.pem:certKey=cert.pem (RTMPS ingest)."
    )
    optParameters = [
        ["cloud", None, None,
         "Base URL of the cloud routes (BASE/api/rtmp-relay/...). Every publish waits for "
         "GET BASE/api/rtmp-relay/cf-url/USER/STREAM and is forwarded to the URL it names, or refused "
         "(NetStream.Publish.Rejected) when the lookup fails; hls-ready and stream-ended are posted there. "
         "With --forward too, the cloud decides and the template is used only while the cloud is unreachable."],
        ["cloud-secret", None, None,
         f"Shared secret signing the webhooks (X-Timestamp, X-Signature: sha256=HMAC). Default: the "
         f"{CLOUD_SECRET_ENV} environment variable, which keeps it off the command line."],
        ["cloud-timeout", None, 5.0, "Seconds one cloud request may take.", _positive_float],
        ["cloud-retries", None, 3,
         "Retries of a cloud request that timed out, failed to connect or got a 5xx, after 0.5, 1, 2, 4, 8 s "
         "(at most 8). A publish waits that long for its lookup at most.", _non_negative_int],
        ["public-url", None, None,
         "Base of the URLs the hls-ready webhook announces (PUBLIC-URL/hls/USER/STREAM/index.m3u8). "
         "Default: from --http: http (https for ssl:) on its interface, or, on all interfaces, "
         "this host's address on the route to the cloud."],
        ["upstream-ca", None, None, "PEM file of the CA that signs upstream certificates (default: the system's trust store)."],
        ["upstream-timeout", None, DEFAULT_CONNECT_TIMEOUT,
         "Seconds an upstream has to accept a connection, to accept the publish, and to take data from a "
         "full socket; past it the connection is made again.", _positive_float],
        ["upstream-queue-bytes", None, DEFAULT_UPSTREAM_QUEUE_BYTES,
         "Bound on media held for one destination while it (re)connects or is slow; past it whole GOPs are "
         "dropped and the destination resumes at a keyframe.", _positive_int],
        ["bridge-grace", None, DEFAULT_BRIDGE_GRACE_S,
         "Seconds a forwarded stream outlives its publisher (a dropped connection or an unpublish): "
         "the upstream publish stays open, filled at the output rate with the last picture repeated and "
         "silence, and a publisher back on the path within it is joined on at its first keyframe, the "
         "timeline going on. An unpublish is bridged too (see --end-on-unpublish). 0: no bridging.",
         _non_negative_float],
        # -- limits: what one peer may cost (each hit is logged with its reason and counted)
        ["max-message-size", None, DEFAULT_MAX_MESSAGE_SIZE,
         "Largest RTMP message accepted, in bytes (at most 16777215, the 24-bit length field).", _positive_int],
        ["max-chunk-size", None, DEFAULT_MAX_PEER_CHUNK_SIZE, "Largest chunk size a peer may set, in bytes.", _positive_int],
        ["min-chunk-size", None, DEFAULT_MIN_PEER_CHUNK_SIZE, "Smallest chunk size a peer may set, in bytes.", _positive_int],
        ["max-chunk-streams", None, DEFAULT_MAX_CHUNK_STREAMS, "Chunk stream ids one connection may use.", _positive_int],
        ["max-amf-bytes", None, DEFAULT_AMF_LIMITS.max_bytes,
         "Largest command or data message (AMF), in bytes; a bigger data message is dropped, a bigger command "
         "closes the connection.", _positive_int],
        ["max-amf-values", None, DEFAULT_AMF_LIMITS.max_values, "Values one AMF message may hold.", _positive_int],
        ["max-amf-depth", None, DEFAULT_AMF_LIMITS.max_depth, "Nesting one AMF message may have.", _positive_int],
        ["handshake-timeout", None, DEFAULT_HANDSHAKE_TIMEOUT, "Seconds a client has to finish the handshake.", _positive_float],
        ["command-timeout", None, _SERVER_LIMITS.command_timeout,
         "Seconds a connection may go without publishing or playing (after the handshake, or after its "
         "last stream ended) before it is closed.", _positive_float],
        ["idle-publisher-timeout", None, _SERVER_LIMITS.idle_publisher_timeout,
         "Seconds a publisher may send no audio or video before it is closed and its path freed.", _positive_float],
        ["ping-interval", None, _SERVER_LIMITS.ping_interval, "Seconds of silence from a peer before it is pinged.", _positive_float],
        ["ping-timeout", None, _SERVER_LIMITS.ping_timeout,
         "Seconds a pinged peer has to say anything before it is closed.", _positive_float],
        ["max-connections", None, _SERVER_LIMITS.max_connections, "RTMP connections open at once (0: no limit).", _non_negative_int],
        ["max-connections-per-address", None, _SERVER_LIMITS.max_connections_per_address,
         "RTMP connections open at once from one address (0: no limit).", _non_negative_int],
        ["max-publishes-per-address", None, _SERVER_LIMITS.max_publishes_per_address,
         "Streams published at once from one address (0: no limit).", _non_negative_int],
        ["max-messages-per-second", None, _SERVER_LIMITS.max_messages_per_second,
         "RTMP messages one connection may send a second on average (0: no limit); a flood beyond "
         "--message-burst closes it.", _non_negative_int],
        ["message-burst", None, _SERVER_LIMITS.message_burst, "RTMP messages one connection may send at once.", _positive_int],
        ["http-request-timeout", None, _HTTP_LIMITS.request_timeout,
         "Seconds an HTTP request (line, headers, body) may take to arrive.", _positive_float],
        ["http-idle-timeout", None, _HTTP_LIMITS.idle_timeout, "Seconds an idle HTTP connection is kept.", _positive_float],
        ["http-max-body", None, _HTTP_LIMITS.max_body_bytes, "Largest HTTP request body, in bytes.", _non_negative_int],
        ["http-max-connections", None, _HTTP_LIMITS.max_connections, "HTTP connections open at once.", _positive_int],
        ["gop-cache-bytes", None, DEFAULT_GOP_CACHE_BYTES,
         "Bound on the frames kept since the last keyframe for players that join late "
         "(0: none kept; a late player waits for the next keyframe, as with nginx-rtmp).", _non_negative_int],
        ["profile", None, None,
         f"Destination profile the streams are cleaned for: {', '.join(sorted(PROFILES))}. "
         "Default: cloudflare when forwarding, generic otherwise."],
        ["fps", None, None, "Output frame rate (overrides the profile's); 'source' keeps the rate the stream declares."],
        ["min-keyframe-interval", None, None,
         "Seconds: keyframes closer than this are relabelled as inter frames (overrides the profile's).", float],
        ["max-keyframe-interval", None, None, "Seconds: longer GOPs are reported (overrides the profile's).", float],
        ["hls", None, None,
         f"Write HLS for every stream under this folder (DIR/USER/STREAM/index.m3u8). "
         f"Default: ./{DEFAULT_HLS_DIR} when not forwarding, off when forwarding."],
        ["hls-mode", None, "transcode",
         f"{' or '.join(HLS_MODES)}: re-encode with the encoder settings below (the old relay's FFmpeg "
         "command), or cut the cleaned stream at its keyframes without re-encoding."],
        ["hls-segment-type", None, "fmp4",
         f"{' or '.join(CONTAINERS)}: MPEG-TS segments (plain HLS only), or fMP4 (CMAF) segments with "
         "Low-Latency HLS parts and a DASH manifest (manifest.mpd) beside the playlist (the default, as "
         "MediaMTX's)."],
        ["hls-segment", None, 2.0, "Target HLS segment length in seconds.", _positive_float],
        ["hls-part", None, DEFAULT_HLS_PART_S,
         "With --hls-segment-type fmp4: Low-Latency HLS part target in seconds (parts, preload hints, "
         "blocking playlist reloads); 0 writes whole segments only.", _non_negative_float],
        ["hls-window", None, 5, "Segments listed in each playlist; older ones are deleted.", _positive_int],
        ["hls-cleanup", None, "60",
         "Seconds after unpublish before a stream's HLS files are removed; 'never' keeps them. "
         "A publisher back within that time continues the playlist."],
        ["hls-queue-frames", None, DEFAULT_QUEUE_FRAMES,
         "Bound on the video frames queued for one stream's encoder; past it, frames are dropped (counted) "
         "until the next keyframe.", _positive_int],
        ["video-bitrate", None, "2M", "Transcode: H.264 target bit rate (e.g. 2000000, 2500k, 2M)."],
        ["video-maxrate", None, "2500k", "Transcode: VBV maximum rate."],
        ["video-bufsize", None, "4M", "Transcode: VBV buffer size."],
        ["video-size", None, None, "Transcode: output WIDTHxHEIGHT (default: the source's)."],
        ["gop", None, 60, "Transcode: frames from one keyframe to the next (and no others).", _positive_int],
        ["x264-preset", None, "veryfast", "Transcode: x264 preset."],
        ["x264-tune", None, "zerolatency", "Transcode: x264 tune ('none' for no tune)."],
        ["x264-threads", None, 0, "Transcode: x264 threads per stream; 0 lets x264 choose.", int],
        ["h264-profile", None, "baseline", "Transcode: H.264 profile."],
        ["h264-level", None, "3.1", "Transcode: H.264 level."],
        ["audio-bitrate", None, "128k", "Transcode: AAC bit rate."],
        ["audio-rate", None, 48000, "Transcode: AAC sample rate.", _positive_int],
        ["audio-channels", None, 2, "Transcode: AAC channels (1 or 2).", _positive_int],
        ["http", None, DEFAULT_HTTP_ENDPOINT, "HTTP endpoint serving /hls/, /health and /api/streams."],
        ["jump-threshold", None, 1000.0, "Milliseconds: a larger unexplained timestamp step is re-based.", _positive_float],
        ["interleave-delay", None, 500.0, "Milliseconds the cleaner may hold media to interleave audio and video.", _positive_float],
        # -- authorization (rtmprelay.auth.settings has the rule) --
        ["auth-secret-file", None, None,
         f"File holding the secret of signed URLs (?exp=UNIX&sig=HMAC-SHA256(secret, path + exp); "
         f"`rtmprelay sign` makes them). Default: ${SECRET_ENV}; else, where publishing must be authorized "
         "(an RTMP endpoint beyond loopback, no --on-publish, no --no-auth), rtmprelay-auth.secret beside "
         "the HLS folder, made on first start."],
        ["auth-clock-skew", None, DEFAULT_CLOCK_SKEW,
         "Seconds a signed URL is still admitted after its exp, for clocks that disagree.", _non_negative_float],
        ["on-publish", None, None,
         "HTTP admission hook, as nginx-rtmp's on_publish: every publish waits for POST URL (form: call, addr, "
         "clientid, app, flashver, swfurl, tcurl, pageurl, name, type, path and the client's query parameters); "
         "2xx admits, anything else (a redirect too, a timeout, a failed connection) refuses."],
        ["on-play", None, None, "HTTP admission hook for every play, as --on-publish (call=play)."],
        ["hook-timeout", None, DEFAULT_HOOK_TIMEOUT,
         "Seconds an admission hook has to answer; no answer refuses.", _positive_float],
    ]
    optFlags = [
        ["no-hls", None, "Write no HLS, even when not forwarding."],
        ["no-http", None, "Serve no HTTP (no HLS files, health or API)."],
        ["no-clean", None, "Pass streams through as published: no timestamp, frame-rate or keyframe repair."],
        ["end-on-unpublish", None,
         "A forwarded stream whose publisher unpublishes (deleteStream, FCUnpublish) ends at once; by default "
         "it is bridged for --bridge-grace as a dropped connection is, because Android streaming SDKs "
         "unpublish before they reconnect."],
        ["wallclock-timestamps", None, "Stamp media by arrival time (like ffmpeg's -use_wallclock_as_timestamps)."],
        ["no-cloud-lookup", None,
         "With --cloud: only post the webhooks (hls-ready, stream-ended); publishes are not looked up, "
         "so nothing is forwarded unless --forward is given, and HLS is written by default (on-premise HLS)."],
        ["no-auth", None,
         "Admit publishes without signed URLs even where an RTMP endpoint listens beyond loopback "
         "(an --on-publish hook still decides)."],
        ["auth-play", None, "Require signed URLs to play too (`rtmprelay sign --play`)."],
    ]

    #: Options given more than once; on the command line they replace the config file's list.
    REPEATABLE = ("rtmp", "forward")

    def __init__(self) -> None:
        super().__init__()
        self["rtmp"] = []
        self["forward"] = []

    def parseOptions(self, options=None) -> None:
        """``--config FILE`` (TOML, keys are the long option names) gives defaults; the command line wins."""
        args = list(sys.argv[1:] if options is None else options)
        path, rest = _take_config_path(args)
        prefix = _config_file_args(path, self) if path is not None else []
        for name in self.REPEATABLE:
            option = f"--{name}"
            if any(arg == option or arg.startswith(option + "=") for arg in rest):
                # It repeats; given on the command line it replaces the file's list, as any option does.
                prefix = [arg for i, arg in enumerate(prefix) if arg != option and (i == 0 or prefix[i - 1] != option)]
        super().parseOptions(prefix + rest)

    def opt_rtmp(self, endpoint: str) -> None:
        """RTMP listen endpoint (repeatable). Default: tcp:1935."""
        self["rtmp"].append(endpoint)

    def opt_forward(self, spec: str) -> None:
        """Forward every stream to this URL template (repeatable: one upstream publish per --forward,
        each with its own connection, queue, reconnection and state). Placeholders {app}, {path}
        (stream path below the app), {userId}, {streamId}; the URL's first path element is the RTMP
        application, the rest the stream name. Options may follow the URL: app=APP (a longer
        application name), profile=NAME (this destination's keyframe spacing). E.g.
        'rtmps://live.cloudflare.com:443/live/{streamId}', 'rtmp://nginx:1935/live/{path}'."""
        self["forward"].append(spec)

    opt_f = opt_forward

    def postOptions(self) -> None:
        if not self["rtmp"]:
            self["rtmp"] = [DEFAULT_RTMP_ENDPOINT]
        if self["no-hls"]:
            self["hls"] = None
        elif self["hls"] is None and not self.forwarding:
            self["hls"] = DEFAULT_HLS_DIR
        try:
            self["forward"] = [ForwardTemplate.parse(spec) for spec in self["forward"]]
            if self["upstream-ca"]:
                load_trust(self["upstream-ca"])
            self._cloud_options()
            self["cleaning"] = None if self["no-clean"] else self._cleaning()
            self["hls-settings"] = self._hls_settings()
            self["server-config"], self["http-limits"] = self._limits()
            self["auth"] = self._auth()
        except ConfigError as error:
            raise usage.UsageError(str(error)) from None

    @property
    def forwarding(self) -> bool:
        """Streams go upstream: by --forward's template or by the cloud's lookup."""
        return bool(self["forward"] or (self["cloud"] and not self["no-cloud-lookup"]))

    def _cloud_options(self) -> None:
        """--cloud as a CloudConfig, the secret from the environment, the public URL made."""
        if self["cloud-secret"] is None:
            self["cloud-secret"] = os.environ.get(CLOUD_SECRET_ENV) or None
        if not self["cloud"]:
            return
        try:
            self["cloud"] = CloudConfig(
                base_url=self["cloud"],
                secret=self["cloud-secret"],
                timeout_s=self["cloud-timeout"],
                retries=self["cloud-retries"],
            )
        except ValueError as error:
            raise ConfigError(f"--cloud: {error}") from None
        public = self["public-url"]
        if public:
            parts = urlsplit(public)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(f"--public-url must be http(s)://host[:port][/path], not {public!r}")
            self["public-url"] = public.rstrip("/")
        else:
            self["public-url"] = default_public_url(self["http"], self["cloud"].base_url)

    def _limits(self) -> tuple[ServerConfig, HttpLimits]:
        try:
            connection = ConnectionConfig(
                max_message_size=self["max-message-size"],
                max_peer_chunk_size=self["max-chunk-size"],
                min_peer_chunk_size=self["min-chunk-size"],
                max_chunk_streams=self["max-chunk-streams"],
                amf=AmfLimits(self["max-amf-bytes"], self["max-amf-values"], self["max-amf-depth"]),
            )
        except ValueError as error:
            raise ConfigError(f"--max-message-size: {error}") from None
        limits = ServerLimits(
            handshake_timeout=self["handshake-timeout"],
            command_timeout=self["command-timeout"],
            idle_publisher_timeout=self["idle-publisher-timeout"],
            ping_interval=self["ping-interval"],
            ping_timeout=self["ping-timeout"],
            max_connections=self["max-connections"],
            max_connections_per_address=self["max-connections-per-address"],
            max_publishes_per_address=self["max-publishes-per-address"],
            max_messages_per_second=self["max-messages-per-second"],
            message_burst=self["message-burst"],
        )
        http = HttpLimits(
            request_timeout=self["http-request-timeout"],
            idle_timeout=self["http-idle-timeout"],
            max_body_bytes=self["http-max-body"],
            max_connections=self["http-max-connections"],
        )
        return ServerConfig(connection=connection, limits=limits), http

    def _auth(self) -> AuthSettings:
        for hook in ("on-publish", "on-play"):
            url = self[hook] or ""
            if url and urlsplit(url).scheme not in ("http", "https"):
                raise ConfigError(f"--{hook} must be an http:// or https:// URL")
        return auth_settings(
            self["rtmp"],
            hls_dir=self["hls"],
            secret_file=self["auth-secret-file"],
            env=os.environ,
            no_auth=bool(self["no-auth"]),
            auth_play=bool(self["auth-play"]),
            publish_hook=bool(self["on-publish"]),
            clock_skew=self["auth-clock-skew"],
        )

    def _cleaning(self) -> CleanerConfig:
        profile = get_profile(self["profile"] or ("cloudflare" if self.forwarding else "generic"))
        fps = self["fps"]
        if fps == "source":
            fps_value = None
        elif fps is None:
            fps_value = profile.fps
        else:
            try:
                fps_value = float(fps)
            except ValueError:
                raise ConfigError(f"--fps takes a number or 'source', not {fps!r}") from None
            if not 1 <= fps_value <= 240:
                raise ConfigError(f"--fps {fps_value:g} is outside 1..240")
        overrides = {
            "min_keyframe_interval_s": self["min-keyframe-interval"],
            "max_keyframe_interval_s": self["max-keyframe-interval"],
            "jump_threshold_ms": self["jump-threshold"],
            "interleave_delay_ms": self["interleave-delay"],
            "wallclock": bool(self["wallclock-timestamps"]),
        }
        config = CleanerConfig.from_profile(profile, **overrides)
        # One cleaner per stream, for the laxest keyframe spacing a destination wants;
        # each forwarder spaces keyframes further for its own destination.
        self["min-keyframe-spacing"] = config.min_keyframe_interval_s
        wanted = [get_profile(t.profile).min_keyframe_interval_s for t in self["forward"] if t.profile is not None]
        if wanted and min(wanted) < config.min_keyframe_interval_s:
            config = attrs.evolve(config, min_keyframe_interval_s=min(wanted))
        return attrs.evolve(config, fps=fps_value)


    def _hls_settings(self) -> HlsSettings:
        cleanup = self["hls-cleanup"]
        if str(cleanup).lower() == "never":
            cleanup_s = None
        else:
            try:
                cleanup_s = float(cleanup)
            except ValueError:
                raise ConfigError(f"--hls-cleanup takes seconds or 'never', not {cleanup!r}") from None
            if cleanup_s < 0:
                raise ConfigError(f"--hls-cleanup {cleanup_s:g} is negative")
        if self["hls-segment-type"] == "mpegts" and self["hls-part"] not in (0, DEFAULT_HLS_PART_S):
            raise ConfigError(f"--hls-part {self['hls-part']:g}: LL-HLS parts need --hls-segment-type fmp4, not mpegts")
        width = height = None
        if self["video-size"]:
            try:
                width, height = (int(side) for side in self["video-size"].lower().split("x"))
            except ValueError:
                raise ConfigError(f"--video-size takes WIDTHxHEIGHT, not {self['video-size']!r}") from None
            if width <= 0 or height <= 0 or width % 2 or height % 2:
                raise ConfigError(f"--video-size {width}x{height}: both sides must be even and positive")
        cleaning = self["cleaning"]
        fps = round(cleaning.fps) if cleaning is not None and cleaning.fps else 30
        transcode = TranscodeSettings(
            fps=fps,
            gop=self["gop"],
            preset=self["x264-preset"],
            tune="" if self["x264-tune"] == "none" else self["x264-tune"],
            profile=self["h264-profile"],
            level=self["h264-level"],
            video_bitrate=self["video-bitrate"],
            maxrate=self["video-maxrate"],
            bufsize=self["video-bufsize"],
            width=width,
            height=height,
            audio_rate=self["audio-rate"],
            audio_channels=self["audio-channels"],
            audio_bitrate=self["audio-bitrate"],
            threads=self["x264-threads"],
        )
        return HlsSettings(
            mode=self["hls-mode"],
            container=self["hls-segment-type"],
            segment_s=self["hls-segment"],
            part_s=self["hls-part"] or None,
            window=self["hls-window"],
            transcode=transcode,
            queue_frames=self["hls-queue-frames"],
            cleanup_after_s=cleanup_s,
        )


def _take_config_path(args: list[str]) -> tuple[str | None, list[str]]:
    """The ``--config`` value and the arguments without it."""
    path, rest, items = None, [], iter(args)
    for arg in items:
        if arg == "--config":
            path = next(items, None)
            if path is None:
                raise usage.UsageError("--config needs a file")
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return path, rest


def _config_file_args(path: str, options: usage.Options) -> list[str]:
    """A TOML config file as command-line arguments (so one parser checks both)."""
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except OSError as error:
        raise usage.UsageError(f"cannot read config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise usage.UsageError(f"config file {path}: {error}") from None
    flags = {flag[0] for flag in options.optFlags}
    parameters = {parameter[0] for parameter in options.optParameters} | set(Options.REPEATABLE)
    args: list[str] = []
    for key, value in table.items():
        if key in flags:
            if not isinstance(value, bool):
                raise usage.UsageError(f"config file {path}: {key} is a flag: true or false, not {value!r}")
            if value:
                args.append(f"--{key}")
        elif key in parameters:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, (dict, list, bool)):
                    raise usage.UsageError(f"config file {path}: {key} takes a string or a number, not {item!r}")
                args += [f"--{key}", str(item)]
        else:
            raise usage.UsageError(f"config file {path}: unknown option {key!r}")
    return args


def makeService(options: Options) -> service.MultiService:
    from twisted.internet import reactor

    top = service.MultiService()
    registry = StreamRegistry(
        gop_cache_bytes=options["gop-cache-bytes"],
        cleaning=options["cleaning"],
        clock=reactor,
        # bridging keeps an upstream publish going: only forwarded streams are bridged
        bridge_grace_s=options["bridge-grace"] if options.forwarding else 0.0,
        bridge_unpublished=not options["end-on-unpublish"],
    )
    cloud = forwarding = announcer = None
    if options["cloud"]:
        cloud = CloudClient(options["cloud"], clock=reactor)
    lookup = cloud is not None and not options["no-cloud-lookup"]
    if options.forwarding:
        upstream = UpstreamConfig(
            ca_file=options["upstream-ca"],
            queue_bytes=options["upstream-queue-bytes"],
            connect_timeout=options["upstream-timeout"],
        )
        templates = ForwardTemplates(options["forward"]) if options["forward"] else None
        source = CloudLookup(cloud, fallback=templates) if lookup else templates
        forwarding = Forwarding(reactor, source, upstream, min_keyframe_interval_s=options.get("min-keyframe-spacing"))
        registry.add_listener(forwarding)
    config = options["server-config"]
    hls_output = None
    if options["hls"]:
        settings = options["hls-settings"]
        gop_s = settings.transcode.gop / settings.transcode.fps
        if settings.mode == "transcode" and settings.segment_s < gop_s:
            # segments are cut at keyframes only: they cannot be shorter than a GOP
            Logger().warn(
                "--hls-segment {segment} s is shorter than the GOP ({gop} frames = {gop_s:g} s): segments will be {gop_s:g} s",
                segment=settings.segment_s,
                gop=settings.transcode.gop,
                gop_s=gop_s,
            )
        hls_output = HlsOutput(Path(options["hls"]), settings, clock=reactor)
        hls_output.setServiceParent(top)
        registry.add_listener(hls_output)
    if cloud is not None:
        announcer = CloudAnnouncer(cloud, options["public-url"])
        registry.add_listener(announcer)
        if hls_output is not None:
            hls_output.add_listener(announcer)
    factory = RTMPServerFactory(registry, config, reactor, admission=_admission_chain(options, reactor, forwarding))
    for endpoint in options["rtmp"]:
        strports.service(endpoint, factory).setServiceParent(top)
    lag = ReactorLagMonitor(reactor)
    lag.setServiceParent(top)
    if not options["no-http"]:
        site = make_site(
            registry,
            Path(options["hls"] or DEFAULT_HLS_DIR),
            started_at=reactor.seconds(),
            clock=reactor,
            lag=lag,
            hls=hls_output,
            limits=options["http-limits"],
            rtmp_server=factory,
        )
        strports.service(options["http"], site).setServiceParent(top)
    # Added last, so stopped first: streams end while the rest still runs.
    GracefulStop(reactor, registry, forwarding=forwarding, announcer=announcer).setServiceParent(top)
    top.registry = registry
    return top


def _admission_chain(options: Options, reactor, forwarding: Forwarding | None) -> AdmissionChain:
    """Signed URLs, then the HTTP hooks, then the upstream lookup: cheap local checks first."""
    log = Logger()
    auth: AuthSettings = options["auth"]
    checks: list = []
    if auth.signed_actions:
        secret, made = (auth.secret, False) if auth.secret is not None else make_secret_file(auth.secret_file)
        log.info(
            "signed URLs are required to {actions}{why}; their secret is from {source}{made}",
            actions=" and ".join(a for a in (PUBLISH, PLAY) if a in auth.signed_actions),
            why=f" ({', '.join(auth.exposed)} listens beyond loopback)" if auth.exposed else "",
            source=auth.secret_source,
            made=" (made now, mode 0600)" if made else "",
        )
        if auth.make_secret:
            log.info(
                "sign a URL with: rtmprelay sign --auth-secret-file {path} rtmp://HOST/live/USER/STREAM",
                path=str(auth.secret_file),
            )
        if auth.secret_file is not None and readable_by_others(auth.secret_file):
            log.warn("the auth secret file {path} can be read by other users: chmod 600 it", path=str(auth.secret_file))
        checks.append(SignedUrlCheck(secret, reactor, actions=auth.signed_actions, clock_skew=auth.clock_skew))
    elif auth.open_publishing:
        log.warn("--no-auth: anyone who reaches {exposed} may publish any stream", exposed=", ".join(auth.exposed))
    for option, action in (("on-publish", PUBLISH), ("on-play", PLAY)):
        if options[option]:
            checks.append(HttpAdmissionHook(options[option], action=action, timeout_s=options["hook-timeout"], clock=reactor))
    if forwarding is not None:
        checks.append(PathHookCheck(forwarding.admit))
    return AdmissionChain(checks)


def main(argv: list[str] | None = None) -> None:
    """The ``rtmprelay`` console script: the twistd plugin in the foreground, or ``rtmprelay sign``."""
    from twisted.scripts.twistd import run

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["sign"]:
        # The daemon takes no positional argument, so "sign" never was one of its command lines.
        from rtmprelay.auth.cli import sign_main

        sys.exit(sign_main(args[1:]))
    sys.argv = ["twistd", "--nodaemon", "--pidfile=", "rtmprelay", *args]
    run()
