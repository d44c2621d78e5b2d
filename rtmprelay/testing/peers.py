"""What every real peer shares: finding the tool, running it with a bound on time.

A peer is one external program (nginx, ffmpeg, ffprobe, rtmpdump, gst-launch-1.0)
run as a subprocess in its own process group, with

- stdin closed and stdout/stderr going to files (never pipes: a chatty peer
  cannot block on a full pipe), kept in ``log_dir`` when one is given;
- a hard lifetime enforced *outside* Python by coreutils ``timeout``, so the
  process dies even if the test run itself is killed;
- ``wait(timeout)`` that kills the group and raises `PeerTimeout` when the
  peer overruns, and ``stop()`` that asks politely (the peer's own stop signal,
  so ffmpeg and gst-launch finish their files) then kills the whole group.

Nothing here imports pytest: a missing program raises `PeerUnavailable`, which
the plugin turns into a skip.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from rtmprelay.errors import RelayError

__all__ = [
    "PeerError",
    "PeerProcess",
    "PeerTimeout",
    "PeerUnavailable",
    "find_tool",
    "gst_element_available",
    "require_gst_elements",
    "rtmp_app_and_name",
]

INSTALL_HINT = "the README test command (bash scripts/test.sh) installs it"

#: Where each program and GStreamer element comes from on Debian.
DEBIAN_PACKAGES = {
    "nginx": "nginx",
    "ngx_rtmp_module.so": "libnginx-mod-rtmp",
    "ffmpeg": "ffmpeg",
    "ffprobe": "ffmpeg",
    "rtmpdump": "rtmpdump",
    "gst-launch-1.0": "gstreamer1.0-tools",
    "gst-inspect-1.0": "gstreamer1.0-tools",
    "videotestsrc": "gstreamer1.0-plugins-base",
    "audiotestsrc": "gstreamer1.0-plugins-base",
    "flvmux": "gstreamer1.0-plugins-good",
    "aacparse": "gstreamer1.0-plugins-good",
    "rtmpsink": "gstreamer1.0-plugins-bad",
    "rtmp2sink": "gstreamer1.0-plugins-bad",
    "rtmp2src": "gstreamer1.0-plugins-bad",
    "h264parse": "gstreamer1.0-plugins-bad",
    "voaacenc": "gstreamer1.0-plugins-bad",
    "x264enc": "gstreamer1.0-plugins-ugly",
    "avenc_aac": "gstreamer1.0-libav",
}


def _packages(names) -> str:
    packages = sorted({DEBIAN_PACKAGES[n] for n in names if n in DEBIAN_PACKAGES})
    return f" (Debian: {' '.join(packages)})" if packages else ""

#: Extra seconds a peer gets past its nominal length before wait() gives up.
DEFAULT_SLACK = 30.0


class PeerUnavailable(RelayError):
    """A program, library module or GStreamer element a peer needs is missing."""


class PeerError(RelayError):
    """A peer failed: it exited with an unexpected status or could not start."""


class PeerTimeout(PeerError):
    """A peer ran past its time and was killed."""


@functools.cache
def find_tool(name: str) -> str:
    """Absolute path of ``name`` on PATH, or `PeerUnavailable`."""
    path = shutil.which(name)
    if path is None:
        raise PeerUnavailable(
            f"{name} is not installed (not on PATH){_packages([name])}; {INSTALL_HINT}"
        )
    return path


@functools.cache
def gst_element_available(element: str) -> bool:
    """True if GStreamer has ``element`` (asks ``gst-inspect-1.0 --exists``)."""
    try:
        inspect = find_tool("gst-inspect-1.0")
    except PeerUnavailable:
        return False
    try:
        result = subprocess.run(
            [inspect, "--exists", element],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def require_gst_elements(*elements: str) -> None:
    """Raise `PeerUnavailable` naming every missing GStreamer element."""
    find_tool("gst-launch-1.0")
    missing = [e for e in elements if not gst_element_available(e)]
    if missing:
        raise PeerUnavailable(
            f"GStreamer element(s) {', '.join(missing)} not installed{_packages(missing)}; "
            f"{INSTALL_HINT}"
        )


def rtmp_app_and_name(url: str, app: str) -> str:
    """The stream name in ``url`` when its application is ``app``.

    RTMP clients (ffmpeg, librtmp, GStreamer's rtmp2) split
    ``rtmp://host/live/user1/stream1`` as app ``live/user1``, stream
    ``stream1``. Peers take ``app="live"`` to send app ``live`` and stream
    ``user1/stream1`` instead; this checks the URL agrees and returns the name.
    """
    path = urlsplit(url).path.lstrip("/")
    prefix = app.strip("/") + "/"
    if not path.startswith(prefix) or len(path) == len(prefix):
        raise ValueError(f"{url!r} has no stream name after application {app!r}")
    return path[len(prefix):]


_running: set[PeerProcess] = set()  # started and not yet killed


@atexit.register
def _kill_leftovers() -> None:
    """Peers a script forgot to stop die with the interpreter, not later."""
    for peer in list(_running):
        peer.kill()


class PeerProcess:
    """One external program with a bounded life. Subclasses build ``argv``.

    ``timeout`` is how long the peer may run from ``start()``: ``wait()``
    without an argument waits that long, and the coreutils ``timeout`` wrapper
    kills the process a few seconds after, whatever happens to the caller.
    ``stop_after`` (seconds from start) sends the peer its stop signal at
    that moment (from a timer thread), for players that would run forever.
    """

    #: Short name used in log file names and messages.
    name = "peer"
    #: Signal that asks this program to finish cleanly.
    stop_signal = signal.SIGTERM
    #: Return codes that mean success.
    ok_returncodes: tuple[int, ...] = (0,)

    def __init__(
        self,
        argv: Sequence[str] = (),
        *,
        timeout: float = DEFAULT_SLACK,
        log_dir: str | os.PathLike[str] | None = None,
        stop_after: float | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv: list[str] = [str(a) for a in argv]
        self.timeout = float(timeout)
        self.stop_after = stop_after
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.env = env
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.stopped_by_us = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdout: IO[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self.stderr_path: Path | None = None
        self.stdout_path: Path | None = None
        self._closed_text: tuple[str, str] | None = None
        self._stop_timer: threading.Timer | None = None

    # -- life cycle ---------------------------------------------------------

    def start(self):
        """Start the program; return self."""
        if self._proc is not None:
            raise PeerError(f"{self.name} already started")
        if not self.argv:
            raise PeerError(f"{self.name}: nothing to run")
        self.ended_at = None
        self.stopped_by_us = False
        self._closed_text = None
        self._stdout = self._open_log("stdout")
        self._stderr = self._open_log("stderr")
        argv = self.argv
        wrapper = shutil.which("timeout")
        if wrapper is not None:
            # Only the real program is signalled by --foreground's forwarding;
            # our own kills go to the whole process group anyway.
            lifetime = max(1, int(self.timeout + 5.5))
            argv = [wrapper, "--foreground", "-k", "5", str(lifetime), *argv]
        self.started_at = time.monotonic()
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
            start_new_session=True,
            env=self.env,
        )
        _running.add(self)
        if self.stop_after is not None:
            self._stop_timer = threading.Timer(self.stop_after, self._signal_stop)
            self._stop_timer.daemon = True
            self._stop_timer.start()
        return self

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the program to end and return its exit status.

        Without ``timeout``, waits for what remains of the peer's own
        ``timeout``. If it is still running then, the process group is killed
        and `PeerTimeout` raised with the end of its stderr.
        """
        proc = self._require_started()
        if timeout is None:
            timeout = max(0.0, self.timeout - self.elapsed)
        deadline = time.monotonic() + timeout
        try:
            return self._wait_exit(proc, deadline - time.monotonic())
        except subprocess.TimeoutExpired:
            self.kill()
            raise PeerTimeout(
                f"{self.name} still running after {timeout:g} s; killed.\n"
                f"{self.describe()}"
            ) from None

    def stop(self, grace: float = 10.0) -> int | None:
        """Ask the program to finish (its stop signal), kill it after ``grace`` s."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal_stop()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return proc.returncode

    def _signal_stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self.stopped_by_us = True
        try:
            # The timeout wrapper (our direct child) forwards it to the program.
            proc.send_signal(self.stop_signal)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the whole process group and reap it."""
        proc = self._proc
        if proc is None:
            return
        _running.discard(self)
        if self._stop_timer is not None:
            self._stop_timer.cancel()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable
            pass
        for log in (self._stdout, self._stderr):
            if log is not None:
                log.flush()

    def check(self, returncodes: Sequence[int] | None = None) -> None:
        """Raise `PeerError` (with stderr) unless the peer ended with an ok status."""
        ok = tuple(returncodes) if returncodes is not None else self.ok_returncodes
        code = self.returncode
        if code is None:
            raise PeerError(f"{self.name} has not finished.\n{self.describe()}")
        if code not in ok:
            raise PeerError(f"{self.name} exited with {code}.\n{self.describe()}")

    def close(self) -> None:
        """Stop the program and close its log files (their text stays readable)."""
        self.stop()
        self._closed_text = (self.stdout_text, self.stderr_text)
        for log in (self._stdout, self._stderr):
            if log is not None:
                log.close()

    def __enter__(self):
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- state --------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status; negative for a signal; 124 if the lifetime wrapper fired."""
        if self._proc is None:
            return None
        code = self._proc.poll()
        if code is not None and self.ended_at is None:
            self.ended_at = time.monotonic()
        return code

    @property
    def elapsed(self) -> float:
        """Seconds from start to exit (or to now, while running)."""
        if self.started_at is None:
            return 0.0
        self.returncode  # notes the end time
        return (self.ended_at or time.monotonic()) - self.started_at

    @property
    def stderr_text(self) -> str:
        if self._closed_text is not None:
            return self._closed_text[1]
        return self._read_log(self._stderr)

    @property
    def stdout_text(self) -> str:
        if self._closed_text is not None:
            return self._closed_text[0]
        return self._read_log(self._stdout)

    def describe(self, tail_lines: int = 25) -> str:
        """argv, status and the last lines of stderr, for failure messages."""
        lines = self.stderr_text.splitlines()[-tail_lines:]
        where = f" ({self.stderr_path})" if self.stderr_path else ""
        return (
            f"$ {' '.join(self.argv)}\n"
            f"returncode={self.returncode} elapsed={self.elapsed:.2f}s\n"
            f"stderr{where}, last {len(lines)} lines:\n  " + "\n  ".join(lines)
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} returncode={self.returncode}>"

    # -- helpers ------------------------------------------------------------

    def _wait_exit(self, proc: subprocess.Popen[bytes], timeout: float) -> int:
        code = proc.wait(max(0.0, timeout))
        self.returncode  # notes the end time
        return code

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise PeerError(f"{self.name} was not started")
        return self._proc

    def _open_log(self, stream: str) -> IO[bytes]:
        if self.log_dir is None:
            return tempfile.TemporaryFile()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            path = self.log_dir / f"{self.name}-{n}.{stream}.log"
            try:
                handle = open(path, "xb+")
            except FileExistsError:
                continue
            setattr(self, f"{stream}_path", path)
            return handle
        raise PeerError(f"no free log file name in {self.log_dir}")

    @staticmethod
    def _read_log(handle: IO[bytes] | None) -> str:
        # pread: the child shares this file's offset, so never seek it.
        if handle is None or handle.closed:
            return ""
        fd = handle.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")
