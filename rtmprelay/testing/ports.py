"""Local TCP ports for test servers: pick a free one, wait until one accepts."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

__all__ = ["free_port", "port_accepts", "wait_for_port"]

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that nothing listens on at this moment.

    The kernel picks it (bind to port 0). Another process may still take it
    before the caller binds it: servers started on it should retry with a new
    one when their bind fails, as `NginxRtmp` does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_accepts(port: int, host: str = LOCALHOST, timeout: float = 0.5) -> bool:
    """True if a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    port: int,
    host: str = LOCALHOST,
    *,
    timeout: float = 30.0,
    interval: float = 0.02,
    alive: Callable[[], bool] | None = None,
) -> float:
    """Poll until host:port accepts a connection; return the seconds it took.

    ``alive`` is asked between attempts; when it returns False (the server
    process died) the wait ends at once with ``ConnectionError`` instead of
    running into the timeout. Raises ``TimeoutError`` after ``timeout`` s.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if port_accepts(port, host, timeout=min(0.5, timeout)):
            return time.monotonic() - start
        if alive is not None and not alive():
            raise ConnectionError(f"{host}:{port}: the server exited before accepting")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} did not accept within {timeout:g} s")
        time.sleep(interval)
