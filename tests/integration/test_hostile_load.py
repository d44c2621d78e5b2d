"""Hostile load (issue 8): real ffmpeg publishers forward through the relay to nginx-rtmp
while a few hundred hostile connections of every kind try to make it hold resources.

The relay must stay up; every legitimate frame must reach the upstream and decode;
every hostile connection must be closed within its limit, with exactly one log
line naming why; the relay's peak RSS must stay under a stated bound and its
reactor must stay responsive. The limits are shortened (3-4 s instead of 10-30 s)
so that the test takes about a minute; the mechanism is the same. The figures
are written to ``hostile_load.json`` in the test's log folder (docs/security.md
has a run's).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from rtmprelay.testing import flv
from rtmprelay.testing.hostile import Swarm, http_kinds, rtmp_kinds, summarize
from rtmprelay.testing.publishers import make_test_flv

pytestmark = pytest.mark.peers

LIMITS = {"handshake": 3.0, "command": 3.0, "idle_publisher": 3.0, "ping_interval": 4.0, "ping_timeout": 3.0, "request": 3.0}
PER_KIND = 16  # x 19 kinds = 304 hostile connections
PUBLISHERS = 4
PUBLISH_SECONDS = 20
#: The relay idles at ~61 MB; what the hostile connections may pin on top is bounded by
#: the limits (see docs/security.md): the never-reading players' 8 MiB buffers dominate.
RSS_BOUND_MB = 400
#: The stall this guards against took seconds (a 16 MiB AMF message decoded on the
#: reactor: 4.2 s). Worst lags here are 20-60 ms on an idle machine, and a shared
#: 2-core machine running the suite's other work has measured 120 ms: the bound sits
#: far above scheduling noise and far below the fault, so it checks the fault only.
LAG_BOUND_MS = 1000.0


def _relay_pid(relay) -> int:
    """The Python process under the ``timeout`` wrapper RelayProcess runs."""
    wrapper = relay._proc.pid
    children = Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split()
    return int(children[0]) if children else wrapper


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


class Sampler(threading.Thread):
    """RSS and reactor lag of the relay, every half second."""

    def __init__(self, relay, pid: int) -> None:
        super().__init__(daemon=True)
        self.relay, self.pid = relay, pid
        self.rss_mb: list[float] = []
        self.lag_max_ms: list[float] = []
        self.health_errors = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            self.rss_mb.append(_rss_mb(self.pid))
            try:
                with urllib.request.urlopen(self.relay.http_url("/health"), timeout=2) as response:
                    lag = json.load(response)["reactor_lag"]
                self.lag_max_ms.append(lag["max_ms"])
            except Exception:
                self.health_errors += 1


def test_hostile_load_leaves_legitimate_publishers_untouched(
    tmp_path, nginx_rtmp_factory, rtmprelay_factory, ffmpeg_publisher_factory, rtmp_peers
):
    upstream = nginx_rtmp_factory(applications=("live",))
    relay = rtmprelay_factory(
        [
            "--no-clean",
            "--bridge-grace", "0",
            "--forward", f"rtmp://127.0.0.1:{upstream.port}/live/{{path}}",
            "--handshake-timeout", str(LIMITS["handshake"]),
            "--command-timeout", str(LIMITS["command"]),
            "--idle-publisher-timeout", str(LIMITS["idle_publisher"]),
            "--ping-interval", str(LIMITS["ping_interval"]),
            "--ping-timeout", str(LIMITS["ping_timeout"]),
            "--http-request-timeout", str(LIMITS["request"]),
        ]
    )
    pid = _relay_pid(relay)
    source = make_test_flv(tmp_path / "source.flv", seconds=PUBLISH_SECONDS)
    publishers = [
        ffmpeg_publisher_factory(relay.url(f"live/user1/legit{i}"), seconds=None, source_file=source) for i in range(PUBLISHERS)
    ]
    deadline = time.monotonic() + 20
    while not all(f"publish live/user1/legit{i} " in relay.log_text for i in range(PUBLISHERS)):
        assert time.monotonic() < deadline, relay.log_text[-3000:]
        time.sleep(0.1)

    sampler = Sampler(relay, pid)
    sampler.start()
    cpu_before = _cpu_seconds(pid)
    kinds = rtmp_kinds(LIMITS, live_path="live/user1/legit0") + http_kinds(LIMITS)
    swarm = Swarm({"rtmp": relay.port, "http": relay.http_port}).start()
    swarm.launch(kinds, PER_KIND, spread=3.0)
    slowest = max(kind.close_within for kind in kinds)
    all_closed = swarm.wait(timeout=slowest + 10)
    swarm.stop()

    for publisher in publishers:
        publisher.wait()
        publisher.check()
    sampler.stopping.set()
    sampler.join()
    cpu = _cpu_seconds(pid) - cpu_before
    assert relay.running, relay.log_text[-3000:]

    # -- every legitimate frame reached the upstream, and decodes
    for i in range(PUBLISHERS):
        recording = upstream.wait_recording(f"user1/legit{i}")  # application live, stream user1/legit{i}
        runs = flv.assert_payload_subsequence(source, recording)
        for kind in ("video", "audio"):
            assert runs[kind].dropped_head == 0 and runs[kind].dropped_tail == 0, runs
        report = flv.decode_check(recording)
        assert report.clean, report

    # -- every hostile connection was closed within its limit, with one log line naming why.
    # A reset frees a local port at once, so one port may serve several connections in turn:
    # the k-th connection from a port to one server (RTMP or HTTP) owns the k-th close line
    # of that server naming that port. (The same local port may be open to both servers at
    # once, so the two are counted apart.)
    by_name = {kind.name: kind for kind in kinds}
    lines_by_port: dict[tuple[str, int], list[str]] = {}
    for server, port, why in re.findall(r"closing (RTMP|HTTP) connection from 127\.0\.0\.1:(\d+): (.*)", relay.log_text):
        lines_by_port.setdefault((server.lower(), int(port)), []).append(why)
    outcomes_by_port: dict[tuple[str, int], list] = {}
    problems = []
    for outcome in swarm.outcomes:
        kind = by_name[outcome.kind]
        if outcome.error:
            problems.append(f"{outcome.kind}: {outcome.error}")
            continue
        if outcome.closed_at is None:
            problems.append(f"{outcome.kind} (port {outcome.local_port}) was never closed")
            continue
        if outcome.seconds_to_close > kind.close_within:
            problems.append(f"{outcome.kind} closed after {outcome.seconds_to_close:.1f} s (limit {kind.close_within:.1f} s)")
        outcomes_by_port.setdefault((kind.port_kind, outcome.local_port), []).append(outcome)
    legit_ports = set(lines_by_port) - set(outcomes_by_port)
    for port, outcomes in outcomes_by_port.items():
        outcomes.sort(key=lambda o: o.connected_at)
        lines = lines_by_port.get(port, [])
        if len(lines) != len(outcomes):
            problems.append(f"port {port}: {len(outcomes)} hostile connections, close lines {lines!r}")
            continue
        for outcome, why in zip(outcomes, lines):
            if by_name[outcome.kind].log_reason not in why:
                problems.append(f"{outcome.kind} (port {port}): closed with {why!r}, wanted {by_name[outcome.kind].log_reason!r}")
    assert not legit_ports, f"connections closed that were not hostile: {[lines_by_port[p] for p in legit_ports]}"
    assert all_closed and not problems, "\n".join(problems[:40])
    assert relay.unexpected_errors() == ""

    # -- memory and responsiveness
    peak_rss = max(sampler.rss_mb)
    worst_lag = max(sampler.lag_max_ms) if sampler.lag_max_ms else None
    figures = {
        "hostile_connections": len(swarm.outcomes),
        "per_kind": summarize(swarm.outcomes),
        "limits_s": LIMITS,
        "rss_mb": {"start": sampler.rss_mb[0], "peak": round(peak_rss, 1), "end": sampler.rss_mb[-1]},
        "reactor_lag_max_ms": worst_lag,
        "health_errors": sampler.health_errors,
        "relay_cpu_s": round(cpu, 2),
        "publishers": PUBLISHERS,
        "publish_seconds": PUBLISH_SECONDS,
    }
    (rtmp_peers.log_dir / "hostile_load.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    assert peak_rss < RSS_BOUND_MB, figures
    assert worst_lag is not None and worst_lag < LAG_BOUND_MS, figures
    assert sampler.health_errors == 0, figures
