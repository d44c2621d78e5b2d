"""HLS benchmark (issue 4): rtmprelay's HLS against the FFmpeg CLI doing the same job.

    .venv/bin/python bench/hls_transcode.py [--streams 1,2] [--seconds 30] [--repeats 3]

For each N it runs these paths one after another, same N, same input, each on
fresh processes (127.0.0.1, ports chosen at run time); N publishers
``ffmpeg -re -stream_loop -1 -i input.flv -c copy -f flv rtmp://...`` feed each:

    rtmprelay        python -m rtmprelay --hls DIR --hls-mode transcode  (one process, N streams)
    ffmpeg           one ``ffmpeg -listen 1 -i rtmp://... <the old relay's encoder settings> -f hls``
                     per stream: the anchor for rtmprelay
    rtmprelay-copy   --hls-mode copy
    ffmpeg-copy      ``ffmpeg -listen 1 -i rtmp://... -c copy -f hls``: the anchor for rtmprelay-copy
    rtmprelay-cloud  transcode with --cloud pointing at a stub of the cloud in this process: the
                     hls-ready webhook's arrival. --cloud makes every publish forward to the
                     URL the lookup names (there is no "HLS only" answer), so the lookup names a
                     sink nginx-rtmp, and the forwarding is in this path's CPU: it is kept out
                     of the comparison with FFmpeg and runs a shorter window (--cloud-seconds)

It reports, per path:

- CPU seconds per stream-minute: utime + stime of the process under test and
  everything below it (every thread; for FFmpeg the N processes summed) over
  the steady window (``--warmup`` s after the last publisher started,
  ``--seconds`` long), and the ratio rtmprelay / FFmpeg with the same mode;
- RSS per stream: at the end of the window minus before publishing, / N;
- publish -> hls-ready: publisher spawned -> playlist first lists a segment
  (polled every 20 ms), and for rtmprelay-cloud -> hls-ready webhook received;
- glass -> playlist: for each segment listed in the window, the time it was
  first listed minus the time the publisher sent its first frame, and its last
  frame. The publisher sends media time t at ``pace_start + t`` (``-re``;
  ``pace_start`` from its -progress reports); a segment's media time is its
  first video PTS minus the stream's first segment's;
- rtmprelay only: reactor lag from /health at the end of the window, and each
  stream's HLS queue counters (video frames dropped because the encoder fell
  behind) from /api/streams.

The input is relay_forward.py's (made once with ffmpeg, cached in
/tmp/rtmprelay-bench-cache/). Logs, sample segments and a JSON summary go to
bench/results/hls_transcode-<time>/ (gitignored).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hls_watch import (  # noqa: E402
    CloudStub,
    PlaylistWatcher,
    Publisher,
    cpu_seconds,
    describe_segment,
    rss_bytes,
    threads_of,
    wait_listening,
)
from relay_forward import (  # noqa: E402
    fmt,
    machine,
    make_input,
    median_row,
    mib,
    table_rows,
    percentile,
    real_pid,
    relay_problems,
    source_version,
)

from rtmprelay.testing.nginx import NginxRtmp  # noqa: E402
from rtmprelay.testing.peers import PeerProcess, find_tool  # noqa: E402
from rtmprelay.testing.ports import free_port  # noqa: E402
from rtmprelay.testing.relay import RelayProcess  # noqa: E402

HERE = Path(__file__).resolve().parent
PATHS = ("rtmprelay", "ffmpeg", "rtmprelay-copy", "ffmpeg-copy", "rtmprelay-cloud")
#: Each rtmprelay path and the FFmpeg path it is compared with.
ANCHOR = {"rtmprelay": "ffmpeg", "rtmprelay-copy": "ffmpeg-copy", "rtmprelay-cloud": "ffmpeg"}
USER = "bench"
FRAME_S = 1 / 30
PTS_WRAP = 1 << 33

#: The old relay's per-stream encoder settings, as FFmpeg CLI options (rtmprelay's defaults).
TRANSCODE_ARGS = [
    "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "baseline", "-level", "3.1",
    "-r", "30", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
    "-b:v", "2M", "-maxrate", "2.5M", "-bufsize", "4M", "-pix_fmt", "yuv420p",
    "-c:a", "aac", "-ar", "48000", "-ac", "2", "-b:a", "128k",
]
COPY_ARGS = ["-c", "copy"]
HLS_ARGS = ["-f", "hls", "-hls_time", "2", "-hls_list_size", "5", "-hls_flags", "delete_segments"]


def tree_digest() -> str:
    """A digest of the relay's source as it is on disk (committed or not): did it change during the run?"""
    digest = hashlib.sha256()
    for file in sorted((HERE.parent / "rtmprelay").rglob("*.py")):
        digest.update(file.relative_to(HERE.parent).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:12]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def sleep_until(due: float, check=None) -> None:
    while True:
        left = due - time.monotonic()
        if left <= 0:
            return
        if check is not None:
            check()
        time.sleep(min(left, 0.25))


