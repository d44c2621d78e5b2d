"""Streams whose pictures carry the wall-clock time they were painted at, and
players that read it back: glass-to-player latency with no clock but the
machine's.

A mark is the wall-clock time in milliseconds modulo 2**32, painted as 32
black or white blocks (8 columns by 4 rows, most significant bit first) over
the top half of the picture; the bottom half is a bar that moves, so the
encoder has something to code. A block is an eighth of the picture each way:
it survives H.264 at any sane rate and any scaling, so a reader samples the
block centres and thresholds them.

- ``MarkedPublisher``: Python paints each frame at its wall-clock time (the
  "glass") and pipes it to ffmpeg, which encodes it (x264 zerolatency, no
  B-frames) with silent AAC and publishes it to one RTMP URL or several at
  once (the tee muxer: the same frames reach every relay of a comparison).
- ``FfmpegMarkReader``: ffmpeg as the player: it decodes a URL as fast as it
  can read it and pipes gray frames back; each frame's latency is the wall
  clock when it arrives minus its mark.
- ``BROWSER_PLAYER_JS``: the same in a browser page with hls.js: each frame
  the video element presents (``requestVideoFrameCallback``) is drawn on a
  canvas, its mark read, and ``[Date.now(), Date.now() - mark]`` kept in
  ``window.rtmprelay[key].samples``; several players can share a page.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from rtmprelay.testing.peers import find_tool

__all__ = [
    "BROWSER_PLAYER_JS",
    "FfmpegMarkReader",
    "MarkedPublisher",
    "latency_ms",
    "mark_picture",
    "read_mark",
    "summary",
]

COLUMNS, ROWS = 8, 4
BITS = COLUMNS * ROWS
_WRAP = 1 << BITS
_BLACK, _WHITE, _GRAY = 16, 235, 128


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def mark_picture(ms: int, width: int, height: int, frame: int = 0) -> bytes:
    """A gray (8 bits a pixel) picture carrying ``ms`` modulo 2**32; ``frame`` moves the bar."""
    if width % COLUMNS or height % (2 * ROWS):
        raise ValueError(f"{width}x{height}: the width must divide by {COLUMNS}, the height by {2 * ROWS}")
    value = ms % _WRAP
    block_w, block_h = width // COLUMNS, height // (2 * ROWS)
    white, black = bytes([_WHITE]) * block_w, bytes([_BLACK]) * block_w
    rows = []
    for row in range(ROWS):
        line = b"".join(
            white if value >> (BITS - 1 - (row * COLUMNS + column)) & 1 else black for column in range(COLUMNS)
        )
        rows.append(line * block_h)
    bar = (frame * 4) % width
    lower = bytearray([_GRAY]) * width
    lower[bar : bar + 16] = bytes([_WHITE]) * len(lower[bar : bar + 16])
    return b"".join(rows) + bytes(lower) * (height - ROWS * block_h)


def read_mark(luma: bytes | memoryview, width: int, height: int, stride: int | None = None) -> int:
    """The mark of a decoded picture's luma plane (or any 8-bit gray picture)."""
    stride = width if stride is None else stride
    value = 0
    for row in range(ROWS):
        y = int((row + 0.5) * height / (2 * ROWS))
        for column in range(COLUMNS):
            x = int((column + 0.5) * width / COLUMNS)
            value = value << 1 | (luma[y * stride + x] >= _GRAY)
    return value


def latency_ms(mark: int, now_ms: int) -> int:
    """``now_ms - mark`` on the 2**32 ms circle (marks wrap every 49.7 days)."""
    delta = (now_ms - mark) % _WRAP
    return delta - _WRAP if delta >= _WRAP // 2 else delta


def summary(latencies_ms: Sequence[float]) -> dict:
    """count, p50, p90, min and max of a run of latencies (ms)."""
    if not latencies_ms:
        return {"count": 0}
    ordered = sorted(latencies_ms)
    return {
        "count": len(ordered),
        "p50": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "min": ordered[0],
        "max": ordered[-1],
    }


