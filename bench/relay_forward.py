"""Forwarding benchmark (issue 2): rtmprelay --forward against nginx-rtmp's own ``push``.

    .venv/bin/python bench/relay_forward.py [--streams 1,10,50] [--seconds 30] [--repeats 1]

For each N it runs three paths one after another, same N, same input, same
pacing, each on fresh processes (127.0.0.1, ports chosen at run time):

    direct      publisher -> sink nginx -> player                  (the baseline)
    rtmprelay   publisher -> rtmprelay --forward -> sink nginx -> player
    nginx push  publisher -> nginx A (push) -> sink nginx -> player

The publishers and players are one separate Twisted process
(bench/_forward_load.py): N streams of a 720p30 H.264 + AAC FLV at ~2.5 Mbit/s
paced in real time, each played on the sink by a player that subscribed before
publishing began. It reports, per path:

- CPU seconds per stream-minute of the process under test (utime+stime from
  /proc over the steady window, which starts ``--warmup`` s after the last
  stream started), and rtmprelay's ratio to nginx push;
- resident memory per stream: VmRSS at the end of the window minus at idle, / N;
- latency per message (send -> player, p50/p99/max) and the latency the middle
  box adds: the path's percentile minus the direct path's;
- first-picture delay: first video frame sent -> first video frame received;
- messages lost (sent, never received), and how many of those in the first GOP.

The input is made once with ffmpeg and cached in /tmp/rtmprelay-bench-cache/.
Logs and a JSON summary go to bench/results/relay_forward-<time>/ (gitignored).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtmprelay.testing.nginx import NginxRtmp  # noqa: E402
from rtmprelay.testing.peers import find_tool  # noqa: E402
from rtmprelay.testing.ports import free_port  # noqa: E402
from rtmprelay.testing.relay import RelayProcess  # noqa: E402

HERE = Path(__file__).resolve().parent
LOAD_SCRIPT = HERE / "_forward_load.py"
CACHE = Path("/tmp/rtmprelay-bench-cache")
PATHS = ("direct", "rtmprelay", "rtmprelay-clean", "nginx")
#: The floors (bench/_floor_forward.py), by request: how little a Python forwarder on
#: Twisted can cost, measured beside the others (issue 11: "show where the floor is").
FLOOR_PATHS = ("floor-tcp", "floor-rtmp", "floor-core")
ALL_PATHS = PATHS + FLOOR_PATHS
LABELS = {
    "direct": "direct",
    "rtmprelay": "rtmprelay",
    "rtmprelay-clean": "rtmprelay cleaning",
    "nginx": "nginx push",
    "floor-tcp": "floor: Twisted TCP proxy",
    "floor-rtmp": "floor: tight Python re-chunker",
    "floor-core": "floor: rtmprelay's chunk reader + writer",
}
#: The process whose cost is the path's: the middle box.
UNDER_TEST = {"rtmprelay": "rtmprelay", "rtmprelay-clean": "rtmprelay", "nginx": "nginx_push", **{p: "floor" for p in FLOOR_PATHS}}
FLOOR_SCRIPT = HERE / "_floor_forward.py"

INPUT_SECONDS = 60
INPUT_NAME = f"720p30-h264-2400k-aac128k-gop2s-{INPUT_SECONDS}s.flv"


# --- input -------------------------------------------------------------------------------


def make_input() -> Path:
    """720p30 H.264 (x264 veryfast, 2400k, GOP 2 s) + AAC 128k FLV, made once."""
    path = CACHE / INPUT_NAME
    if path.exists() and path.stat().st_size > 1_000_000:
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.flv")
    ffmpeg = find_tool("ffmpeg")
    argv = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        # Film-grain-like noise so x264 needs the whole bitrate, as a camera would.
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30,noise=alls=12:allf=t",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo",
        "-t", str(INPUT_SECONDS),
        "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2400k", "-maxrate", "2500k", "-bufsize", "5000k",
        "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k",
        "-f", "flv", str(partial),
    ]
    print(f"making the input once (about 20 s): {path}", flush=True)
    subprocess.run(argv, check=True, timeout=600, stdin=subprocess.DEVNULL)
    partial.rename(path)
    return path


# --- processes -----------------------------------------------------------------------------


def real_pid(pid: int) -> int:
    """The program's own pid: PeerProcess runs it under coreutils ``timeout``."""
    deadline = time.monotonic() + 5
    while True:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return pid
        if comm != "timeout":
            return pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        if time.monotonic() > deadline:
            return pid
        time.sleep(0.01)