class RunFailed(RuntimeError):
    pass


def run_path(path: str, n: int, args, flv: Path, workdir: Path, cloud: CloudStub) -> dict:
    """One path, one N: start the server(s), publish, measure, stop everything."""
    workdir.mkdir(parents=True, exist_ok=True)
    names = [f"s{i}" for i in range(n)]
    hls_dir = workdir / "hls"
    seconds = min(args.seconds, args.cloud_seconds) if path == "rtmprelay-cloud" else args.seconds
    lifetime = 120 + seconds + args.warmup + 2 * n
    ffmpeg = find_tool("ffmpeg")
    peers: list = []
    publishers: list[Publisher] = []
    watcher = None
    relay = None
    problems: list[str] = []
    out: dict = {"path": path, "n": n}
    try:
        if path.startswith("rtmprelay"):
            extra = []
            if path == "rtmprelay-cloud":
                sink = NginxRtmp(workdir / "sink", record=False, lifetime=lifetime)
                peers.append(sink)
                sink.start()
                cloud.reset(f"rtmp://127.0.0.1:{sink.port}/live/{{streamId}}")
                extra = ["--cloud", cloud.url]
            mode = "copy" if path == "rtmprelay-copy" else "transcode"
            # MPEG-TS, as the ffmpeg anchor writes: the daemon's default (fMP4 with LL-HLS parts)
            # would compare a different output
            relay = RelayProcess(
                ["--hls", str(hls_dir), "--hls-mode", mode, "--hls-segment-type", "mpegts", *extra],
                lifetime=lifetime,
                log_dir=workdir / "relay",
            )
            peers.append(relay)
            relay.start()
            monitor = [real_pid(relay.pid)]
            urls = [relay.url(f"live/{USER}/{name}") for name in names]
        else:
            settings = COPY_ARGS if path == "ffmpeg-copy" else TRANSCODE_ARGS
            urls, monitor = [], []
            for name in names:
                port = free_port()
                folder = hls_dir / USER / name
                folder.mkdir(parents=True, exist_ok=True)
                url = f"rtmp://127.0.0.1:{port}/live/{name}"
                anchor = PeerProcess(
                    [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
                     "-listen", "1", "-i", url, *settings, *HLS_ARGS, str(folder / "index.m3u8")],
                    timeout=lifetime,
                    log_dir=workdir / "ffmpeg",
                )
                anchor.name = f"ffmpeg-{name}"
                peers.append(anchor)
                anchor.start()
                # Never connect to see whether it listens: -listen 1 takes the first connection as its publisher.
                wait_listening(port, 10, alive=lambda anchor=anchor: anchor.running)
                monitor.append(real_pid(anchor.pid))
                urls.append(url)
        playlists = {name: hls_dir / USER / name / "index.m3u8" for name in names}
        time.sleep(0.5)
        idle_rss = rss_bytes(monitor)
        watcher = PlaylistWatcher(playlists, workdir / "samples")
        watcher.start()

        def check() -> None:
            for peer in peers:
                if not peer.running:
                    raise RunFailed(f"{peer.name} exited early: {peer.describe(8)}")
            for name, publisher in zip(names, publishers):
                if not publisher.running:
                    tail = publisher.log_path.read_text("utf-8", "replace").splitlines()[-5:]
                    raise RunFailed(f"publisher of {name} exited early: {' | '.join(tail)}")

        stagger = 2.0 / n  # spread the keyframes over one GOP
        first = time.monotonic()
        for i, (name, url) in enumerate(zip(names, urls)):
            sleep_until(first + i * stagger)
            publisher = Publisher(ffmpeg, flv, url, workdir / "publishers" / f"{name}.log")
            publisher.start()
            publishers.append(publisher)
        steady_start = publishers[-1].spawned + args.warmup
        sleep_until(steady_start, check)
        feeders = [publisher.proc.pid for publisher in publishers]
        cpu0, t0, feed0 = cpu_seconds(monitor), time.monotonic(), cpu_seconds(feeders)
        sleep_until(t0 + seconds, check)
        cpu1, t1, feed1 = cpu_seconds(monitor), time.monotonic(), cpu_seconds(feeders)
        rss_end = rss_bytes(monitor)
        out["threads"] = threads_of(monitor)
        if relay is not None:
            try:
                out["health"] = get_json(relay.http_url("/health"))
                out["streams_api"] = get_json(relay.http_url("/api/streams"))
            except OSError as error:
                problems.append(f"relay HTTP: {error}")
        check()
    finally:
        for publisher in publishers:
            publisher.stop()
        if watcher is not None:
            watcher.stop()
        for peer in reversed(peers):
            peer.close()
    window = t1 - t0
    out.update(
        window_s=window,
        cpu_s=cpu1 - cpu0,
        cpu_share=(cpu1 - cpu0) / window,
        cpu_per_stream_min=(cpu1 - cpu0) / (n * window / 60),
        publishers_cpu_share=(feed1 - feed0) / window,
        rss_idle=idle_rss,
        rss_end=rss_end,
        rss_per_stream=(rss_end - idle_rss) / n,
    )
    out.update(segment_figures(path, names, publishers, watcher, cloud, t0, t1))
    problems += out.pop("segment_problems")
    problems += watcher.errors[:5]
    if relay is not None:
        problems += relay_problems(relay)
        out.update(relay_figures(out.pop("health", None), out.pop("streams_api", None)))
    out["problems"] = problems
    return out


