"""Real RTMP players: ffprobe, rtmpdump, GStreamer rtmp2src, ffmpeg recording.

Players may start before the stream is published: nginx-rtmp (and a relay
that behaves like it) holds them until a publisher arrives.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import NamedTuple

from rtmprelay.testing.peers import (
    DEFAULT_SLACK,
    PeerError,
    PeerProcess,
    find_tool,
    require_gst_elements,
    rtmp_app_and_name,
)

__all__ = [
    "FfmpegRecorder",
    "GstPlayer",
    "RtmpdumpPlayer",
    "StreamInfo",
    "ffmpeg_record",
    "ffprobe_stream",
]


class StreamInfo(NamedTuple):
    """One stream as ffprobe reports it."""

    index: int
    codec_type: str  # "video", "audio", "data"
    codec_name: str | None  # "h264", "aac", ...
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    profile: str | None = None


def ffprobe_stream(
    url: str | os.PathLike[str],
    timeout: float = 30.0,
    *,
    app: str | None = None,
    idle_timeout: float = 5.0,
    log_dir: str | os.PathLike[str] | None = None,
) -> list[StreamInfo]:
    """``ffprobe -v error -show_streams -of json`` on an RTMP URL (or a file).

    ffprobe reads about 2 s of a live stream before it answers. If the
    stream stops sooner, it answers ``idle_timeout`` s after the last byte
    (``-rw_timeout``; ffmpeg's RTMP client ignores "unpublished" notices).
    Raises `PeerTimeout` after ``timeout`` s, or `PeerError` with ffprobe's
    stderr if it fails.
    """
    ffprobe = find_tool("ffprobe")
    target = str(url)
    argv = [ffprobe, "-hide_banner", "-v", "error"]
    if target.startswith("rtmp"):
        argv += ["-rtmp_live", "live", "-rw_timeout", str(int(idle_timeout * 1e6))]
        if app is not None:
            argv += ["-rtmp_app", app.strip("/"), "-rtmp_playpath", rtmp_app_and_name(target, app)]
    argv += ["-show_streams", "-of", "json", target]
    probe = PeerProcess(argv, timeout=timeout, log_dir=log_dir)
    probe.name = "ffprobe"
    with probe:
        probe.wait()
        probe.check()
        try:
            data = json.loads(probe.stdout_text or "{}")
        except json.JSONDecodeError as exc:
            raise PeerError(f"ffprobe printed no JSON ({exc}).\n{probe.describe()}") from None
    streams = []
    for stream in data.get("streams", []):
        streams.append(
            StreamInfo(
                index=int(stream.get("index", len(streams))),
                codec_type=stream.get("codec_type", ""),
                codec_name=stream.get("codec_name"),
                width=stream.get("width"),
                height=stream.get("height"),
                sample_rate=int(stream["sample_rate"]) if "sample_rate" in stream else None,
                channels=stream.get("channels"),
                profile=stream.get("profile"),
            )
        )
    return streams


class RtmpdumpPlayer(PeerProcess):
    """``rtmpdump -v -r URL -o FILE``: librtmp as a player.

    rtmpdump does not exit when a live stream is unpublished, and its
    ``--stop`` only works on recorded streams (nginx live ignores it). So
    ``seconds`` stops it that long after start (SIGTERM; it closes
    the file cleanly), and ``idle_timeout`` (``-m``) ends it that many seconds
    after data stops, with status 1 or 2 ("incomplete"). Both count as ok
    here when the file holds media.
    """

    name = "rtmpdump"
    stop_signal = signal.SIGTERM
    ok_returncodes = (0, 1, 2, -signal.SIGTERM)

    def __init__(
        self,
        url: str,
        out: str | os.PathLike[str],
        seconds: float | None = None,
        *,
        app: str | None = None,
        live: bool = True,
        idle_timeout: int = 10,
        timeout: float = DEFAULT_SLACK,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        rtmpdump = find_tool("rtmpdump")
        self.url = url
        self.out = Path(out)
        self.seconds = seconds
        argv = [rtmpdump, "-r", url, "-o", str(self.out), "-m", str(idle_timeout), "-q"]
        if live:
            argv.append("-v")
        if app is not None:
            argv += ["-a", app.strip("/"), "-y", rtmp_app_and_name(url, app)]
        super().__init__(
            argv,
            timeout=(seconds or 0) + idle_timeout + timeout,
            log_dir=log_dir,
            stop_after=seconds,
        )

    def check(self, returncodes=None) -> None:
        super().check(returncodes)
        if not self.out.exists() or self.out.stat().st_size <= 13:
            raise PeerError(f"rtmpdump wrote no media to {self.out}.\n{self.describe()}")


class GstPlayer(PeerProcess):
    """``gst-launch-1.0 -e rtmp2src location=URL ! filesink`` (or fakesink).

    rtmp2src ends (EOS, exit 0) when the stream is unpublished. ``seconds``
    stops it that long after start instead (SIGINT: gst-launch -e sends EOS).
    ``out=None`` discards the stream (``fakesink``).
    """

    name = "gst-player"
    stop_signal = signal.SIGINT

    def __init__(
        self,
        url: str,
        out: str | os.PathLike[str] | None = None,
        seconds: float | None = None,
        *,
        app: str | None = None,
        idle_timeout: int = 10,
        timeout: float = DEFAULT_SLACK,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        sink = "filesink" if out is not None else "fakesink"
        require_gst_elements("rtmp2src", sink)
        launch = find_tool("gst-launch-1.0")
        self.url = url
        self.out = Path(out) if out is not None else None
        source = ["rtmp2src", f"location={url}", f"idle-timeout={idle_timeout}"]
        if app is not None:
            source += [f"application={app.strip('/')}", f"stream={rtmp_app_and_name(url, app)}"]
        sink_args = [sink] if out is None else [sink, f"location={self.out}"]
        argv = [launch, "-e", *source, "!", *sink_args]
        super().__init__(
            argv, timeout=(seconds or 0) + timeout, log_dir=log_dir, stop_after=seconds
        )


class FfmpegRecorder(PeerProcess):
    """``ffmpeg -i URL [-t seconds] -c copy -f flv FILE``: ffmpeg as a player.

    Ends after ``seconds`` of media, or once data has stopped for
    ``idle_timeout`` s (``-rw_timeout``; in practice about twice that, as
    ffmpeg retries once; its RTMP client does not end on "unpublished"), or
    on `stop` (SIGINT: the file is finished cleanly). The idle time also runs
    while it waits for a publisher that has not started yet.
    """

    name = "ffmpeg-recorder"
    stop_signal = signal.SIGINT

    def __init__(
        self,
        url: str,
        out: str | os.PathLike[str],
        seconds: float | None = None,
        *,
        app: str | None = None,
        idle_timeout: float = 5.0,
        timeout: float = DEFAULT_SLACK,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        ffmpeg = find_tool("ffmpeg")
        self.url = url
        self.out = Path(out)
        argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning", "-y",
                "-rtmp_live", "live", "-rw_timeout", str(int(idle_timeout * 1e6))]
        if app is not None:
            argv += ["-rtmp_app", app.strip("/"), "-rtmp_playpath", rtmp_app_and_name(url, app)]
        argv += ["-i", url]
        if seconds is not None:
            argv += ["-t", f"{seconds:g}"]
        argv += ["-map", "0", "-c", "copy", "-f", "flv", str(self.out)]
        super().__init__(
            argv, timeout=(seconds or 0) + idle_timeout + timeout, log_dir=log_dir
        )


def ffmpeg_record(
    url: str, out_flv: str | os.PathLike[str], seconds: float | None = None, **kwargs
) -> FfmpegRecorder:
    """Start an `FfmpegRecorder` and return it (call ``.wait()`` for the file)."""
    return FfmpegRecorder(url, out_flv, seconds, **kwargs).start()

