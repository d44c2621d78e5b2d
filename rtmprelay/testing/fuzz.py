"""A mutation fuzzer for every parser, and for a server connection fed bytes after a handshake.

Each :class:`Target` takes one input (bytes) and may raise only the errors it
declares (``ParseError`` and its subclasses for the parsers): anything else is
a finding. Inputs are real traffic mutated: the messages, FLV tags, codec
configurations and NAL units found in captured client sessions (``*.c2s.bin``,
as in ``tests/data``), with bits flipped, bytes set to edge values, ranges cut,
repeated or spliced from another input.

The ``cleaner`` target feeds a ``StreamCleaner`` a script of messages (kind,
timestamp, arrival step, payload: `cleaner_script`) made from a capture's
audio and video, so mutations hit timestamps, arrival times, frame rates in
onMetaData and the media alike; it fails on any exception, on one push
generating more than the cleaner's bound, and on a run over 2 s (a hang).

The ``server`` target is the whole ingest path: a captured client session's
handshake, then its chunk stream mutated and fed, in random splits, to an
``RTMPServerProtocol`` whose registry cleans every stream and delivers it to a
sink. It fails on any unexpected exception the server had to contain (the
factory's and the streams' fault counters) and on any connection closed for an
internal error: a peer's bytes may close its own connection with a protocol
error, never do more.

In the test suite each target runs for a bounded number of inputs; the long
run is ``python -m rtmprelay.testing.fuzz --seconds N --data tests/data``.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs

from rtmprelay.errors import ParseError, ProtocolError
from rtmprelay.media import aac, avc, avcc, tags
from rtmprelay.media.message import MediaMessage
from rtmprelay.rtmp import amf0, amf3, messages
from rtmprelay.rtmp.chunks import ChunkReader
from rtmprelay.rtmp.handshake import HANDSHAKE_SIZE, ServerHandshake

__all__ = ["Corpus", "Finding", "Target", "cleaner_script", "corpus_from_captures", "fuzz", "mutate", "targets"]

_HANDSHAKE_BYTES = 1 + 2 * HANDSHAKE_SIZE
_EDGE_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF)
_EDGE_U32 = (0, 1, 0x7F, 0xFF, 0xFFFF, 0xFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


@attrs.frozen
class Finding:
    target: str
    error: str
    traceback: str
    data: bytes


@attrs.define
class Corpus:
    """Real inputs by kind, taken from captured sessions."""

    sessions: list[bytes] = attrs.Factory(list)  # handshake + chunk stream (a prefix)
    chunk_streams: list[bytes] = attrs.Factory(list)  # what follows the handshake
    messages: dict[int, list[bytes]] = attrs.Factory(dict)  # payloads by type id
    video_tags: list[bytes] = attrs.Factory(list)
    audio_tags: list[bytes] = attrs.Factory(list)
    avc_configs: list[bytes] = attrs.Factory(list)
    aac_configs: list[bytes] = attrs.Factory(list)
    nal_units: list[bytes] = attrs.Factory(list)


def corpus_from_captures(paths: Iterable[Path], *, session_bytes: int = 24_000) -> Corpus:
    """The messages, tags and codec data inside captured client-to-server sessions."""
    corpus = Corpus()
    for path in paths:
        wire = Path(path).read_bytes()
        corpus.sessions.append(wire[: _HANDSHAKE_BYTES + session_bytes])
        stream = wire[_HANDSHAKE_BYTES:]
        corpus.chunk_streams.append(stream[:session_bytes])
        try:
            found = ChunkReader(max_message_size=0xFFFFFF).feed(stream)
        except ParseError:
            continue  # a capture cut off mid-message: what came before is in
        for message in found:
            kind = corpus.messages.setdefault(message.type_id, [])
            if len(kind) < 200:
                kind.append(message.payload)
            if message.type_id == 9 and len(corpus.video_tags) < 300:
                corpus.video_tags.append(message.payload)
                _collect_video(message.payload, corpus)
            elif message.type_id == 8 and len(corpus.audio_tags) < 100:
                corpus.audio_tags.append(message.payload)
                if len(message.payload) > 2 and message.payload[1] == 0:
                    corpus.aac_configs.append(message.payload[2:])
    return corpus


def _collect_video(payload: bytes, corpus: Corpus) -> None:
    try:
        tag = tags.parse_video_tag(payload)
        if tag.packet_type == 0:
            corpus.avc_configs.append(tag.data)
            config = avcc.parse_avc_config(tag.data)
            corpus.nal_units.extend(config.sps)
            corpus.nal_units.extend(config.pps)
        elif tag.packet_type == 1 and len(corpus.nal_units) < 200:
            corpus.nal_units.extend(nal[:2000] for nal in avcc.split_nal_units(tag.data))
    except ParseError:
        pass


# -- mutation ---------------------------------------------------------------------------------


def mutate(data: bytes, rng: random.Random, others: list[bytes] = (), *, start: int = 0) -> bytes:
    """``data`` with one to four random mutations, none before ``start``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        size = len(out)
        if size <= start:
            out += rng.randbytes(rng.randint(1, 16))
            continue
        at = rng.randrange(start, size)
        choice = rng.randrange(9)
        if choice == 0:
            out[at] ^= 1 << rng.randrange(8)
        elif choice == 1:
            out[at] = rng.choice(_EDGE_BYTES)
        elif choice == 2 and size - at >= 4:
            out[at : at + 4] = struct.pack(">I", rng.choice(_EDGE_U32))
        elif choice == 3:
            del out[at : at + rng.randint(1, 64)]
        elif choice == 4:
            piece = out[at : at + rng.randint(1, 64)]
            out[at:at] = piece * rng.randint(1, 8)
        elif choice == 5:
            out[at:at] = rng.randbytes(rng.randint(1, 32))
        elif choice == 6:
            del out[at:]
        elif choice == 7 and others:
            other = rng.choice(others)
            if other:
                cut = rng.randrange(len(other))
                out[at:] = other[cut : cut + rng.randint(1, 4096)]
        else:
            out[at] = rng.randrange(256)
    return bytes(out)