def segment_figures(path, names, publishers, watcher, cloud, t0: float, t1: float) -> dict:
    """hls-ready per stream, glass -> playlist latency per segment listed in [t0, t1], output rate."""
    ready, webhook, first_lat, last_lat, behind, started = [], [], [], [], [], []
    size = duration = 0.0
    segments_in_window = 0
    problems = []
    for name, publisher in zip(names, publishers):
        segments = watcher.segments[name]
        if not segments:
            problems.append(f"{name}: no segment listed")
            continue
        ready.append(segments[0]["listed"] - publisher.spawned)
        if path == "rtmprelay-cloud":
            got = cloud.first("hls-ready", name)
            if got is None:
                problems.append(f"{name}: no hls-ready webhook")
            else:
                webhook.append(got - publisher.spawned)
        origin = publisher.pace_start()
        if origin is not None:
            started.append(origin - publisher.spawned)
        base = segments[0]["pts"]
        lagging = publisher.behind_max(t0, t1)
        if lagging is not None:
            behind.append(lagging)
        if origin is None or base is None:
            problems.append(f"{name}: no pace start or no PTS in the first segment")
            continue
        for segment in segments:
            if not t0 <= segment["listed"] <= t1:
                continue
            if segment["pts"] is None:
                problems.append(f"{name}: no video PTS in {segment['uri']}")
                continue
            media = ((segment["pts"] - base) % PTS_WRAP) / 90000
            first_lat.append(segment["listed"] - (origin + media))
            last_lat.append(segment["listed"] - (origin + media + segment["duration"] - FRAME_S))
            size += segment["size"] or 0
            duration += segment["duration"]
            segments_in_window += 1
    out = {
        "hls_ready": ready,
        "hls_ready_med": statistics.median(ready) if ready else None,
        "hls_ready_max": max(ready) if ready else None,
        "webhook": webhook,
        "webhook_med": statistics.median(webhook) if webhook else None,
        "webhook_max": max(webhook) if webhook else None,
        "segments_in_window": segments_in_window,
        "segment_s_mean": duration / segments_in_window if segments_in_window else None,
        "out_kbps": size * 8 / duration / 1000 if duration else None,
        "publisher_behind_max": max(behind) if behind else None,
        # Publisher spawned -> media time 0 sent (ffmpeg start-up, RTMP connect and publish).
        "publisher_start_med": statistics.median(started) if started else None,
        "watcher_late_polls": watcher.late_polls,
        "segment_problems": problems,
    }
    for label, values in (("first", first_lat), ("last", last_lat)):
        out[f"glass_{label}_p50"] = percentile(values, 0.5)
        out[f"glass_{label}_max"] = percentile(values, 1.0)
    return out


