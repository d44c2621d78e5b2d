#!/usr/bin/env python3
"""Record the bytes of RTMP sessions by standing between a client and a server.

A small TCP proxy: it listens on ``--listen`` (127.0.0.1:PORT), forwards each
accepted connection to ``--upstream`` and writes what each side sent to two
files, ``PREFIX.c2s.bin`` (client to server) and ``PREFIX.s2c.bin`` (server to
client), each cut off after ``--max-bytes`` bytes (forwarding goes on in full).
A second connection in the same run gets ``PREFIX.2.c2s.bin`` and so on.

Example::

    python scripts/capture_rtmp.py --listen 127.0.0.1:19350 \\
        --upstream 127.0.0.1:19351 --prefix tests/data/ffmpeg_publish --count 1

With ``--count N`` the proxy exits once N connections have closed; without it
it runs until interrupted. This is a test-data tool: it trusts its arguments
and only ever binds and connects to the addresses it is given.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


class _Recorder:
    """Writes at most ``limit`` bytes of one direction to ``path``."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.written = 0
        self.seen = 0
        self._file = path.open("wb")

    def record(self, data: bytes) -> None:
        self.seen += len(data)
        room = self.limit - self.written
        if room > 0:
            chunk = data[:room]
            self._file.write(chunk)
            self.written += len(chunk)

    def close(self) -> None:
        self._file.close()


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    recorder: _Recorder,
) -> None:
    try:
        while data := await reader.read(65536):
            recorder.record(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        # Pass the half-close on, so the other side sees EOF as it would directly.
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


class _Proxy:
    def __init__(
        self, upstream: tuple[str, int], prefix: str, limit: int, count: int | None
    ) -> None:
        self.upstream = upstream
        self.prefix = prefix
        self.limit = limit
        self.count = count
        self.sessions = 0
        self.closed = 0
        self.finished = asyncio.Event()

    def _paths(self, n: int) -> tuple[Path, Path]:
        stem = self.prefix if n == 1 else f"{self.prefix}.{n}"
        return Path(f"{stem}.c2s.bin"), Path(f"{stem}.s2c.bin")

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.sessions += 1
        n = self.sessions
        c2s_path, s2c_path = self._paths(n)
        c2s = _Recorder(c2s_path, self.limit)
        s2c = _Recorder(s2c_path, self.limit)
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError as exc:
            print(f"session {n}: cannot reach upstream: {exc}", file=sys.stderr)
            client_w.close()
            c2s.close()
            s2c.close()
            self._closed()
            return
        await asyncio.gather(_pump(client_r, server_w, c2s), _pump(server_r, client_w, s2c))
        for w in (client_w, server_w):
            w.close()
        c2s.close()
        s2c.close()
        print(
            f"session {n}: c2s {c2s.seen} bytes ({c2s.written} kept) -> {c2s_path}; "
            f"s2c {s2c.seen} bytes ({s2c.written} kept) -> {s2c_path}",
            file=sys.stderr,
        )
        self._closed()

    def _closed(self) -> None:
        self.closed += 1
        if self.count is not None and self.closed >= self.count:
            self.finished.set()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _main(args: argparse.Namespace) -> None:
    proxy = _Proxy(_address(args.upstream), args.prefix, args.max_bytes, args.count)
    host, port = _address(args.listen)
    server = await asyncio.start_server(proxy.handle, host, port)
    print(f"listening on {host}:{port}, forwarding to {args.upstream}", file=sys.stderr, flush=True)
    async with server:
        await proxy.finished.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT to accept clients on")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the real RTMP server")
    parser.add_argument(
        "--prefix", required=True, help="output path prefix (adds .c2s.bin / .s2c.bin)"
    )
    parser.add_argument("--max-bytes", type=int, default=200_000, help="bytes kept per direction")
    parser.add_argument("--count", type=int, default=None, help="exit after this many sessions")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
