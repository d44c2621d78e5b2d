"""The relay itself as a test peer: a real ``rtmprelay`` process on a free port."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rtmprelay.testing.peers import PeerError, PeerProcess
from rtmprelay.testing.ports import LOCALHOST, free_port, wait_for_port


class RelayProcess(PeerProcess):
    """``python -m rtmprelay --rtmp tcp:PORT:interface=127.0.0.1 ARGS``.

    ``tls=(key, cert)`` makes the listen endpoint RTMPS (``ssl:``) instead.
    ``hls=True`` writes HLS into a folder of its own (``hls_dir``); without it the
    relay writes none (``--no-hls``), whatever the daemon's default, so a test or
    bench of forwarding measures forwarding only. ``--hls``/``--no-hls`` in
    ``args`` win. Its log (twistd's, on stdout) is ``log_text``.
    """

    name = "rtmprelay"
    stop_signal = signal.SIGTERM

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        port: int | None = None,
        tls: tuple[str, str] | None = None,
        hls: bool = False,
        lifetime: float = 900.0,
        start_timeout: float = 30.0,
        log_dir=None,
    ) -> None:
        super().__init__(timeout=lifetime, log_dir=log_dir, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.port = port or free_port()
        self.tls = tls
        self.args = [str(a) for a in args]
        self.start_timeout = start_timeout
        if tls:
            key, cert = tls
            endpoint = f"ssl:{self.port}:interface={LOCALHOST}:privateKey={key}:certKey={cert}"
        else:
            endpoint = f"tcp:{self.port}:interface={LOCALHOST}"
        # Its own HTTP port, so that relays in one test (or one machine) never collide.
        self.http_port = free_port()
        http = ["--http", f"tcp:{self.http_port}:interface={LOCALHOST}"]
        # Its own HLS folder (when it writes HLS at all), never the current directory.
        self.hls_dir: Path | None = None
        if "--hls" not in self.args and "--no-hls" not in self.args:
            if hls:
                if log_dir is not None:
                    Path(log_dir).mkdir(parents=True, exist_ok=True)
                self.hls_dir = Path(tempfile.mkdtemp(prefix="rtmprelay-hls-", dir=log_dir))
                hls_args = ["--hls", str(self.hls_dir)]
            else:
                hls_args = ["--no-hls"]
        else:
            hls_args = []
        self.argv = [sys.executable, "-m", "rtmprelay", "--rtmp", endpoint, *http, *hls_args, *self.args]

    def start(self):
        super().start()
        try:
            wait_for_port(self.port, timeout=self.start_timeout, alive=lambda: self.running)
        except (ConnectionError, TimeoutError):
            self.kill()
            raise PeerError(f"rtmprelay did not listen on {self.port}.\n{self.describe()}\n{self.log_text}") from None
        return self

    def http_url(self, path: str) -> str:
        return f"http://{LOCALHOST}:{self.http_port}/{path.lstrip('/')}"

    def url(self, path: str) -> str:
        scheme = "rtmps" if self.tls else "rtmp"
        return f"{scheme}://{LOCALHOST}:{self.port}/{path}"

    @property
    def log_text(self) -> str:
        return self.stdout_text

    def unexpected_errors(self) -> str:
        """Log lines of unhandled errors and tracebacks (the relay should have none)."""
        lines = self.log_text.splitlines()
        hits = [i for i, line in enumerate(lines) if "Unhandled Error" in line or "Traceback (most recent call last)" in line]
        return "\n".join("\n".join(lines[i : i + 25]) for i in hits[:3])