def relay_figures(health: dict | None, streams: list | None) -> dict:
    out: dict = {}
    lag = (health or {}).get("reactor_lag")
    if lag:
        out.update({f"lag_{k}": v for k, v in lag.items()})
    totals = {"video_dropped": 0, "audio_dropped": 0, "max_frames_queued": 0, "errors": 0,
              "frames_repeated": 0, "frames_dropped": 0}
    for stream in streams or []:
        hls = stream.get("hls") or {}
        queue = hls.get("queue") or {}
        transcoder = hls.get("transcoder") or {}
        for key in ("video_dropped", "audio_dropped", "errors"):
            totals[key] += queue.get(key, 0)
        totals["max_frames_queued"] = max(totals["max_frames_queued"], queue.get("max_frames_queued", 0))
        for key in ("frames_repeated", "frames_dropped"):
            totals[key] += transcoder.get(key, 0) if isinstance(transcoder, dict) else 0
    out.update({f"hls_{k}": v for k, v in totals.items()})
    out["hls_streams"] = len(streams or [])
    return out


# --- tables ---------------------------------------------------------------------------------


def combine(runs_by_path: dict[str, list[dict]]) -> dict[str, dict]:
    table = {}
    for path, runs in runs_by_path.items():
        ok = [r for r in runs if "cpu_per_stream_min" in r]  # failed runs count only for their problems
        table[path] = median_row(ok, problems_of=runs)
    for path, anchor in ANCHOR.items():
        mine, theirs = table.get(path), table.get(anchor)
        if mine and theirs and mine.get("cpu_per_stream_min") and theirs.get("cpu_per_stream_min"):
            mine["cpu_ratio"] = mine["cpu_per_stream_min"] / theirs["cpu_per_stream_min"]
            mine["rss_ratio"] = (
                mine["rss_per_stream"] / theirs["rss_per_stream"] if theirs.get("rss_per_stream") else None
            )
    return table


def pair(row: dict, a: str, b: str, spec: str = ".2f") -> str:
    return f"{fmt(row.get(a), spec)} / {fmt(row.get(b), spec)}"


