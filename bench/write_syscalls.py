"""Write path (issue 11): syscalls per forwarded message, counted with strace.

    .venv/bin/python bench/write_syscalls.py [--players 4] [--seconds 10] [--case upstream,players]
    .venv/bin/python bench/write_syscalls.py --no-strace --repeats 3   # the relay's CPU per message instead

Runs a real relay (``python -m rtmprelay --no-hls --no-clean``), attaches
``strace -f -yy`` to it, and has ffmpeg publish a ``--seconds`` clip of the
forwarding bench's 720p30 H.264 + AAC input (``-re -c copy``) once:

    upstream  ffmpeg -> rtmprelay --forward -> nginx-rtmp (the upstream forwarder's connection)
    players   ffmpeg -> rtmprelay <- N ffmpeg players   (server connections of RTMP players)

The clip's audio and video tags are counted from the FLV, so the figures are
exact per message: send syscalls (sendto/sendmsg/write/writev) per message on
each outgoing connection, the bytes per send, and the epoll_ctl and epoll_wait
calls of the whole process per message. Each connection is told apart by the
ports strace prints (``-yy``). With ``--no-strace`` nothing is traced and the
relay's CPU time (all threads, /proc/PID/task/*/schedstat) while the clip is published is
reported instead, per message, median over ``--repeats``. The trace and a JSON
summary go to bench/results/write_syscalls-<time>/ (gitignored).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.relay_forward import make_input, real_pid  # noqa: E402
from rtmprelay.testing.nginx import NginxRtmp  # noqa: E402
from rtmprelay.testing.peers import find_tool  # noqa: E402
from rtmprelay.testing.relay import RelayProcess  # noqa: E402

HERE = Path(__file__).resolve().parent
SEND_CALLS = ("sendto", "sendmsg", "write", "writev")
TRACED = (*SEND_CALLS, "recvfrom", "epoll_ctl", "epoll_wait")
# 1234 sendto(7<TCP:[127.0.0.1:1935->127.0.0.1:40000]>, ""..., 4113, 0, NULL, 0) = 4113
_LINE = re.compile(r"^\d+\s+(\w+)\((\d+)(?:<(\w+):\[([^\]]*)\]>)?.*\)\s+=\s+(-?\d+)")


def make_clip(source: Path, seconds: float, out: Path) -> Path:
    subprocess.run(
        [find_tool("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
         "-t", str(seconds), "-c", "copy", str(out)],
        check=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    return out


def count_tags(flv: Path) -> Counter:
    """Audio (8), video (9) and data (18) tags in an FLV file."""
    data = flv.read_bytes()
    pos = int.from_bytes(data[5:9], "big") + 4
    tags: Counter = Counter()
    while pos + 11 <= len(data):
        tag_type = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        tags[tag_type] += 1
        pos += 11 + size + 4
    return tags


def parse_trace(path: Path) -> dict:
    """Calls and bytes per (syscall, connection); connections named 'local->remote'."""
    calls: Counter = Counter()
    sent: dict[str, list[int]] = defaultdict(list)
    received: Counter = Counter()
    for line in path.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        name, _fd, proto, ends, result = match.groups()
        calls[name] += 1
        if proto == "TCP" and ends:
            if name in SEND_CALLS and int(result) > 0:
                sent[ends].append(int(result))
            elif name == "recvfrom" and int(result) > 0:
                received[ends] += int(result)
    return {"calls": calls, "sent": sent, "received": received}


def cpu_seconds(pid: int) -> float:
    """CPU time of all the process's threads, from the scheduler's nanosecond counters."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except OSError:
            pass  # a thread that ended
    return total / 1e9