def nginx_pid(nginx: NginxRtmp) -> int:
    """nginx runs with master_process off: one process, the one in its pid file."""
    return int((nginx.workdir / "nginx.pid").read_text().strip())


def run_path(path: str, n: int, args, flv: Path, workdir: Path, tag: str) -> dict:
    """One path, one N: start the processes, run the load, stop everything."""
    workdir.mkdir(parents=True, exist_ok=True)
    names = [f"s{i}" for i in range(n)]
    lifetime = 300 + args.seconds + args.warmup + 2 * n
    sink = NginxRtmp(workdir / "sink", record=False, lifetime=lifetime)
    peers: list = [sink]
    load = None
    relay = None
    try:
        sink.start()
        monitor = {"sink": nginx_pid(sink)}
        if path == "direct":
            entry = f"rtmp://127.0.0.1:{sink.port}/live"
        elif path in ("rtmprelay", "rtmprelay-clean"):
            # Plain forwarding is --no-clean; the cleaning path is the default daemon
            # (cloudflare profile), to show what cleaning costs on top. Forwarding only:
            # RelayProcess writes no HLS unless asked (it used to add --hls, a transcode
            # per stream that the figures then included).
            cleaning = ["--profile", "cloudflare"] if path == "rtmprelay-clean" else ["--no-clean"]
            relay = RelayProcess(
                [*cleaning, "--forward", f"rtmp://127.0.0.1:{sink.port}/live/{{path}}", *args.relay_arg],
                lifetime=lifetime,
                log_dir=workdir / "relay",
            )
            if args.profile_relay:
                # The same service, outside twistd (which exits by re-raising SIGTERM, before any profile is written).
                relay.argv[1:3] = [str(HERE / "_relay_profiled.py"), str(workdir / "relay.prof")]
            peers.append(relay)
            relay.start()
            monitor["rtmprelay"] = real_pid(relay.pid)
            entry = f"rtmp://127.0.0.1:{relay.port}/live"
        elif path in FLOOR_PATHS:
            profile = workdir / "floor.prof" if args.profile_relay else None
            floor = start_floor(path.split("-", 1)[1], sink.port, workdir, profile)
            peers.append(floor)
            monitor["floor"] = floor.pid
            entry = f"rtmp://127.0.0.1:{floor.port}/live"
        else:
            pusher = NginxRtmp(
                workdir / "push", record=False, push=[f"rtmp://127.0.0.1:{sink.port}/live"], lifetime=lifetime
            )
            peers.append(pusher)
            pusher.start()
            monitor["nginx_push"] = nginx_pid(pusher)
            entry = f"rtmp://127.0.0.1:{pusher.port}/live"
        setup_timeout = 20 + 0.2 * n
        config = {
            "flv": str(flv),
            "publish_urls": [f"{entry}/{name}" for name in names],
            "play_host": "127.0.0.1",
            "play_port": sink.port,
            "play_app": "live",
            "play_names": names,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "drain": args.drain,
            "stagger": 2.0 / n,  # spread the keyframes over one GOP
            "monitor": monitor,
            "setup_timeout": setup_timeout,
            "hard_timeout": 2 * setup_timeout + 2.0 + args.warmup + args.seconds + args.drain + 30,
            "result": str(workdir / "load-result.json"),
        }
        config_path = workdir / "load-config.json"
        config_path.write_text(json.dumps(config))
        with open(workdir / "load.log", "wb") as log:
            load = subprocess.Popen(
                [sys.executable, str(LOAD_SCRIPT), str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = load.wait(config["hard_timeout"] + 30)
            except subprocess.TimeoutExpired:
                code = None
        problems = []
        if code != 0:
            problems.append(f"load process exit status {code}; log: {workdir / 'load.log'}")
            problems += (workdir / "load.log").read_text("utf-8", "replace").splitlines()[-10:]
        result = json.loads(Path(config["result"]).read_text()) if Path(config["result"]).exists() else None
        if result is None:
            raise RuntimeError("\n".join(problems) or "load process wrote no result")
        problems += result["errors"]
        if relay is not None:
            problems += relay_problems(relay)
        summary = summarize(path, n, result, monitor)
        summary["problems"] = problems
        summary["tag"] = tag
        if not args.keep_raw:
            Path(config["result"]).unlink()
        return summary
    finally:
        if load is not None and load.poll() is None:
            os.killpg(load.pid, 9)
            load.wait(10)
        for peer in reversed(peers):
            peer.close()
        if relay is not None:
            (workdir / "relay" / "relay.log").write_text(relay.log_text)


class FloorProcess:
    """bench/_floor_forward.py in MODE, proxying to the sink nginx."""

    def __init__(self, mode: str, upstream_port: int, workdir: Path, profile: Path | None = None) -> None:
        self.port = free_port()
        self.log = open(workdir / f"floor-{mode}.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, str(FLOOR_SCRIPT), mode, str(self.port), str(upstream_port), *([str(profile)] if profile else [])],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.pid = self.process.pid

    def wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"floor proxy exited with {self.process.returncode}; log: {self.log.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"floor proxy did not listen on {self.port} within {timeout} s")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


def start_floor(mode: str, upstream_port: int, workdir: Path, profile: Path | None = None) -> FloorProcess:
    floor = FloorProcess(mode, upstream_port, workdir, profile)
    try:
        floor.wait_listening()
    except Exception:
        floor.close()
        raise
    return floor


#: twistd log lines at warn level or above, and unhandled errors: the relay should have none.
RELAY_LOG_ALARMS = ("#warn]", "#error]", "#critical]", "Traceback", "Unhandled Error")


def relay_problems(relay: RelayProcess) -> list[str]:
    """Tracebacks and warnings in the relay's log (it should have none)."""
    lines = relay.log_text.splitlines()
    problems = [line for line in lines if any(word in line for word in RELAY_LOG_ALARMS)]
    if len(problems) > 8:
        problems = problems[:8] + [f"... and {len(problems) - 8} more such lines in the relay log"]
    return [f"rtmprelay log: {line}" for line in problems]


# --- figures ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def summarize(path: str, n: int, result: dict, monitor: dict) -> dict:
    samples = result["samples"]
    start, end, idle = samples.get("steady_start"), samples.get("steady_end"), samples["idle"]
    out: dict = {"path": path, "n": n}
    if start and end:
        window = end["t"] - start["t"]
        out["window_s"] = window
        out["load_cpu_share"] = (end["self_cpu"] - start["self_cpu"]) / window
        out["sink_cpu_share"] = (end["cpu"]["sink"] - start["cpu"]["sink"]) / window
        who = UNDER_TEST.get(path)
        if who:
            cpu = end["cpu"][who] - start["cpu"][who]
            out["cpu_s"] = cpu
            out["cpu_per_stream_min"] = cpu / (n * window / 60)
            out["cpu_share"] = cpu / window
            # The same from /proc/PID/stat (10 ms ticks): a cross-check.
            out["cpu_ticks_per_stream_min"] = (end["cpu_ticks"][who] - start["cpu_ticks"][who]) / (n * window / 60)
            out["rss_idle"] = idle["rss"][who]
            out["rss_end"] = end["rss"][who]
            out["rss_per_stream"] = (end["rss"][who] - idle["rss"][who]) / n
    streams = result["streams"]
    steady = [x for st in streams for x in st["latency_steady"]]
    video = [x for st in streams for x in st["latency_steady_video"]]
    every = [x for st in streams for x in st["latency_all"]]
    ms = 1000.0
    out["messages_steady"] = len(steady)
    for name, values in (("", steady), ("video_", video), ("all_", every)):
        for q, label in ((0.5, "p50"), (0.99, "p99"), (1.0, "max")):
            v = percentile(values, q)
            out[f"{name}lat_{label}"] = None if v is None else v * ms
    delays = [st["first_picture_delay"] for st in streams if st["first_picture_delay"] is not None]
    out["first_picture_med"] = statistics.median(delays) * ms if delays else None
    out["first_picture_max"] = max(delays) * ms if delays else None
    out["streams_without_picture"] = sum(1 for st in streams if st["first_picture_delay"] is None) + (n - len(streams))
    for key in ("sent", "lost", "lost_video", "lost_audio", "lost_headers", "lost_first_gop", "unmatched", "duplicates"):
        out[key] = sum(st[key] for st in streams)
    out["tick_late_p99_ms"] = (result["tick_late_p99"] or 0) * ms
    out["tick_late_max_ms"] = (result["tick_late_max"] or 0) * ms
    return out


def median_of(runs: list[dict], key: str):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def median_row(runs: list[dict], ranges: tuple[str, ...] = ("cpu_per_stream_min",), problems_of=None) -> dict:
    """One table row from a path's repeats: the median of every numeric figure,
    ``<key>_range`` (min, max) for ``ranges``, the repeats, and every problem
    (of ``problems_of``, default ``runs``, which may include failed runs)."""
    keys = {k for r in runs for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    row = {k: median_of(runs, k) for k in keys}
    for k in ranges:
        values = [r[k] for r in runs if r.get(k) is not None]
        row[f"{k}_range"] = (min(values), max(values)) if values else None
    row["problems"] = [p for r in (runs if problems_of is None else problems_of) for p in r.get("problems", [])]
    row["repeats"] = len(runs)
    return row


def combine(runs_by_path: dict[str, list[dict]]) -> dict[str, dict]:
    """Medians over repeats, and the added latency against the direct path."""
    table = {path: median_row(runs, ("cpu_per_stream_min", "lat_p99")) for path, runs in runs_by_path.items()}
    direct = table.get("direct")
    for path, row in table.items():
        for q in ("p50", "p99"):
            if direct and row.get(f"lat_{q}") is not None and direct.get(f"lat_{q}") is not None and path != "direct":
                row[f"added_{q}"] = row[f"lat_{q}"] - direct[f"lat_{q}"]
    nginx = table.get("nginx")
    for name in ("rtmprelay", "rtmprelay-clean", *FLOOR_PATHS):
        relay = table.get(name)
        if relay and nginx and relay.get("cpu_per_stream_min") and nginx.get("cpu_per_stream_min"):
            relay["cpu_ratio"] = relay["cpu_per_stream_min"] / nginx["cpu_per_stream_min"]
    return table


def fmt(value, spec: str = ".2f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def span(pair, spec: str) -> str:
    return "–" if not pair else f"{pair[0]:{spec}}–{pair[1]:{spec}}"


def kib(value) -> str:
    return "–" if value is None else f"{value / 1024:,.0f} KiB"


def mib(value) -> str:
    return "–" if value is None else f"{value / 1048576:.1f} MiB"


def table_rows(tables: dict[int, dict[str, dict]], paths, row) -> str:
    """Markdown rows: ``row(n, path, figures)`` for every N and every path that has figures."""
    return "".join(
        row(n, path, table[path]) + "\n"
        for n, table in tables.items()
        for path in paths
        if table.get(path) and table[path].get("repeats")
    )


def markdown_table(tables: dict[int, dict[str, dict]]) -> str:
    head = (
        "| N | path | CPU s / stream-min | ratio to nginx | RSS / stream (total) | latency p50 / p99 / max ms "
        "| added p50 / p99 ms | first picture med / max ms | lost of sent (first GOP) |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )

    def row(n: int, path: str, r: dict) -> str:
        return (
            f"| {n} | {LABELS[path]} "
            f"| {fmt(r.get('cpu_per_stream_min'), '.3f')} "
            f"| {fmt(r.get('cpu_ratio'), '.2f', 'x')} "
            f"| {kib(r.get('rss_per_stream'))} ({mib(r.get('rss_end'))}) "
            f"| {fmt(r.get('lat_p50'))} / {fmt(r.get('lat_p99'))} / {fmt(r.get('lat_max'), '.1f')} "
            f"| {fmt(r.get('added_p50'), '+.2f')} / {fmt(r.get('added_p99'), '+.2f')} "
            f"| {fmt(r.get('first_picture_med'), '.1f')} / {fmt(r.get('first_picture_max'), '.1f')} "
            f"| {fmt(r.get('lost'), '.0f')} of {fmt(r.get('sent'), '.0f')} ({fmt(r.get('lost_first_gop'), '.0f')}) |"
        )

    return head + table_rows(tables, ALL_PATHS, row)


def side_table(tables: dict[int, dict[str, dict]]) -> str:
    """What the rest of the machine did: is the load generator itself the bottleneck?"""
    head = (
        "| N | path | window s | middle box CPU % | sink nginx CPU % | load process CPU % | pacer late p99 / max ms "
        "| video latency p99 ms | whole-run latency p99 / max ms | range over repeats: CPU s/stream-min; p99 ms |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )

    def row(n: int, path: str, r: dict) -> str:
        share = r.get("cpu_share")
        return (
            f"| {n} | {LABELS[path]} | {fmt(r.get('window_s'), '.1f')} "
            f"| {fmt(None if share is None else share * 100, '.1f')} "
            f"| {fmt(None if r.get('sink_cpu_share') is None else r['sink_cpu_share'] * 100, '.1f')} "
            f"| {fmt(None if r.get('load_cpu_share') is None else r['load_cpu_share'] * 100, '.1f')} "
            f"| {fmt(r.get('tick_late_p99_ms'), '.1f')} / {fmt(r.get('tick_late_max_ms'), '.1f')} "
            f"| {fmt(r.get('video_lat_p99'))} "
            f"| {fmt(r.get('all_lat_p99'), '.1f')} / {fmt(r.get('all_lat_max'), '.1f')} "
            f"| {span(r.get('cpu_per_stream_min_range'), '.3f')}; {span(r.get('lat_p99_range'), '.2f')} |"
        )

    return head + table_rows(tables, ALL_PATHS, row)


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nginx = subprocess.run([find_tool("nginx"), "-v"], capture_output=True, text=True).stderr.strip()
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, Python {platform.python_version()}, {nginx}"


def source_version() -> str:
    """The commit the relay runs from, and whether the tree differs from it."""
    root = HERE.parent
    try:
        def git(*argv: str) -> str:
            return subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()

        rev = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "rtmprelay")
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return f"{rev or '?'}{' + uncommitted changes in rtmprelay/' if dirty else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--streams", default="1,10,50", help="comma-separated stream counts (default 1,10,50)")
    add("--seconds", type=float, default=30.0, help="steady measurement window per run (default 30)")
    add("--repeats", type=int, default=1, help="runs of each path per N; medians are printed (default 1)")
    add("--warmup", type=float, default=3.0, help="seconds from the last stream's start to the window (default 3)")
    add("--drain", type=float, default=2.0, help="seconds to wait for the last messages after the window (default 2)")
    add("--paths", default=",".join(PATHS), help=f"which paths (default {','.join(PATHS)}; also {','.join(FLOOR_PATHS)})")
    add("--out", type=Path, default=None, help="results folder (default bench/results/relay_forward-<time>)")
    parser.add_argument(
        "--profile-relay", action="store_true",
        help="run rtmprelay (and a floor) under cProfile (relay.prof, floor.prof in each run's folder); its CPU figures are then inflated",
    )
    parser.add_argument("--keep-raw", action="store_true", help="keep every message's latency in the results folder")
    parser.add_argument(
        "--relay-arg", action="append", default=[], metavar="ARG",
        help="one more rtmprelay option for both rtmprelay paths, repeatable (e.g. --relay-arg=--gop-cache-bytes=0)",
    )
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.streams.split(",") if x]
    paths = [p for p in args.paths.split(",") if p]
    for p in paths:
        if p not in ALL_PATHS:
            parser.error(f"unknown path {p!r}; choose from {ALL_PATHS}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or HERE / "results" / f"relay_forward-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    flv = make_input()
    version = source_version()
    print(f"rtmprelay: {version}")
    if args.relay_arg:
        print(f"rtmprelay options added: {' '.join(args.relay_arg)}")
    print(f"machine: {machine()}")
    print(f"input: {flv}; results and logs: {out}", flush=True)
    tables: dict[int, dict[str, dict]] = {}
    runs: list[dict] = []
    for n in counts:
        by_path: dict[str, list[dict]] = {p: [] for p in paths}
        for repeat in range(args.repeats):
            order = paths[repeat % len(paths):] + paths[: repeat % len(paths)]  # rotate against drift
            for path in order:
                tag = f"n{n}-r{repeat}-{path}"
                print(f"  N={n} repeat {repeat + 1}/{args.repeats}: {LABELS[path]} ...", end="", flush=True)
                started = time.monotonic()
                try:
                    summary = run_path(path, n, args, flv, out / tag, tag)
                except Exception as error:  # report and go on with the other paths
                    print(f" FAILED: {error}", flush=True)
                    summary = {"path": path, "n": n, "tag": tag, "problems": [f"run failed: {error}"]}
                else:
                    print(
                        f" {time.monotonic() - started:.0f} s; lost {summary['lost']} of {summary['sent']}, "
                        f"p99 {fmt(summary.get('lat_p99'))} ms"
                        + (f", CPU {summary['cpu_per_stream_min']:.3f} s/stream-min" if "cpu_per_stream_min" in summary else ""),
                        flush=True,
                    )
                    for problem in summary["problems"]:
                        print(f"    ! {problem}", flush=True)
                by_path[path].append(summary)
                runs.append(summary)
        tables[n] = combine(by_path)
    print()
    print(f"Forwarding, {args.seconds:g} s steady window, {args.repeats} repeat(s) (medians), {datetime.date.today()}")
    print(f"machine: {machine()}")
    print(f"rtmprelay: {version}")
    if source_version() != version:
        print(f"  ! the tree changed during the run: now {source_version()}")
    print()
    print(markdown_table(tables))
    print(side_table(tables))
    for n, table in tables.items():
        for path, row in table.items():
            for problem in dict.fromkeys(row["problems"]):
                print(f"N={n} {LABELS[path]}: {problem}")
    (out / "summary.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine(), "source": version, "runs": runs, "tables": tables}, indent=1)
    )
    print(f"\nsummary: {out / 'summary.json'}")
    return 0 if all(not r["problems"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