class _Process:
    """A subprocess in its own process group, its stderr in a log file, bounded by ``timeout(1)``."""

    def __init__(self, argv: list[str], lifetime: float, log: Path | None, **pipes) -> None:
        wrapper = shutil.which("timeout")
        if wrapper is not None:
            argv = [wrapper, "-s", "KILL", f"{lifetime:.0f}", *argv]
        self.log_path = log
        self._log = open(log, "wb") if log is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(argv, stderr=self._log, start_new_session=True, **pipes)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 9)
            except ProcessLookupError:
                pass
        self.process.wait(10)
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    @property
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path is not None and self.log_path.exists() else ""


class MarkedPublisher:
    """Marked pictures painted in real time, encoded by ffmpeg, published to ``urls``.

    ``painted`` counts the frames handed to ffmpeg; ``error`` is set if the
    pipe broke (ffmpeg gone)."""

    def __init__(
        self,
        urls: Sequence[str],
        seconds: float,
        *,
        size: tuple[int, int] = (640, 360),
        fps: int = 30,
        gop: int = 60,
        bitrate: str = "1M",
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not urls:
            raise ValueError("no URL to publish to")
        self.urls = list(urls)
        self.seconds = seconds
        self.width, self.height = size
        self.fps = fps
        mark_picture(0, self.width, self.height)  # the size must fit the blocks
        ffmpeg = find_tool("ffmpeg")
        if len(self.urls) == 1:
            output = ["-f", "flv", self.urls[0]]
        else:
            output = ["-f", "tee", "|".join(f"[f=flv:onfail=ignore]{url}" for url in self.urls)]
        self.argv = [
            ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning",
            "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{self.width}x{self.height}", "-r", str(fps), "-i", "pipe:0",
            "-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono",
            "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-bf", "0", "-pix_fmt", "yuv420p",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-b:v", bitrate,
            "-c:a", "aac", "-b:a", "64k", "-flags:v", "+global_header", "-flags:a", "+global_header",
            *output,
        ]  # fmt: skip
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.painted = 0
        self.error: BaseException | None = None
        self._process: _Process | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> "MarkedPublisher":
        log = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = self.log_dir / "marked-publisher.log"
        self._process = _Process(self.argv, self.seconds + 60, log, stdin=subprocess.PIPE)
        self._thread = threading.Thread(target=self._paint, name="marked-publisher", daemon=True)
        self._thread.start()
        return self

    def _paint(self) -> None:
        stdin = self._process.process.stdin
        start = time.monotonic()
        frames = int(self.seconds * self.fps)
        try:
            for frame in range(frames):
                if self._stopping.is_set():
                    break
                delay = start + frame / self.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                stdin.write(mark_picture(_now_ms(), self.width, self.height, frame))
                stdin.flush()
                self.painted += 1
        except (BrokenPipeError, OSError) as error:
            self.error = error
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def wait(self, timeout: float | None = None) -> None:
        """Until every frame is painted and ffmpeg has sent them."""
        self._thread.join(timeout)
        self._process.process.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._process is not None:
            self._process.stop()

    @property
    def log_text(self) -> str:
        return "" if self._process is None else self._process.log_text


class FfmpegMarkReader:
    """ffmpeg as the player: ``ffmpeg -i URL`` decoded to small gray frames on a
    pipe; ``samples`` holds each frame's arrival (wall clock) and latency (arrival - mark), in ms.

    ffmpeg keeps no playout buffer: it decodes as soon as it has read, so its
    figure is the earliest a plain HLS client could show each frame (it reads
    whole segments; LL-HLS parts are tags it skips)."""

    WIDTH, HEIGHT = 64, 32

    def __init__(self, url: str, seconds: float, *, input_args: Sequence[str] = (), log_dir=None) -> None:
        ffmpeg = find_tool("ffmpeg")
        self.url = url
        self.seconds = seconds
        self.argv = [
            ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning", *input_args, "-i", url, "-t", f"{seconds:g}",
            "-an", "-vf", f"scale={self.WIDTH}:{self.HEIGHT}", "-pix_fmt", "gray", "-f", "rawvideo", "pipe:1",
        ]  # fmt: skip
        self.log_dir = Path(log_dir) if log_dir is not None else None
        #: (wall-clock ms when the frame arrived, its latency in ms), in order.
        self.samples: list[tuple[int, int]] = []
        self._process: _Process | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "FfmpegMarkReader":
        log = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = self.log_dir / f"ffmpeg-reader-{abs(hash(self.url)) % 10000}.log"
        self._process = _Process(self.argv, self.seconds + 60, log, stdout=subprocess.PIPE, bufsize=0)
        self._thread = threading.Thread(target=self._read, name="ffmpeg-mark-reader", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        size = self.WIDTH * self.HEIGHT
        stdout = self._process.process.stdout
        buffer = bytearray()
        while True:
            chunk = stdout.read(size - len(buffer))
            if not chunk:
                return
            buffer += chunk
            if len(buffer) == size:
                now = _now_ms()
                self.samples.append((now, latency_ms(read_mark(buffer, self.WIDTH, self.HEIGHT), now)))
                buffer.clear()

    def wait(self, timeout: float | None = None) -> None:
        self._process.process.wait(timeout)
        self._thread.join(5)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def log_text(self) -> str:
        return "" if self._process is None else self._process.log_text


#: Run in a page of the relay's origin with ``execute_script(BROWSER_PLAYER_JS,
#: key, hls_js_url, playlist_url, low_latency)``: loads hls.js (once a page),
#: plays the playlist muted (speeding up to 1.5x to get back to its target
#: distance from the live edge after a stall, as an LL page should), and keeps ``[Date.now(), latency]`` (ms) of each
#: presented frame in ``window.rtmprelay[key].samples``, hls.js's own estimate
#: of its distance to the live edge (s) in ``.hlsLatency`` and fatal errors in
#: ``.errors``.
BROWSER_PLAYER_JS = """
const [key, hlsUrl, playlistUrl, lowLatency] = arguments;
window.rtmprelay = window.rtmprelay || {};
const state = window.rtmprelay[key] = {samples: [], errors: [], hlsLatency: []};
const COLUMNS = %(columns)d, ROWS = %(rows)d, WRAP = 2 ** %(bits)d;
const play = () => {
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true; video.width = 320;
  document.body.appendChild(video);
  const canvas = document.createElement('canvas');
  canvas.width = 64; canvas.height = 32;
  const context = canvas.getContext('2d', {willReadFrequently: true});
  // a player that stalled once catches up with its target distance from the live edge
  const hls = new Hls({lowLatencyMode: lowLatency, maxLiveSyncPlaybackRate: 1.5});
  state.hls = hls;
  hls.on(Hls.Events.ERROR, (event, data) => {
    if (data.fatal) state.errors.push(data.type + ' ' + data.details);
  });
  hls.loadSource(playlistUrl);
  hls.attachMedia(video);
  const readMark = () => {
    context.drawImage(video, 0, 0, 64, 32);
    const pixels = context.getImageData(0, 0, 64, 32).data;
    let value = 0;
    for (let row = 0; row < ROWS; row++) {
      const y = Math.floor((row + 0.5) * 32 / (2 * ROWS));
      for (let column = 0; column < COLUMNS; column++) {
        const x = Math.floor((column + 0.5) * 64 / COLUMNS);
        value = value * 2 + (pixels[(y * 64 + x) * 4] >= %(gray)d ? 1 : 0);
      }
    }
    const now = Date.now();
    let delta = (now - value) %% WRAP;
    if (delta < 0) delta += WRAP;
    if (delta >= WRAP / 2) delta -= WRAP;
    return [now, delta];
  };
  const onFrame = () => {
    if (video.videoWidth) {
      state.samples.push(readMark());
      if (hls.latency) state.hlsLatency.push(hls.latency);
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  video.play().catch((error) => state.errors.push('play: ' + error));
};
if (window.Hls) {
  play();
} else {
  const script = document.createElement('script');
  script.src = hlsUrl;
  script.onload = play;
  script.onerror = () => state.errors.push('hls.js did not load from ' + hlsUrl);
  document.head.appendChild(script);
}
""" % {"columns": COLUMNS, "rows": ROWS, "bits": BITS, "gray": _GRAY}