# -- targets ----------------------------------------------------------------------------------


@attrs.frozen
class Target:
    name: str
    run: Callable[[bytes], object]
    seeds: tuple[bytes, ...]
    #: Errors the target may raise on bad input; anything else is a finding.
    declared: tuple[type[BaseException], ...] = (ParseError,)
    #: Bytes at the start that mutations leave alone (a session's handshake).
    keep: int = 0


def _decode_all_amf0(data: bytes) -> object:
    return amf0.decode_all(data)


def _decode_amf3(data: bytes) -> object:
    offset = 0
    while offset < len(data):
        _value, offset = amf3.decode(data, offset)


def _message_decoder(type_id: int) -> Callable[[bytes], object]:
    return lambda data: messages.decode_body(type_id, data)


def _aggregate(data: bytes) -> object:
    return messages.split_aggregate(data, 0)


def _handshake(data: bytes) -> object:
    shake = ServerHandshake()
    shake.receive_data(data)
    return shake.done


def _chunk_stream(data: bytes) -> object:
    reader = ChunkReader()
    for start in range(0, len(data), 1000):
        reader.feed(data[start : start + 1000])


def _parameter_sets(data: bytes) -> object:
    sps = avc.parse_sps(data) if data[:1] and data[0] & 0x1F == avc.NAL_SPS else None
    if sps is not None:
        return sps
    if data[:1] and data[0] & 0x1F == avc.NAL_PPS:
        return None  # a PPS needs its SPS: the slice target covers both
    return avc.nal_header(data) if data else None


def _slices(seeds: list[bytes]) -> Callable[[bytes], object]:
    """Slice headers parsed against the parameter sets of the capture."""
    sps_by_id: dict = {}
    pps_by_id: dict = {}
    for nal in seeds:
        try:
            if nal and nal[0] & 0x1F == avc.NAL_SPS:
                parsed = avc.parse_sps(nal)
                sps_by_id[parsed.seq_parameter_set_id] = parsed
        except ParseError:
            pass
    for nal in seeds:
        try:
            if nal and nal[0] & 0x1F == avc.NAL_PPS:
                parsed = avc.parse_pps(nal, sps_by_id)
                pps_by_id[parsed.pic_parameter_set_id] = parsed
        except ParseError:
            pass

    def run(data: bytes) -> object:
        kind = data[0] & 0x1F if data else 0
        if kind == avc.NAL_PPS:
            return avc.parse_pps(data, sps_by_id)
        if kind in avc.CODED_SLICES:
            return avc.parse_slice_header(data, sps_by_id, pps_by_id)
        if kind == avc.NAL_SPS:
            return avc.parse_sps(data)
        return None

    return run


