"""The load side of bench/relay_forward.py: N publishers and N players in one process.

    python bench/_forward_load.py CONFIG.json

Run by ``relay_forward.py``, not by hand. It

1. samples the CPU time and RSS of the processes under test (``monitor``) at idle;
2. connects one player per stream to the sink nginx (``play`` waits for the
   stream there, as nginx-rtmp lets it) and waits until each has Play.Start;
3. connects one publisher per stream (rtmprelay's ``ClientSession``) to the
   path's entry point, publisher ``i`` ``i * stagger`` s after the first so
   the keyframes are spread over a GOP; each sends its metadata, sequence
   headers and first keyframe the moment it gets Publish.Start, as an encoder
   does, so whatever the middle box does while it connects upstream counts;
4. sends the FLV's tags paced by their timestamps, all streams from one 10 ms
   tick;
5. samples CPU at the start and end of the steady window (``warmup`` s after
   the last stream started, ``seconds`` long) and RSS at its end;
6. waits ``drain`` s, then writes what every player received, and when, as JSON.

A message is known by (type, timestamp, length) in the input, which is unique
there (checked); latency is receive time minus send time on one monotonic
clock, taken once per tick (send: after the tick queued its bytes, just before
the reactor writes them) and once per read (receive).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from array import array
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtmprelay.rtmp import amf0  # noqa: E402
from rtmprelay.rtmp import messages as m  # noqa: E402
from rtmprelay.rtmp import session as s  # noqa: E402
from rtmprelay.rtmp.connection import Connection, HandshakeCompleted, MessageReceived, Role  # noqa: E402
from rtmprelay.testing.flv import read_flv_tags  # noqa: E402

AUDIO, VIDEO, SCRIPT = 8, 9, 18
TICK = 0.010
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- what the processes under test cost ------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time of the whole process (every thread, user + system), in seconds.

    The scheduler's nanosecond count per thread (/proc/PID/task/*/schedstat)
    where the kernel has it; otherwise utime + stime from /proc/PID/stat, in
    clock ticks (10 ms), too coarse for one stream over a short window.
    """
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        return cpu_ticks_seconds(pid)


def cpu_ticks_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def sample(monitor: dict[str, int]) -> dict:
    now = time.monotonic()
    return {
        "t": now,
        "cpu": {name: cpu_seconds(pid) for name, pid in monitor.items()},
        "cpu_ticks": {name: cpu_ticks_seconds(pid) for name, pid in monitor.items()},
        "rss": {name: rss_bytes(pid) for name, pid in monitor.items()},
        "self_cpu": sum(os.times()[:2]),
    }


# --- the input ----------------------------------------------------------------------


def is_header(tag_type: int, payload: bytes) -> bool:
    if tag_type == VIDEO:
        return len(payload) >= 2 and payload[0] & 0x0F == 7 and payload[1] != 1
    if tag_type == AUDIO:
        return len(payload) >= 2 and payload[0] >> 4 == 10 and payload[1] == 0
    return False