def main_table(tables: dict[int, dict[str, dict]]) -> str:
    head = (
        "| N | path | CPU s / stream-min | ratio to FFmpeg | CPU % of a core | RSS / stream (total) "
        "| publish → hls-ready med / max s | glass → playlist, first frame p50 / max s | last frame p50 / max s "
        "| output kbit/s per stream |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )

    def row(n: int, path: str, r: dict) -> str:
        share = r.get("cpu_share")
        ready = pair(r, "hls_ready_med", "hls_ready_max")
        if r.get("webhook_med") is not None:
            ready += f" (webhook {pair(r, 'webhook_med', 'webhook_max')})"
        return (
            f"| {n} | {path} | {fmt(r.get('cpu_per_stream_min'), '.2f')} "
            f"| {fmt(r.get('cpu_ratio'), '.2f', 'x')} "
            f"| {fmt(None if share is None else share * 100, '.0f')} "
            f"| {mib(r.get('rss_per_stream'))} ({mib(r.get('rss_end'))}) "
            f"| {ready} "
            f"| {pair(r, 'glass_first_p50', 'glass_first_max')} "
            f"| {pair(r, 'glass_last_p50', 'glass_last_max')} "
            f"| {fmt(r.get('out_kbps'), '.0f')} |"
        )

    return head + table_rows(tables, PATHS, row)


def side_table(tables: dict[int, dict[str, dict]]) -> str:
    head = (
        "| N | path | window s | segments in window (mean s) | threads | publishers CPU % "
        "| publisher start med s / behind max s "
        "| reactor lag p50 / p99 / max ms | HLS video dropped / audio dropped / max queued / errors "
        "| frames repeated / dropped | CPU s/stream-min range |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )

    def row(n: int, path: str, r: dict) -> str:
        relay = path.startswith("rtmprelay")
        cpu_range = r.get("cpu_per_stream_min_range")
        return (
            f"| {n} | {path} | {fmt(r.get('window_s'), '.1f')} "
            f"| {fmt(r.get('segments_in_window'), '.0f')} ({fmt(r.get('segment_s_mean'), '.2f')}) "
            f"| {fmt(r.get('threads'), '.0f')} "
            f"| {fmt(None if r.get('publishers_cpu_share') is None else r['publishers_cpu_share'] * 100, '.1f')} "
            f"| {fmt(r.get('publisher_start_med'), '.3f')} / {fmt(r.get('publisher_behind_max'), '.2f')} "
            + (
                f"| {fmt(r.get('lag_p50_ms'), '.1f')} / {fmt(r.get('lag_p99_ms'), '.1f')} / {fmt(r.get('lag_max_ms'), '.1f')} "
                f"| {fmt(r.get('hls_video_dropped'), '.0f')} / {fmt(r.get('hls_audio_dropped'), '.0f')} / "
                f"{fmt(r.get('hls_max_frames_queued'), '.0f')} / {fmt(r.get('hls_errors'), '.0f')} "
                f"| {fmt(r.get('hls_frames_repeated'), '.0f')} / {fmt(r.get('hls_frames_dropped'), '.0f')} "
                if relay
                else "| – | – | – "
            )
            + f"| {'–' if not cpu_range else f'{cpu_range[0]:.2f}–{cpu_range[1]:.2f}'} |"
        )

    return head + table_rows(tables, PATHS, row)


def x264_options(text: str | None) -> dict[str, str]:
    if not text or "options:" not in text:
        return {}
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in text.split("options:", 1)[1].split())


def outputs_table(described: dict[str, list[dict]]) -> str:
    """What each path wrote: the third segment of stream s0 (and the first, for x264's options)."""
    head = (
        "| path | video | size, fps (frame steps s) | keyframes / frames | segment s | video kbit/s | audio |\n"
        "|---|---|---|---:|---:|---:|---|\n"
    )
    rows, notes = [], []
    for path in PATHS:
        samples = described.get(path)
        if not samples:
            continue
        steady = samples[-1]
        v, a = steady.get("video") or {}, steady.get("audio") or {}
        kbps = v.get("bytes", 0) * 8 / v["duration_s"] / 1000 if v.get("duration_s") else None
        rows.append(
            f"| {path} | {v.get('codec')} {v.get('profile')} level {v.get('level')} {v.get('pix_fmt')} "
            f"| {v.get('size')}, {v.get('r_frame_rate')} ({', '.join(str(s) for s in v.get('frame_steps_s', []))}) "
            f"| {v.get('keyframes')} / {v.get('packets')} | {fmt(v.get('duration_s'), '.3f')} | {fmt(kbps, '.0f')} "
            f"| {a.get('codec')} {a.get('profile')} {a.get('sample_rate')} Hz {a.get('channels')} ch |"
        )
    mine = x264_options(next((s.get("x264") for s in described.get("rtmprelay", []) if s.get("x264")), None))
    theirs = x264_options(next((s.get("x264") for s in described.get("ffmpeg", []) if s.get("x264")), None))
    if mine and theirs:
        differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        notes.append(
            "x264 options that differ (rtmprelay vs ffmpeg): "
            + (", ".join(f"{k}={mine.get(k, '∅')} vs {theirs.get(k, '∅')}" for k in differ) or "none")
        )
    versions = {
        path: next((s["x264"].split(" - ")[1] for s in described.get(path, []) if s.get("x264")), None)
        for path in ("rtmprelay", "ffmpeg")
    }
    if any(versions.values()):
        notes.append(f"x264 builds: {versions}")
    return head + "\n".join(rows) + "\n" + "".join(f"\n{note}\n" for note in notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--streams", default="1,2", help="comma-separated stream counts (default 1,2)")
    add("--seconds", type=float, default=30.0, help="steady measurement window per run (default 30)")
    add("--cloud-seconds", type=float, default=10.0, help="window of the rtmprelay-cloud path (default 10)")
    add("--repeats", type=int, default=3, help="runs of each path per N; medians are printed (default 3)")
    add("--warmup", type=float, default=6.0, help="seconds from the last publisher's start to the window (default 6)")
    add("--paths", default=",".join(PATHS), help=f"which paths (default {','.join(PATHS)})")
    add("--out", type=Path, default=None, help="results folder (default bench/results/hls_transcode-<time>)")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.streams.split(",") if x]
    paths = [p for p in args.paths.split(",") if p]
    for p in paths:
        if p not in PATHS:
            parser.error(f"unknown path {p!r}; choose from {PATHS}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or HERE / "results" / f"hls_transcode-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    flv = make_input()
    version = source_version()
    digest = tree_digest()
    print(f"rtmprelay: {version}, source digest {digest}")
    print(f"machine: {machine()}")
    print(f"input: {flv}; results and logs: {out}", flush=True)
    cloud = CloudStub()
    tables: dict[int, dict[str, dict]] = {}
    runs: list[dict] = []
    samples: dict[str, Path] = {}
    started_all = time.monotonic()
    try:
        for n in counts:
            by_path: dict[str, list[dict]] = {p: [] for p in paths}
            for repeat in range(args.repeats):
                order = paths[repeat % len(paths):] + paths[: repeat % len(paths)]  # rotate against drift
                for path in order:
                    tag = f"n{n}-r{repeat}-{path}"
                    print(f"  N={n} repeat {repeat + 1}/{args.repeats}: {path} ...", end="", flush=True)
                    started = time.monotonic()
                    try:
                        summary = run_path(path, n, args, flv, out / tag, cloud)
                    except Exception as error:  # report and go on with the other paths
                        print(f" FAILED: {error}", flush=True)
                        summary = {"path": path, "n": n, "problems": [f"run failed: {error}"]}
                    else:
                        samples.setdefault(path, out / tag / "samples")
                        print(
                            f" {time.monotonic() - started:.0f} s; CPU {summary['cpu_per_stream_min']:.2f} s/stream-min, "
                            f"hls-ready {fmt(summary.get('hls_ready_med'))} s, "
                            f"glass first/last p50 {fmt(summary.get('glass_first_p50'))}/{fmt(summary.get('glass_last_p50'))} s",
                            flush=True,
                        )
                        for problem in summary["problems"]:
                            print(f"    ! {problem}", flush=True)
                    summary["tag"] = tag
                    summary["source_digest"] = tree_digest()
                    by_path[path].append(summary)
                    runs.append(summary)
            tables[n] = combine(by_path)
    finally:
        cloud.close()
    ffprobe = find_tool("ffprobe")
    described = {
        path: [describe_segment(ffprobe, f) for f in sorted(folder.glob("s0-seg*.ts"))]
        for path, folder in samples.items()
    }
    print()
    print(
        f"HLS, {args.seconds:g} s steady window, {args.repeats} repeat(s) (medians), {datetime.date.today()}, "
        f"{(time.monotonic() - started_all) / 60:.1f} min in all"
    )
    print(f"machine: {machine()}")
    print(f"rtmprelay: {version}, source digest {digest}")
    if source_version() != version or tree_digest() != digest:
        print(f"  ! the relay's source changed during the run: now {source_version()}, digest {tree_digest()}")
    print()
    print(main_table(tables))
    print(side_table(tables))
    print("What the paths wrote (stream s0 of the first run at the smallest N, its third segment):\n")
    print(outputs_table(described))
    for n, table in tables.items():
        for path, row in table.items():
            for problem in dict.fromkeys(row["problems"]):
                print(f"N={n} {path}: {problem}")
    (out / "summary.json").write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine(), "source": version, "source_digest": digest,
             "runs": runs, "tables": tables, "outputs": described},
            indent=1,
        )
    )
    print(f"\nsummary: {out / 'summary.json'}")
    return 0 if all(not r["problems"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