def _server(data: bytes) -> object:
    """The whole ingest path for one connection; raises ``ServerFault`` on a contained fault."""
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from rtmprelay.media.cleaner import CleanerConfig
    from rtmprelay.relay.registry import StreamRegistry
    from rtmprelay.relay.server import RTMPServerFactory

    clock = MemoryReactorClock()
    registry = StreamRegistry(cleaning=CleanerConfig())
    factory = RTMPServerFactory(registry, clock=clock)
    sinks: list = []

    class _Recorder:
        def stream_started(self, stream):
            sink = _Sink()
            sinks.append(sink)
            stream.attach(sink)

        def stream_ended(self, stream):
            stream_faults.update(stream.faults)

    stream_faults: dict = {}
    registry.add_listener(_Recorder())
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    rng = random.Random(hash(data) & 0xFFFF)
    position = 0
    while position < len(data) and not transport.disconnecting:
        step = rng.choice((1, 7, 100, 1500, 4096, 65536))
        protocol.dataReceived(data[position : position + step])
        position += step
        clock.advance(0.01)
        transport.clear()
    for stream in registry.streams():
        stream.poll(clock.seconds() + 1.0)
        stream_faults.update(stream.faults)
    protocol.connectionLost(None)
    faults = dict(factory.counters.faults)
    if factory.counters.connections_closed.get("internal_error"):
        faults["internal_error"] = factory.counters.connections_closed["internal_error"]
    faults.update(stream_faults)
    if faults:
        raise ServerFault(f"contained faults: {faults}")
    return sinks


#: One message of a cleaner script: kind (8, 9, or 18 for onMetaData), timestamp,
#: arrival step (0.1 ms units, signed; 0x7FFF is three hours), payload length.
_CLEANER_RECORD = struct.Struct(">BIhH")
_THREE_HOURS_STEP = 0x7FFF


def _cleaner(data: bytes) -> object:
    """A ``StreamCleaner`` fed a script of messages (`cleaner_script`): the first byte
    picks the configuration (``--fps source``, wall-clock mode). Raises ``CleanerFault``
    when one push generated more than the cleaner's bound or the run took over 2 s."""
    from rtmprelay.media.cleaner import GENERATED_BURST_S, MAX_FPS, CleanerConfig, StreamCleaner

    bound = GENERATED_BURST_S * (MAX_FPS + 96000 / 1024) + 1
    mode = data[0] if data else 0
    config = CleanerConfig.from_profile("cloudflare", wallclock=bool(mode & 2))
    if mode & 1:
        config = attrs.evolve(config, fps=None)
    cleaner = StreamCleaner(config)
    counters = cleaner.counters
    started = time.perf_counter()
    now = 0.0
    position = 1
    while position + _CLEANER_RECORD.size <= len(data):
        kind, timestamp, step, length = _CLEANER_RECORD.unpack_from(data, position)
        position += _CLEANER_RECORD.size
        payload = data[position : position + length]
        position += length
        now += 3 * 3600.0 if step == _THREE_HOURS_STEP else step / 10_000
        if kind == 18:
            rate = struct.unpack(">d", payload[:8].ljust(8, b"\0"))[0]
            cleaner.rewrite_metadata({"framerate": rate, "width": 320.0})
            continue
        before = counters.duplicated + counters.silence_inserted
        cleaner.push(MediaMessage.of(kind, timestamp, payload), now)
        generated = counters.duplicated + counters.silence_inserted - before
        if generated > bound:
            raise CleanerFault(f"one push generated {generated} messages (bound {bound:.0f})")
    cleaner.poll(now + 1.0)
    cleaner.finish()
    if time.perf_counter() - started > 2.0:
        raise CleanerFault(f"{len(data)} bytes of script took {time.perf_counter() - started:.1f} s")
    return counters


def cleaner_script(messages: Iterable[tuple[int, int, float, bytes]], mode: int = 0) -> bytes:
    """The ``cleaner`` target's input for (kind, timestamp, arrival step s, payload) messages."""
    out = bytearray((mode,))
    for kind, timestamp, step, payload in messages:
        out += _CLEANER_RECORD.pack(kind, timestamp % 2**32, max(-0x7FFF, min(0x7FFE, round(step * 10_000))), len(payload))
        out += payload
    return bytes(out)


def _cleaner_seeds(corpus: Corpus) -> tuple[bytes, ...]:
    """Each capture's video and audio messages interleaved as a device sends them, at
    30 fps and 44.1 kHz AAC, in every configuration; one with an absurd frame rate."""
    video = corpus.video_tags[:120]
    audio = corpus.audio_tags[:100]
    if not video:
        return (b"\0",)
    script = []
    vi = ai = 0
    while vi < len(video):
        v_ms, a_ms = vi * 1000 / 30, ai * 1024000 / 44100
        if ai < len(audio) and a_ms < v_ms:
            script.append((8, round(a_ms), 0.002, audio[ai]))
            ai += 1
        else:
            script.append((9, round(v_ms), 0.03, video[vi]))
            vi += 1
    half = len(script) // 2
    hostile = {
        1: [(18, 0, 0.0, struct.pack(">d", 1e9))] + script,  # hung with --fps source
        0: script[:half] + [(k, t + 2**31, step, p) for k, t, step, p in script[half:]],  # a step of 2^31 ms
        2: script[:half] + [(k, t + 3 * 3600_000, step, p) for k, t, step, p in script[half:]],
        3: script[:half] + [(9, script[half][1], 0.0, b"\x27\x01\x00\x00\x00\x00\x00\x00\x00")] + script[half:],
    }
    seeds = [cleaner_script(script, mode) for mode in range(4)]
    seeds += [cleaner_script(messages, mode) for mode, messages in hostile.items()]
    # a three-hour stall: the next message arrives (and is stamped) three hours later
    stalled = bytearray(cleaner_script(hostile[2]))
    offset = 1
    for kind, timestamp, step, payload in hostile[2][:half]:
        offset += _CLEANER_RECORD.size + len(payload)
    _CLEANER_RECORD.pack_into(stalled, offset, hostile[2][half][0], hostile[2][half][1] % 2**32, _THREE_HOURS_STEP, len(hostile[2][half][3]))
    seeds.append(bytes(stalled))
    # the sequence headers of another capture's encoder half way (SPS and PPS change)
    other = next((tag for tag in corpus.video_tags if tag[:2] == b"\x17\x00" and tag != video[0]), None)
    if other is not None:
        seeds.append(cleaner_script(script[:half] + [(9, script[half][1], 0.0, other)] + script[half:]))
    return tuple(seeds)


class CleanerFault(Exception):
    """The cleaner generated past its bound, or took too long (a finding)."""


class ServerFault(Exception):
    """The server had to contain an unexpected exception (a finding, not a declared error)."""


class _Sink:
    def on_metadata(self, metadata: dict) -> None:
        messages.encode_body(messages.Data(("onMetaData", amf0.ECMAArray(metadata))))

    def on_media(self, message: MediaMessage) -> None:
        pass

    def on_stream_end(self) -> None:
        pass


def targets(corpus: Corpus) -> list[Target]:
    """Every parser, each with seeds from ``corpus``."""
    amf_seeds = tuple(p for t in (18, 20) for p in corpus.messages.get(t, [])[:50]) or (amf0.encode_values(["x", 1.0, {}]),)
    out = [
        Target("amf0", _decode_all_amf0, amf_seeds),
        Target("amf3", _decode_amf3, tuple(b"\x0a\x0b\x01" + p[:200] for p in amf_seeds[:20]) + (b"\x06\x07abc", b"\x09\x05\x01\x04\x01")),
        Target("handshake", _handshake, tuple(s[:_HANDSHAKE_BYTES] for s in corpus.sessions[:4]) or (bytes(_HANDSHAKE_BYTES),)),
        Target("chunks", _chunk_stream, tuple(corpus.chunk_streams) or (b"",)),
        Target("aggregate", _aggregate, (_aggregate_seed(corpus),)),
        Target("video_tag", tags.parse_video_tag, tuple(corpus.video_tags[:100]) or (b"\x17\x01\x00\x00\x00",)),
        Target("audio_tag", tags.parse_audio_tag, tuple(corpus.audio_tags[:50]) or (b"\xaf\x01\x00",)),
        Target("avc_config", avcc.parse_avc_config, tuple(corpus.avc_configs) or (b"\x01\x64\x00\x1f\xff\xe0\x00",)),
        Target("aac_config", aac.parse_aac_config, tuple(corpus.aac_configs) or (b"\x12\x10",)),
        Target("avcc_nal_units", avcc.split_nal_units, tuple(t[5:2000] for t in corpus.video_tags[:50]) or (b"\x00\x00\x00\x01\x65",)),
        Target("parameter_sets", _parameter_sets, tuple(n for n in corpus.nal_units if n and n[0] & 0x1F in (avc.NAL_SPS, avc.NAL_PPS)) or (b"\x67",)),
        Target("slice_headers", _slices(corpus.nal_units), tuple(n[:300] for n in corpus.nal_units[:100]) or (b"\x65\x88",)),
    ]
    for type_id in sorted(corpus.messages):
        if type_id not in (8, 9, 22):
            out.append(Target(f"message_{type_id}", _message_decoder(type_id), tuple(corpus.messages[type_id][:50])))
    out.append(Target("cleaner", _cleaner, _cleaner_seeds(corpus), declared=()))
    out.append(Target("server", _server, tuple(corpus.sessions) or (bytes(_HANDSHAKE_BYTES),), declared=(), keep=_HANDSHAKE_BYTES))
    return out


def _aggregate_seed(corpus: Corpus) -> bytes:
    """Audio and video tags of the corpus bundled as FLV tags, as FMS sends aggregates."""
    out = bytearray()
    for i, payload in enumerate((corpus.video_tags[:3] + corpus.audio_tags[:3]) or [b"\xaf\x01\x00"]):
        type_id = 9 if payload in corpus.video_tags else 8
        out += struct.pack(">I", type_id << 24 | len(payload)) + struct.pack(">I", (i * 33) << 8) + b"\x00\x00\x00"
        out += payload + struct.pack(">I", len(payload) + 11)
    return bytes(out)


# -- running ----------------------------------------------------------------------------------


@attrs.define
class Result:
    target: str
    inputs: int = 0
    declared_errors: int = 0
    seconds: float = 0.0
    findings: list[Finding] = attrs.Factory(list)


def fuzz(target: Target, *, inputs: int | None = None, seconds: float | None = None, seed: int = 0, max_findings: int = 5) -> Result:
    """Run ``target`` on mutated seeds for ``inputs`` inputs or ``seconds`` seconds, whichever comes first."""
    rng = random.Random(seed)
    result = Result(target.name)
    seeds = [s for s in target.seeds if s] or [b"\x00"]
    started = time.perf_counter()
    while True:
        if inputs is not None and result.inputs >= inputs:
            break
        if seconds is not None and time.perf_counter() - started >= seconds:
            break
        base = seeds[result.inputs % len(seeds)] if result.inputs < len(seeds) else rng.choice(seeds)
        data = base if result.inputs < len(seeds) else mutate(base, rng, seeds, start=target.keep)
        result.inputs += 1
        try:
            target.run(data)
        except target.declared:
            result.declared_errors += 1
        except Exception as error:  # a finding: an undeclared exception
            if len(result.findings) < max_findings:
                result.findings.append(Finding(target.name, f"{type(error).__name__}: {error}", traceback.format_exc(), data))
    result.seconds = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("tests/data"), help="folder of *.c2s.bin captures")
    parser.add_argument("--seconds", type=float, default=10.0, help="per target")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", action="append", help="target names (repeatable)")
    parser.add_argument("--save", type=Path, help="folder to write failing inputs to")
    args = parser.parse_args(argv)
    corpus = corpus_from_captures(sorted(args.data.glob("*.c2s.bin")))
    total = failed = 0
    for target in targets(corpus):
        if args.only and target.name not in args.only:
            continue
        result = fuzz(target, seconds=args.seconds, seed=args.seed)
        total += result.inputs
        print(
            f"{target.name:16} {result.inputs:9d} inputs {result.inputs / max(result.seconds, 1e-9):9.0f}/s "
            f"{result.declared_errors:9d} declared errors {len(result.findings):3d} findings",
            flush=True,
        )
        for index, finding in enumerate(result.findings):
            failed += 1
            print(f"  {finding.error}\n{finding.traceback}", file=sys.stderr)
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / f"{target.name}-{index}.bin").write_bytes(finding.data)
    print(f"{total} inputs in all, {failed} findings")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