class Schedule:
    """The tags to send, looped as often as ``length`` seconds need (headers once)."""

    def __init__(self, flv: str, length: float) -> None:
        tags = read_flv_tags(flv)
        self.metadata = None
        media = []
        for tag in tags:
            if tag.tag_type == SCRIPT and self.metadata is None:
                values = amf0.decode_all(tag.payload)
                if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
                    self.metadata = dict(values[1])
            elif tag.tag_type in (AUDIO, VIDEO):
                media.append((tag.tag_type, tag.timestamp, tag.payload))
        span = max(ts for _t, ts, _p in media) + 34  # one frame past the last tag
        self.type_ids: list[int] = []
        self.timestamps: list[int] = []
        self.payloads: list[bytes] = []
        self.due = array("d")  # seconds from the stream's start
        self.header = bytearray()  # 1 for sequence headers
        self.picture = bytearray()  # 1 for video frames that are pictures
        self.keyframe = bytearray()
        loop = 0
        while loop * span / 1000 < length:
            for type_id, ts, payload in media:
                header = is_header(type_id, payload)
                if header and loop:
                    continue
                stamped = ts + loop * span
                if stamped / 1000 >= length:
                    break
                self.type_ids.append(type_id)
                self.timestamps.append(stamped)
                self.payloads.append(payload)
                self.due.append(stamped / 1000)
                self.header.append(header)
                self.picture.append(type_id == VIDEO and not header)
                self.keyframe.append(type_id == VIDEO and not header and payload[0] >> 4 == 1)
            loop += 1
        self.index = {}
        # Servers may resend a sequence header with another timestamp: know it by content.
        self.header_index = {(self.type_ids[i], self.payloads[i]): i for i in range(len(self.payloads)) if self.header[i]}
        for i, key in enumerate(zip(self.type_ids, self.timestamps, map(len, self.payloads))):
            if key in self.index:
                raise SystemExit(f"input has two messages with the same (type, timestamp, length) {key}")
            self.index[key] = i
        # A cleaning relay re-stamps audio by sample count and may relabel a keyframe
        # (byte 0 of the tag): such messages are known by the rest of their content,
        # in send order (the input loops, so a payload recurs once per loop).
        self.content_index: dict = {}  # shared by every player: read-only after this
        for i in range(len(self.payloads)):
            if not self.header[i]:
                self.content_index.setdefault((self.type_ids[i], self.payloads[i][1:]), []).append(i)

    def __len__(self) -> int:
        return len(self.type_ids)


# --- publishers -----------------------------------------------------------------------


class Publisher(Protocol):
    def __init__(self, load: "Load", number: int, url: str) -> None:
        self.load = load
        self.number = number
        self.session = s.ClientSession.for_url(url)
        self.publishing = False
        self.next = 0  # index of the next tag to send
        self.start = 0.0
        self.done = False
        self.send_times = array("d", bytes(8 * len(load.schedule)))
        self.closed = False

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.session.initiate()
        self.transport.write(self.session.data_to_send())

    def dataReceived(self, data: bytes) -> None:
        for event in self.session.receive_data(data):
            if type(event) is s.PublishStarted:
                self.publishing = True
                self.load.publisher_ready(self)
            elif type(event) is s.PublishFailed:
                self.load.fail(f"publisher {self.number}: {event.code} {event.description}")
        out = self.session.data_to_send()
        if out:
            self.transport.write(out)

    def connectionLost(self, reason=None) -> None:
        self.closed = True
        if not self.load.finishing:
            self.load.fail(f"publisher {self.number} lost its connection: {reason.getErrorMessage()}")


# --- players ----------------------------------------------------------------------------


class Player(Protocol):
    """connect, createStream, play; then note when each known message arrives."""

    def __init__(self, load: "Load", number: int, app: str, name: str, tc_url: str) -> None:
        self.load = load
        self.number = number
        self.app = app
        self.name = name
        self.tc_url = tc_url
        self.connection = Connection(Role.CLIENT)
        self.stream_id = 0
        self.playing = False
        self.recv_times = array("d", bytes(8 * len(load.schedule)))
        self.content_pos: dict = {}
        self.first_picture: float = 0.0
        self.first_picture_index = -1
        self.unmatched = 0
        self.duplicates = 0
        self.statuses: list[str] = []

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self._quickack = self.load.config.get("player_quickack", True)
        self.connection.initiate()
        self._flush()

    def dataReceived(self, data: bytes) -> None:
        now = time.monotonic()
        if self._quickack:
            # nginx-rtmp never sets TCP_NODELAY: with our delayed ACKs, Nagle would
            # hold its next small write for up to 40 ms on every path alike.
            # Acknowledging at once keeps that noise out of the sink -> player hop.
            self.transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        index = self.load.schedule.index
        recv = self.recv_times
        for event in self.connection.receive_data(data):
            if type(event) is not MessageReceived:
                if type(event) is HandshakeCompleted:
                    self._send_connect()
                continue
            body = event.body
            kind = type(body)
            if kind is m.Video or kind is m.Audio:
                payload = body.payload
                type_id = VIDEO if kind is m.Video else AUDIO
                i = index.get((type_id, event.timestamp, len(payload)))
                if i is not None and recv[i]:
                    i = None
                if i is None and is_header(type_id, payload):
                    i = self.load.schedule.header_index.get((type_id, payload))
                elif i is None:
                    key = (type_id, payload[1:])
                    candidates = self.load.schedule.content_index.get(key, ())
                    at = self.content_pos.get(key, 0)  # this player's own place in the list
                    while at < len(candidates) and recv[candidates[at]]:
                        at += 1
                    if at < len(candidates):
                        i = candidates[at]
                        self.content_pos[key] = at + 1
                if i is None:
                    self.unmatched += 1
                elif recv[i]:
                    self.duplicates += 1
                else:
                    recv[i] = now
                if not self.first_picture and kind is m.Video and not is_header(VIDEO, payload):
                    self.first_picture = now
                    self.first_picture_index = -1 if i is None else i
            elif kind is m.Command:
                self._on_command(body)
        self._flush()

    def _send_connect(self) -> None:
        self.connection.send(
            m.Command(
                "connect",
                1,
                {
                    "app": self.app,
                    "flashVer": "LNX 9,0,124,2",
                    "tcUrl": self.tc_url,
                    "fpad": False,
                    "capabilities": 15,
                    "audioCodecs": 4071,
                    "videoCodecs": 252,
                    "videoFunction": 1,
                },
            ),
            chunk_stream_id=3,
        )

    def _on_command(self, body: m.Command) -> None:
        if body.name == "_result" and body.transaction_id == 1:
            self.connection.send(m.WindowAckSize(2_500_000))
            self.connection.send(m.Command("createStream", 2, None), chunk_stream_id=3)
        elif body.name == "_result" and body.transaction_id == 2:
            self.stream_id = int(body.args[0])
            self.connection.send(m.Command("play", 0, None, (self.name, -1000)), stream_id=self.stream_id, chunk_stream_id=8)
            self.connection.send(m.SetBufferLength(self.stream_id, 100))
        elif body.name == "onStatus":
            info = body.args[0] if body.args and isinstance(body.args[0], dict) else {}
            code = str(info.get("code", ""))
            self.statuses.append(code)
            if code == s.Status.PLAY_START and not self.playing:
                self.playing = True
                self.load.player_ready(self)
            elif info.get("level") == "error":
                self.load.fail(f"player {self.number}: {code} {info.get('description')}")
        elif body.name == "_error":
            self.load.fail(f"player {self.number}: _error for transaction {body.transaction_id}: {body.args}")

    def _flush(self) -> None:
        out = self.connection.data_to_send()
        if out:
            self.transport.write(out)

    def connectionLost(self, reason=None) -> None:
        if not self.load.finishing:
            self.load.fail(f"player {self.number} lost its connection: {reason.getErrorMessage()}")


# --- the run ------------------------------------------------------------------------------


class Load:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.n = len(config["publish_urls"])
        self.seconds = float(config["seconds"])
        self.warmup = float(config["warmup"])
        self.drain = float(config["drain"])
        self.stagger = float(config["stagger"])
        self.monitor = {k: int(v) for k, v in config["monitor"].items()}
        # The first stream runs from its start to the end of the window: allow for
        # slow connection set-up too (the input loops if it is too short).
        length = self.stagger * (self.n - 1) + self.config["setup_timeout"] + self.warmup + self.seconds + 1
        self.schedule = Schedule(config["flv"], length)
        self.players: list[Player] = []
        self.publishers: list[Publisher] = []
        self.ready_players = 0
        self.ready_publishers = 0
        self.errors: list[str] = []
        self.finishing = False
        self.samples: dict[str, dict] = {}
        self.marks: dict[str, float] = {}
        self.lateness = array("d")  # how late each tick ran, s
        self.t0 = self.steady_start = self.steady_end = 0.0
        self._ticking = False
        self._next_tick = 0.0
        self._written: list = []

    # -- phases ----------------------------------------------------------------------------

    def run(self) -> None:
        self.samples["idle"] = sample(self.monitor)
        self.marks["begin"] = time.monotonic()
        host, port, app = self.config["play_host"], self.config["play_port"], self.config["play_app"]
        tc_url = f"rtmp://{host}:{port}/{app}"
        for number, name in enumerate(self.config["play_names"]):
            endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=10)
            d = endpoint.connect(Factory.forProtocol(lambda n=number, nm=name: Player(self, n, app, nm, tc_url)))
            d.addCallback(self.players.append)
            d.addErrback(lambda f, n=number: self.fail(f"player {n} could not connect: {f.getErrorMessage()}"))
        reactor.callLater(self.config["setup_timeout"], self._setup_timeout, "players")

    def player_ready(self, player: Player) -> None:
        self.ready_players += 1
        if self.ready_players == self.n:
            self.marks["players_ready"] = time.monotonic()
            # nginx joins the player to the stream before it sends Play.Start; the
            # pause only keeps the two setup phases apart in its log.
            reactor.callLater(0.2, self._connect_publishers)

    def _connect_publishers(self) -> None:
        """Publisher ``i`` connects ``i * stagger`` s after the first and, like an
        encoder, sends its first frames the moment the server says Publish.Start."""
        self.t0 = time.monotonic()
        for number, url in enumerate(self.config["publish_urls"]):
            reactor.callLater(number * self.stagger, self._connect_publisher, number, url)
        reactor.callLater(self.stagger * self.n + self.config["setup_timeout"], self._setup_timeout, "publishers")

    def _connect_publisher(self, number: int, url: str) -> None:
        if self.finishing:
            return
        host, port, _app, _name, _tls = s.split_rtmp_url(url)
        endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=10)
        d = endpoint.connect(Factory.forProtocol(lambda: Publisher(self, number, url)))
        d.addCallback(self.publishers.append)
        d.addErrback(lambda f: self.fail(f"publisher {number} could not connect: {f.getErrorMessage()}"))

    def publisher_ready(self, publisher: Publisher) -> None:
        if self.finishing:
            return
        now = time.monotonic()
        publisher.start = now
        self.ready_publishers += 1
        if self.schedule.metadata is not None:
            publisher.session.send_metadata(self.schedule.metadata)
        self._pump(publisher, now, now)
        if not self._ticking:
            self._ticking = True
            self._next_tick = now + TICK
            reactor.callLater(TICK, self._tick)
        if self.ready_publishers == self.n:
            self.marks["publishers_ready"] = now
            self.steady_start = now + self.warmup
            self.steady_end = self.steady_start + self.seconds
            reactor.callLater(self.steady_start - time.monotonic(), self._sample, "steady_start")
            reactor.callLater(self.steady_end - time.monotonic(), self._sample, "steady_end")

    def _setup_timeout(self, what: str) -> None:
        if what == "players" and self.ready_players < self.n:
            self.fail(f"only {self.ready_players} of {self.n} players got Play.Start in {self.config['setup_timeout']} s")
        if what == "publishers" and self.ready_publishers < self.n:
            self.fail(f"only {self.ready_publishers} of {self.n} publishers got Publish.Start in {self.config['setup_timeout']} s")

    def _pump(self, p: Publisher, now: float, stamp: float | None) -> bool:
        """Send what is due on one stream; True while the stream has more to send.

        With ``stamp`` the messages are stamped at once; without, the caller
        stamps them from ``self._written`` once the whole tick is queued.
        """
        sched = self.schedule
        due = sched.due
        total = len(sched)
        end = self.steady_end or float("inf")
        start = p.start
        first = i = p.next
        session = p.session
        while i < total and start + due[i] <= now and start + due[i] < end:
            session.send_media(sched.type_ids[i], sched.timestamps[i], sched.payloads[i])
            i += 1
        if i > first:
            p.transport.write(session.data_to_send())
            p.next = i
            if stamp is None:
                self._written.append((p, first, i))
            else:
                times = p.send_times
                for k in range(first, i):
                    times[k] = stamp
        if i >= total or start + due[i] >= end:
            p.done = True
        return not p.done

    def _tick(self) -> None:
        now = time.monotonic()
        self.lateness.append(now - self._next_tick)
        self._written = []
        for p in self.publishers:
            if p.publishing and not p.done:
                self._pump(p, now, None)
        stamp = time.monotonic()
        for p, first, last in self._written:
            times = p.send_times
            for k in range(first, last):
                times[k] = stamp
        if self.ready_publishers < self.n or not all(p.done for p in self.publishers):
            self._next_tick += TICK
            reactor.callLater(max(0.0, self._next_tick - time.monotonic()), self._tick)
        else:
            self.marks["sent_all"] = time.monotonic()
            reactor.callLater(max(0.0, self.steady_end + self.drain - time.monotonic()), self._finish)

    def _sample(self, name: str) -> None:
        self.samples[name] = sample(self.monitor)

    # -- the end ---------------------------------------------------------------------------

    def fail(self, why: str) -> None:
        if self.finishing:
            return
        self.errors.append(why)
        print(f"load: {why}", file=sys.stderr, flush=True)
        self._finish()

    def _finish(self) -> None:
        if self.finishing:
            return
        self.finishing = True
        if "steady_end" not in self.samples:
            self.samples["at_failure"] = sample(self.monitor)
        for p in self.publishers:
            if p.publishing and not p.closed:
                p.session.close()
                p.transport.write(p.session.data_to_send())
                p.transport.loseConnection()
        for pl in self.players:
            pl.transport.loseConnection()
        try:
            self._write_results()
        finally:
            reactor.callLater(0.2, reactor.stop)

    def _write_results(self) -> None:
        sched = self.schedule
        streams = []
        players = {p.number: p for p in self.players}
        for pub in sorted(self.publishers, key=lambda p: p.number):
            player = players.get(pub.number)
            recv = player.recv_times if player else array("d", bytes(8 * len(sched)))
            send = pub.send_times
            lat_steady = array("d")
            lat_steady_video = array("d")
            lat_all = array("d")
            sent = lost = lost_video = lost_audio = lost_headers = lost_first_gop = 0
            first_sent_picture = 0.0
            keyframes_seen = 0
            for i in range(pub.next):
                t_send = send[i]
                if not t_send:
                    continue
                sent += 1
                if sched.keyframe[i]:
                    keyframes_seen += 1
                if sched.picture[i] and not first_sent_picture:
                    first_sent_picture = t_send
                t_recv = recv[i]
                if not t_recv:
                    lost += 1
                    if sched.header[i]:
                        lost_headers += 1
                    elif sched.type_ids[i] == VIDEO:
                        lost_video += 1
                    else:
                        lost_audio += 1
                    if keyframes_seen <= 1:
                        lost_first_gop += 1
                    continue
                latency = t_recv - t_send
                lat_all.append(latency)
                if self.steady_start <= t_send < self.steady_end:
                    lat_steady.append(latency)
                    if sched.type_ids[i] == VIDEO:
                        lat_steady_video.append(latency)
            first_picture_delay = None
            if player and player.first_picture and first_sent_picture:
                first_picture_delay = player.first_picture - first_sent_picture
            streams.append(
                {
                    "number": pub.number,
                    "sent": sent,
                    "lost": lost,
                    "lost_video": lost_video,
                    "lost_audio": lost_audio,
                    "lost_headers": lost_headers,
                    "lost_first_gop": lost_first_gop,
                    "unmatched": player.unmatched if player else 0,
                    "duplicates": player.duplicates if player else 0,
                    "first_picture_delay": first_picture_delay,
                    "first_picture_received_index": player.first_picture_index if player else None,
                    "latency_all": lat_all.tolist(),
                    "latency_steady": lat_steady.tolist(),
                    "latency_steady_video": lat_steady_video.tolist(),
                    "statuses": player.statuses if player else [],
                }
            )
        lateness = sorted(self.lateness)
        result = {
            "n": self.n,
            "errors": self.errors,
            "samples": self.samples,
            "marks": self.marks,
            "t0": self.t0,
            "steady_start": self.steady_start,
            "steady_end": self.steady_end,
            "ticks": len(lateness),
            "tick_late_p99": lateness[int(0.99 * (len(lateness) - 1))] if lateness else None,
            "tick_late_max": lateness[-1] if lateness else None,
            "streams": streams,
        }
        with open(self.config["result"], "w") as f:
            json.dump(result, f)


def main() -> None:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    load = Load(config)
    reactor.callWhenRunning(load.run)
    # Whatever happens, this process ends: the orchestrator also kills it past this.
    reactor.callLater(config["hard_timeout"], load.fail, f"hard timeout of {config['hard_timeout']} s")
    reactor.run()
    sys.exit(1 if load.errors else 0)


if __name__ == "__main__":
    main()
