"""The relay itself as a test peer: a real ``rtmprelay`` process on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rtmprelay exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"rtmprelay did not listen on {port} within {timeout} s")


class RelayProcess:
    """``python -m rtmprelay --rtmp tcp:PORT:interface=127.0.0.1 [args]`` with its log captured."""

    def __init__(self, port: int, args: list[str], log_path: Path) -> None:
        self.port = port
        self.args = args
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "RelayProcess":
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "rtmprelay", "--rtmp", f"tcp:{self.port}:interface=127.0.0.1", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_port(self.port, self.proc, timeout)
        return self

    def url(self, path: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/{path}"

    @property
    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode
