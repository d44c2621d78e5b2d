"""Read path (issue 11): CPU per received message, in process, from bytes to events.

    .venv/bin/python bench/read_path.py [--flv FILE] [--chunk-sizes 4096,128]
                                        [--read-size 0] [--repeats 7] [--layers reader,connection,session]

A recorded publish (the FLV's audio and video tags, a 30 fps 720p H.264 + AAC
stream by default, as bench/relay_forward.py makes it) is cut into chunks once
with ``ChunkWriter`` at each chunk size (a Set Chunk Size first, then every tag
on ffmpeg's chunk streams), then fed to each layer one message per call
(what ``recv`` gives a relay reading a real-time publish as it arrives), or in
``--read-size`` pieces:

    reader      ChunkReader.feed                                     (chunks -> chunks.Message)
    connection  the session's Connection.receive_data after the handshake
                (-> MessageReceived; since the connection makes the media value, -> MediaReceived)
    session     ServerSession.receive_data on a publishing stream    (-> MediaReceived)

Prints microseconds per message, the median of ``--repeats`` runs, each run a
fresh object fed the whole recording. Layers and chunk sizes are interleaved
within each repeat, so load on the shared machine falls on all of them alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtmprelay.rtmp import session as s  # noqa: E402
from rtmprelay.rtmp.chunks import ChunkReader, ChunkWriter, Message, default_chunk_stream_id  # noqa: E402

DEFAULT_FLV = "/tmp/rtmprelay-bench-cache/720p30-h264-2400k-aac128k-gop2s-60s.flv"
STREAM_ID = 1


def flv_tags(path: str) -> list[tuple[int, int, bytes]]:
    """(type, timestamp, body) of every audio and video tag."""
    data = Path(path).read_bytes()
    pos = int.from_bytes(data[5:9], "big") + 4
    tags = []
    while pos + 11 <= len(data):
        type_id = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        body = data[pos + 11 : pos + 11 + size]
        if type_id in (8, 9) and body:
            tags.append((type_id, ts, body))
        pos += 11 + size + 4
    return tags


def chunked(tags, chunk_size: int) -> list[bytes]:
    """Each message's chunks, a Set Chunk Size first."""
    writer = ChunkWriter(128)
    out = [writer.write(Message(1, chunk_size.to_bytes(4, "big"), 0, 0, 2))]
    writer.chunk_size = chunk_size
    for type_id, ts, body in tags:
        out.append(writer.write(Message(type_id, body, ts, STREAM_ID, default_chunk_stream_id(type_id))))
    return out


def pieces(messages: list[bytes], size: int) -> list[bytes]:
    """What ``recv`` gives: one message each (0: a real-time publish read as it arrives),
    else ``size`` bytes each."""
    if not size:
        return messages
    data = b"".join(messages)
    return [data[i : i + size] for i in range(0, len(data), size)]


def _pump(a, b) -> None:
    while True:
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            return
        if out_a:
            yield_b = b.receive_data(out_a)
            for event in yield_b:
                if type(event) is s.PublishRequested:
                    b.accept_publish(event.stream_id)
                elif type(event) is s.ConnectRequested:
                    b.accept_connect()
        if out_b:
            a.receive_data(out_b)


def publishing_session() -> s.ServerSession:
    """A server session whose peer has connected and is publishing on stream 1."""
    server = s.ServerSession()
    client = s.ClientSession("live", "bench", "rtmp://127.0.0.1/live")
    client.initiate()
    _pump(client, server)
    assert client.publishing and client.stream_id == STREAM_ID, client.state
    return server


def run(layer: str, feed_pieces: list[bytes], messages: int) -> float:
    if layer == "reader":
        target = ChunkReader()
        feed = target.feed
    elif layer == "connection":
        target = publishing_session().connection
        feed = target.receive_data
    else:
        target = publishing_session()
        feed = target.receive_data
    got = 0
    start = time.perf_counter()
    for piece in feed_pieces:
        got += len(feed(piece))
    elapsed = time.perf_counter() - start
    assert got >= messages, (layer, got)  # every audio and video message came out as an event
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flv", default=DEFAULT_FLV)
    parser.add_argument("--chunk-sizes", default="4096,128")
    parser.add_argument("--read-size", type=int, default=0, help="bytes per recv; 0: one message per recv")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--layers", default="reader,connection,session")
    args = parser.parse_args()
    tags = flv_tags(args.flv)
    sizes = [int(x) for x in args.chunk_sizes.split(",")]
    layers = args.layers.split(",")
    inputs = {size: pieces(chunked(tags, size), args.read_size) for size in sizes}
    count = len(tags) + 1  # the Set Chunk Size too
    times: dict = {(layer, size): [] for layer in layers for size in sizes}
    for _ in range(args.repeats):
        for size in sizes:
            for layer in layers:
                times[(layer, size)].append(run(layer, inputs[size], len(tags)))
    print(f"{count} messages ({len(tags)} audio/video tags), read size {args.read_size}, {args.repeats} repeats")
    for size in sizes:
        for layer in layers:
            runs = times[(layer, size)]
            per = [t / count * 1e6 for t in runs]
            print(
                f"chunk {size:5d}  {layer:10s}  median {statistics.median(per):6.2f} us/message"
                f"  (min {min(per):6.2f}, max {max(per):6.2f})"
            )


if __name__ == "__main__":
    main()