def run_case(case: str, args, clip: Path, tags: Counter, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    ffmpeg = find_tool("ffmpeg")
    peers: list = []
    players: list[subprocess.Popen] = []
    strace = None
    try:
        relay_args = ["--no-clean"]
        sink = None
        if case == "upstream":
            sink = NginxRtmp(workdir / "sink", record=False, lifetime=300)
            peers.append(sink)
            sink.start()
            relay_args += ["--forward", f"rtmp://127.0.0.1:{sink.port}/live/{{path}}"]
        relay = RelayProcess(relay_args, lifetime=300, log_dir=workdir / "relay")
        peers.append(relay)
        relay.start()
        pid = real_pid(relay.pid)
        trace = workdir / "strace.txt"
        if args.strace:
            strace = subprocess.Popen(
                ["strace", "-f", "-qq", "-yy", "-s", "0", "-e", "trace=" + ",".join(TRACED), "-o", str(trace), "-p", str(pid)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(workdir / "strace.log", "wb"),
            )
            time.sleep(1.0)  # strace attached
        url = f"rtmp://127.0.0.1:{relay.port}/live/s0"
        if case == "players":
            for i in range(args.players):
                players.append(subprocess.Popen(
                    [ffmpeg, "-hide_banner", "-loglevel", "error", "-i", url, "-c", "copy", "-f", "null", "-"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(workdir / f"player{i}.log", "wb"),
                ))
            time.sleep(1.5)  # subscribed before the publish, so every player gets every message
        cpu_before = cpu_seconds(pid)
        subprocess.run(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(clip), "-c", "copy", "-f", "flv", url],
            check=True, timeout=args.seconds + 60, stdin=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # the last messages out
        cpu = cpu_seconds(pid) - cpu_before
        if strace is None:
            parsed = {"calls": Counter(), "sent": {}, "received": Counter()}
        else:
            strace.send_signal(signal.SIGINT)
            strace.wait(10)
            strace = None
            parsed = parse_trace(trace)
    finally:
        if strace is not None:
            strace.send_signal(signal.SIGINT)
            strace.wait(10)
        for player in players:
            if player.poll() is None:
                player.terminate()
                player.wait(10)
        for peer in reversed(peers):
            peer.close()

    messages = tags[8] + tags[9]
    relay_port = relay.port
    connections = []
    for ends, sizes in parsed["sent"].items():
        local, remote = ends.split("->")
        if sink is not None and remote.endswith(f":{sink.port}"):
            role = "upstream"
        elif local.endswith(f":{relay_port}"):
            role = "publisher" if parsed["received"][ends] > sum(sizes) else "player"
        else:
            role = "other"
        connections.append({
            "role": role, "ends": ends, "sends": len(sizes), "bytes": sum(sizes),
            "sends_per_message": len(sizes) / messages, "median_send_bytes": statistics.median(sizes),
        })
    calls = parsed["calls"]
    return {
        "case": case, "players": args.players if case == "players" else 0, "messages": messages,
        "video": tags[9], "audio": tags[8], "calls": dict(calls), "cpu_us_per_message": cpu / messages * 1e6,
        "per_message": {name: calls[name] / messages for name in TRACED},
        "connections": sorted(connections, key=lambda c: c["role"]),
    }


def report(result: dict) -> str:
    if not result["calls"]:
        return (
            f"case {result['case']}" + (f", {result['players']} players" if result["players"] else "")
            + f": relay CPU {result['cpu_us_per_message']:.1f} us per message ({result['messages']} messages)"
        )
    lines = [
        f"case {result['case']}: {result['messages']} messages ({result['video']} video, {result['audio']} audio)"
        + (f", {result['players']} players" if result["players"] else ""),
        "  process, per message: " + ", ".join(f"{k} {v:.2f}" for k, v in result["per_message"].items() if v),
    ]
    for c in result["connections"]:
        if c["role"] in ("upstream", "player"):
            lines.append(
                f"  {c['role']:8} {c['ends']}: {c['sends']} sends, {c['sends_per_message']:.2f} per message, "
                f"median {c['median_send_bytes']:.0f} B"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, default=4, help="RTMP players in the players case (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    parser.add_argument("--case", default="upstream,players", help="upstream, players or both (default)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-strace", dest="strace", action="store_false", help="measure the relay's CPU instead")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each case (default 1)")
    args = parser.parse_args(argv)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or HERE / "results" / f"write_syscalls-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    clip = make_clip(make_input(), args.seconds, out / "clip.flv")
    tags = count_tags(clip)
    results = []
    for repeat in range(args.repeats):
        for case in args.case.split(","):
            result = run_case(case, args, clip, tags, out / f"{case}-{repeat}")
            results.append(result)
            print(report(result), flush=True)
    if not args.strace:
        for case in args.case.split(","):
            runs = [r["cpu_us_per_message"] for r in results if r["case"] == case]
            print(f"{case}: median relay CPU {statistics.median(runs):.1f} us per message "
                  f"(runs {', '.join(f'{x:.1f}' for x in runs)})")
    (out / "summary.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
