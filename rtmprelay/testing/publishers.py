"""Real RTMP publishers (ffmpeg, GStreamer) and the reference FLV file.

Each publisher generates H.264 + AAC test media (or sends a file unchanged)
for a given number of seconds, in real time by default, and exits when done.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from rtmprelay.testing.peers import (
    DEFAULT_SLACK,
    INSTALL_HINT,
    PeerError,
    PeerProcess,
    PeerUnavailable,
    find_tool,
    gst_element_available,
    require_gst_elements,
    rtmp_app_and_name,
)

__all__ = ["FfmpegPublisher", "GstPublisher", "make_test_flv"]

AUDIO_RATE = 44100


def _parse_size(size: str | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, str):
        width, _, height = size.lower().partition("x")
        return int(width), int(height)
    return int(size[0]), int(size[1])


def _ffmpeg_test_source_args(
    seconds: float, size: str | tuple[int, int], fps: int, gop: int, audio: bool, realtime: bool
) -> list[str]:
    """Inputs and encoder options for ffmpeg's testsrc2 + sine as H.264 + AAC."""
    width, height = _parse_size(size)
    read_rate = ["-re"] if realtime else []
    args = [*read_rate, "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}"]
    if audio:
        args += [*read_rate, "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={AUDIO_RATE}"]
    args += [
        "-t", f"{seconds:g}",
        "-map", "0:v",
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
        "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "0",
        "-threads", "1", "-flags:v", "+bitexact",
    ]
    if audio:
        args += ["-map", "1:a", "-c:a", "aac", "-b:a", "64k", "-ar", str(AUDIO_RATE),
                 "-ac", "1", "-flags:a", "+bitexact"]
    return args


def make_test_flv(
    path: str | os.PathLike[str],
    seconds: float = 3.0,
    size: str | tuple[int, int] = "320x240",
    fps: int = 25,
    gop: int | None = None,
    audio: bool = True,
    *,
    timeout: float = 60.0,
) -> Path:
    """Write a deterministic H.264 (+ AAC) FLV file with ffmpeg; return its path.

    Same arguments give the same bytes (bitexact, one encoder thread):
    the reference input whose payloads a test compares with what came out.
    A keyframe every ``gop`` frames (default: one per second), no B-frames.
    """
    ffmpeg = find_tool("ffmpeg")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        *_ffmpeg_test_source_args(seconds, size, fps, gop or fps, audio, realtime=False),
        "-fflags", "+bitexact", "-map_metadata", "-1", "-f", "flv", str(path),
    ]
    try:
        result = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise PeerError(f"ffmpeg took over {timeout:g} s to write {path}") from None
    if result.returncode != 0:
        raise PeerError(
            f"ffmpeg could not write {path} ({result.returncode}):\n"
            + result.stderr.decode("utf-8", "replace")[-2000:]
        )
    return path


