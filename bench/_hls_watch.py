"""Helpers of bench/hls_transcode.py: what it watches while a run goes on.

- ``PlaylistWatcher``: a thread that reads every stream's playlist every 20 ms
  and notes, for each segment, when it was first listed, its duration and size,
  and the PTS of its first video frame (read from the .ts at once, before the
  muxer's window deletes it);
- ``Publisher``: ``ffmpeg -re -stream_loop -1 -i FLV -c copy -f flv URL`` with
  ``-progress`` on a pipe, read by a thread that stamps each report, so that
  the wall time the publisher sent media time t is known (``pace_start + t``);
- ``CloudStub``: the cloud's routes on a stdlib HTTP server in a thread: the
  upstream lookup answers a fixed URL template, the webhooks are recorded with
  the time they arrived;
- /proc readers: CPU seconds and RSS of a process and its descendants, and
  whether a TCP port is listening (without connecting: ``ffmpeg -listen 1``
  takes the first connection as its publisher).

All times are ``time.monotonic()``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rtmprelay.testing.hls import read_playlist

CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_S = 0.020
TS_PACKET = 188


# --- /proc ---------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            for tid in os.listdir(f"/proc/{current}/task"):
                todo += [int(c) for c in Path(f"/proc/{current}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of each process (every thread, the exited ones too), summed, in seconds."""
    total = 0
    for pid in pids:
        for root in descendants(pid):
            try:
                fields = Path(f"/proc/{root}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return total / CLK_TCK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for root in descendants(pid):
            try:
                for line in Path(f"/proc/{root}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
    return total


def threads_of(pids: list[int]) -> int:
    return sum(len(os.listdir(f"/proc/{p}/task")) for pid in pids for p in descendants(pid) if os.path.exists(f"/proc/{p}"))


def listening(port: int) -> bool:
    """Whether something listens on TCP ``port`` (IPv4), read from /proc/net/tcp."""
    want = f":{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[1].endswith(want) and fields[3] == "0A":  # 0A: LISTEN
            return True
    return False


def wait_listening(port: int, timeout: float, alive=None) -> None:
    deadline = time.monotonic() + timeout
    while not listening(port):
        if alive is not None and not alive():
            raise RuntimeError(f"the server for port {port} exited before listening")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on port {port} after {timeout:g} s")
        time.sleep(0.01)


# --- playlists and segments ----------------------------------------------------------------


def first_video_pts(data: bytes) -> int | None:
    """The PTS (90 kHz) of the first video PES that starts in these MPEG-TS bytes."""
    for offset in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
        packet = data[offset : offset + TS_PACKET]
        if packet[0] != 0x47 or not packet[1] & 0x40:  # sync byte; payload_unit_start_indicator
            continue
        control = (packet[3] >> 4) & 0x3
        start = 4
        if control & 0x2:  # adaptation field first
            start += 1 + packet[4]
        if not control & 0x1 or start + 14 > TS_PACKET:
            continue
        pes = packet[start:]
        if pes[:3] != b"\x00\x00\x01" or not 0xE0 <= pes[3] <= 0xEF or not pes[7] & 0x80:
            continue
        p = pes[9:14]
        return ((p[0] >> 1) & 0x07) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1
    return None


class PlaylistWatcher(threading.Thread):
    """Polls ``playlists`` (name -> index.m3u8) every 20 ms until ``stop()``.

    ``segments[name]`` is a list of dicts: ``uri``, ``duration``, ``listed``
    (monotonic time first seen listed), ``size``, ``pts`` (first video PTS, 90 kHz).
    The first and third segments of each stream are copied to ``keep_dir``.
    """

    def __init__(self, playlists: dict[str, Path], keep_dir: Path, keep=(0, 2)) -> None:
        super().__init__(name="playlist-watcher", daemon=True)
        self.playlists = playlists
        self.keep_dir = keep_dir
        self.keep = keep
        self.segments: dict[str, list[dict]] = {name: [] for name in playlists}
        self.errors: list[str] = []
        self.late_polls = 0  # polls that started more than 20 ms late
        self._seen: dict[str, set[str]] = {name: set() for name in playlists}
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def run(self) -> None:
        due = time.monotonic()
        while not self._halt.is_set():
            now = time.monotonic()
            if now - due > POLL_S:
                self.late_polls += 1
            for name, playlist in self.playlists.items():
                self._poll(name, playlist, now)
            due += POLL_S
            delay = due - time.monotonic()
            if delay > 0:
                self._halt.wait(delay)
            else:
                due = time.monotonic()

    def _poll(self, name: str, playlist: Path, now: float) -> None:
        try:
            text = playlist.read_text()
        except FileNotFoundError:
            return
        except OSError as error:
            self.errors.append(f"{name}: {error}")
            return
        try:
            entries = read_playlist(text).entries
        except ValueError:  # caught mid-write: the next poll sees it whole
            return
        seen = self._seen[name]
        for uri, duration in ((e.uri, e.duration_s) for e in entries):
            if uri in seen:
                continue
            seen.add(uri)
            path = playlist.parent / uri
            entry = {"uri": uri, "duration": duration, "listed": now, "size": None, "pts": None}
            try:
                data = path.read_bytes()
            except OSError as error:
                self.errors.append(f"{name}: {uri} listed but not readable: {error}")
            else:
                entry["size"] = len(data)
                entry["pts"] = first_video_pts(data[: 256 * 1024])
                index = len(self.segments[name])
                if index in self.keep:
                    self.keep_dir.mkdir(parents=True, exist_ok=True)
                    (self.keep_dir / f"{name}-seg{index}.ts").write_bytes(data)
            self.segments[name].append(entry)


# --- publishers ------------------------------------------------------------------------------


class Publisher:
    """One ``ffmpeg -re`` publisher; ``samples`` are (monotonic time, media seconds sent)."""

    def __init__(self, ffmpeg: str, flv: Path, url: str, log_path: Path) -> None:
        self.argv = [
            ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning",
            "-re", "-stream_loop", "-1", "-i", str(flv),
            "-c", "copy", "-f", "flv",
            "-progress", "pipe:1", "-stats_period", "0.1",
            url,
        ]
        self.log_path = log_path
        self.samples: list[tuple[float, float]] = []
        self.spawned: float | None = None
        self.proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.spawned = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True
        )
        log.close()
        self._reader = threading.Thread(target=self._read, name="progress", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        out_time = None
        for raw in self.proc.stdout:
            line = raw.decode("ascii", "replace").strip()
            if line.startswith("out_time_us="):
                try:
                    out_time = int(line.split("=", 1)[1]) / 1e6
                except ValueError:
                    out_time = None
            elif line.startswith("progress=") and out_time is not None:
                self.samples.append((time.monotonic(), out_time))

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pace_start(self, skip_s: float = 0.5) -> float | None:
        """When media time 0 went out: the least (report time - media time) over the reports.

        A report is written after the media it counts was sent, so each one is an
        upper bound; past the first ``skip_s`` of media (start-up) the least is
        within a report interval's jitter of the truth.
        """
        values = [t - media for t, media in self.samples if media >= skip_s]
        return min(values) if values else None

    def behind_max(self, start: float, end: float) -> float | None:
        """How far the publisher fell behind real time within [start, end], seconds."""
        origin = self.pace_start()
        values = [t - media - origin for t, media in self.samples if start <= t <= end]
        return max(values) if values and origin is not None else None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(2)


# --- the cloud ---------------------------------------------------------------------------------


class CloudStub:
    """The cloud's routes: ``GET /api/rtmp-relay/cf-url/USER/STREAM`` answers
    ``{"url": upstream_template.format(userId=..., streamId=...)}``; ``POST
    /api/rtmp-relay/hls-ready`` and ``.../stream-ended`` are recorded in ``events``
    as ``(monotonic time, route, JSON body)``."""

    def __init__(self) -> None:
        self.upstream_template = ""
        self.events: list[tuple[float, str, dict]] = []
        self.lookups: list[tuple[float, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) == 5 and parts[:3] == ["api", "rtmp-relay", "cf-url"]:
                    stub.lookups.append((time.monotonic(), self.path))
                    self._answer(200, {"url": stub.upstream_template.format(userId=parts[3], streamId=parts[4])})
                else:
                    self._answer(404, {"error": "no such route"})

            def do_POST(self) -> None:
                now = time.monotonic()
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                route = self.path.strip("/").split("/")[-1]
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"raw": body.decode("utf-8", "replace")}
                stub.events.append((now, route, payload))
                self._answer(200, {"ok": True})

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="cloud-stub", daemon=True)
        self._thread.start()

    def reset(self, upstream_template: str) -> None:
        self.upstream_template = upstream_template
        self.events = []
        self.lookups = []

    def first(self, route: str, stream_id: str) -> float | None:
        times = [t for t, r, body in self.events if r == route and body.get("streamId") == stream_id]
        return min(times) if times else None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- what the outputs are ----------------------------------------------------------------------


def describe_segment(ffprobe: str, path: Path) -> dict:
    """Codec parameters, frame rate and keyframes of one .ts, and x264's own options string."""
    out: dict = {"file": path.name, "bytes": path.stat().st_size}
    # The video elementary stream (TS packet headers would cut through x264's SEI).
    data = subprocess.run(
        [ffprobe.replace("ffprobe", "ffmpeg"), "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy",
         "-f", "h264", "pipe:1"],
        capture_output=True, timeout=60,
    ).stdout
    at = data.find(b"x264 - core")
    if at >= 0:
        end = data.find(b"\x00", at)
        out["x264"] = data[at : end if end > 0 else at + 2000].decode("ascii", "replace")
    result = subprocess.run(
        [ffprobe, "-v", "error", "-of", "json", "-show_streams", "-show_packets", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    try:
        probe = json.loads(result.stdout)
    except ValueError:
        out["error"] = result.stderr.strip()[-500:]
        return out
    for stream in probe.get("streams", []):
        kind = stream.get("codec_type")
        index = stream.get("index")
        packets = [p for p in probe.get("packets", []) if p.get("stream_index") == index]
        times = sorted(float(p["pts_time"]) for p in packets if p.get("pts_time") not in (None, "N/A"))
        info = {
            "codec": stream.get("codec_name"),
            "profile": stream.get("profile"),
            "packets": len(packets),
            "keyframes": sum(1 for p in packets if "K" in p.get("flags", "")),
            "duration_s": round(times[-1] - times[0], 4) if len(times) > 1 else None,
            "bytes": sum(int(p.get("size", 0)) for p in packets),
        }
        if kind == "video":
            steps = {round(b - a, 4) for a, b in zip(times, times[1:])}
            info.update(
                size=f"{stream.get('width')}x{stream.get('height')}",
                level=stream.get("level"),
                pix_fmt=stream.get("pix_fmt"),
                r_frame_rate=stream.get("r_frame_rate"),
                avg_frame_rate=stream.get("avg_frame_rate"),
                has_b_frames=stream.get("has_b_frames"),
                frame_steps_s=sorted(steps)[:5],
            )
        elif kind == "audio":
            info.update(
                sample_rate=stream.get("sample_rate"),
                channels=stream.get("channels"),
            )
        out[kind] = info
    return out