class FfmpegPublisher(PeerProcess):
    """``ffmpeg -re ... -f flv URL``: test media, or ``source_file`` with ``-c copy``.

    ``seconds`` is the length of generated media; with ``source_file`` it
    cuts the file (``-t``) and None sends it whole. ``app`` forces the RTMP
    application (see `rtmp_app_and_name`). The peer may run ``seconds`` plus
    ``timeout`` before `wait` gives up.
    """

    name = "ffmpeg-publisher"
    stop_signal = signal.SIGINT  # ffmpeg finishes the stream cleanly

    def __init__(
        self,
        url: str,
        seconds: float | None = 3.0,
        size: str | tuple[int, int] = "320x240",
        fps: int = 25,
        gop: int | None = None,
        audio: bool = True,
        realtime: bool = True,
        source_file: str | os.PathLike[str] | None = None,
        *,
        app: str | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = DEFAULT_SLACK,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        ffmpeg = find_tool("ffmpeg")
        self.url = url
        self.seconds = seconds
        self.source_file = Path(source_file) if source_file is not None else None
        argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning"]
        if self.source_file is not None:
            if not self.source_file.exists():
                raise FileNotFoundError(self.source_file)
            argv += [*(["-re"] if realtime else []), "-i", str(self.source_file)]
            if seconds is not None:
                argv += ["-t", f"{seconds:g}"]
            argv += ["-map", "0", "-c", "copy"]
        else:
            if seconds is None:
                raise ValueError("generated media needs seconds")
            argv += _ffmpeg_test_source_args(seconds, size, fps, gop or fps, audio, realtime)
        if app is not None:
            argv += ["-rtmp_app", app.strip("/"), "-rtmp_playpath", rtmp_app_and_name(url, app)]
        argv += [*extra_args, "-flvflags", "no_duration_filesize", "-f", "flv", url]
        length = seconds if seconds is not None else 600.0
        super().__init__(argv, timeout=length + timeout, log_dir=log_dir)


def _gst_audio_encoder() -> list[str]:
    if gst_element_available("voaacenc"):
        return ["voaacenc", "bitrate=64000"]
    if gst_element_available("avenc_aac"):
        return ["avenc_aac", "bitrate=64000"]
    if gst_element_available("fdkaacenc"):
        return ["fdkaacenc", "bitrate=64000"]
    raise PeerUnavailable(
        "no GStreamer AAC encoder (voaacenc, avenc_aac or fdkaacenc) installed "
        f"(Debian: gstreamer1.0-plugins-bad or gstreamer1.0-libav); {INSTALL_HINT}"
    )


class GstPublisher(PeerProcess):
    """gst-launch-1.0: videotestsrc + audiotestsrc -> x264enc + AAC -> flvmux -> sink.

    ``element`` is ``rtmpsink`` (librtmp) or ``rtmp2sink`` (GStreamer's own
    RTMP client); they differ on the wire, which is the point of having both.
    """

    name = "gst-publisher"
    stop_signal = signal.SIGINT  # with -e: EOS through the pipeline, then exit
    SINKS = ("rtmpsink", "rtmp2sink")

    def __init__(
        self,
        url: str,
        element: str = "rtmpsink",
        seconds: float = 3.0,
        size: str | tuple[int, int] = "320x240",
        fps: int = 25,
        gop: int | None = None,
        audio: bool = True,
        realtime: bool = True,
        *,
        app: str | None = None,
        timeout: float = DEFAULT_SLACK,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if element not in self.SINKS:
            raise ValueError(f"element must be one of {self.SINKS}, not {element!r}")
        needed = ["videotestsrc", "x264enc", "h264parse", "flvmux", element]
        if audio:
            needed += ["audiotestsrc", "aacparse"]
        require_gst_elements(*needed)
        launch = find_tool("gst-launch-1.0")
        self.url = url
        self.element = element
        self.seconds = seconds
        self.name = f"gst-{element}-publisher"
        width, height = _parse_size(size)
        gop = gop or fps
        live = "true" if realtime else "false"
        frames = max(1, round(seconds * fps))
        argv = [launch, "-e"]
        argv += [
            "flvmux", "name=mux", "streamable=true", "!", *self._sink(element, url, app),
            "videotestsrc", f"is-live={live}", f"num-buffers={frames}", "pattern=smpte", "!",
            f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1", "!",
            "x264enc", "tune=zerolatency", "speed-preset=veryfast", f"key-int-max={gop}",
            "bframes=0", "threads=1", "!",
            "video/x-h264,profile=high", "!", "h264parse", "!", "queue", "!", "mux.",
        ]
        if audio:
            samples = 1024
            buffers = max(1, math.ceil(seconds * AUDIO_RATE / samples))
            argv += [
                "audiotestsrc", f"is-live={live}", f"num-buffers={buffers}",
                f"samplesperbuffer={samples}", "wave=sine", "freq=440", "!",
                f"audio/x-raw,rate={AUDIO_RATE},channels=1", "!", "audioconvert", "!",
                *_gst_audio_encoder(), "!", "aacparse", "!", "queue", "!", "mux.",
            ]
        super().__init__(argv, timeout=seconds + timeout, log_dir=log_dir)

    @staticmethod
    def _sink(element: str, url: str, app: str | None) -> list[str]:
        if element == "rtmpsink":
            location = url
            if app is not None:
                # librtmp options after the URL override what it parsed.
                location += f" app={app.strip('/')} playpath={rtmp_app_and_name(url, app)}"
            return ["rtmpsink", f"location={location}"]
        sink = ["rtmp2sink", f"location={url}"]
        if app is not None:
            sink += [f"application={app.strip('/')}", f"stream={rtmp_app_and_name(url, app)}"]
        return sink
