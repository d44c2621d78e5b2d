"""nginx with the RTMP module as a reference server: it receives, records, pushes.

Facts pinned by experiment (nginx 1.22.1, libnginx-mod-rtmp 1.2.2, see
docs/testing.md):

- ``application`` names match the client's ``app`` exactly, slashes included:
  ``application live/user1`` exists and is distinct from ``application live``.
- ffmpeg, librtmp and GStreamer's rtmp2 all split ``rtmp://h/live/user1/s1``
  as app ``live/user1`` + stream ``s1``; with only ``application live``
  nginx answers "application not found". Give the peer ``app="live"`` to send
  app ``live`` + stream ``user1/s1`` instead.
- ``record all`` writes ``record_path/<stream name>.flv`` with ``/`` in the
  name escaped as ``%2F``: stream ``user1/s1`` -> ``user1%2Fs1.flv``.
- A recording's timestamps start at 0 whatever the publisher sent (the
  recorder subtracts the first one), and so do a player's (rtmpdump,
  ffmpeg): nginx cannot show whether a publisher's timeline began at 0.
- An unknown application is refused by closing the connection, with no
  ``_error`` answer (``connect: application not found`` in the error log).

``crash()`` kills nginx like a crash would (SIGKILL) and keeps its port and
what it recorded; ``start()`` brings it back on the same port. ``tls=(cert,
key)`` puts a TLS terminator in front (nginx's stream module, as a load
balancer terminates RTMPS in front of an ingest): ``rtmps://`` on ``tls_port``.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from rtmprelay.testing.peers import (
    INSTALL_HINT,
    PeerError,
    PeerProcess,
    PeerTimeout,
    PeerUnavailable,
    find_tool,
)
from rtmprelay.testing.ports import LOCALHOST, free_port, wait_for_port

__all__ = ["AccessRecord", "NginxRtmp", "find_rtmp_module", "find_stream_module"]

MODULE_NAME = "ngx_rtmp_module.so"
STREAM_MODULE_NAME = "ngx_stream_module.so"
MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules")

_ACCESS_FORMAT = "$command\\t$app\\t$name\\t$bytes_received\\t$bytes_sent\\t$session_time"


class AccessRecord(NamedTuple):
    """One line of nginx-rtmp's access log: written when a client disconnects."""

    command: str  # "PUBLISH", "PLAY", "PLAY+PUBLISH" or "-"
    app: str
    name: str
    bytes_received: int
    bytes_sent: int
    session_seconds: int


def _nginx_configure_args(nginx: str) -> str:
    try:
        result = subprocess.run(
            [nginx, "-V"], capture_output=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        return ""
    return (result.stdout + result.stderr).decode("utf-8", "replace")


@functools.cache
def find_stream_module(nginx: str | None = None) -> str | None:
    """Path of ngx_stream_module.so (the TLS terminator), or None when built in; `PeerUnavailable` otherwise."""
    nginx = nginx or find_tool("nginx")
    if "--with-stream " in _nginx_configure_args(nginx) + " ":
        return None
    return _module_file(MODULE_DIRS, STREAM_MODULE_NAME, "stream module", "libnginx-mod-stream")


@functools.cache
def find_rtmp_module(nginx: str | None = None) -> str | None:
    """Path of ngx_rtmp_module.so, or None when nginx has the module built in.

    Looks in the usual Debian folders, then in ``--modules-path`` and the
    ``--prefix``'s modules/ from ``nginx -V``. Raises `PeerUnavailable`
    when neither a module file nor a built-in RTMP module is found.
    """
    nginx = nginx or find_tool("nginx")
    configure = _nginx_configure_args(nginx)
    if "nginx-rtmp-module" in configure and "--add-module" in configure:
        return None
    dirs = list(MODULE_DIRS)
    for option in ("--modules-path", "--prefix"):
        match = re.search(rf"{option}=(\S+)", configure)
        if match:
            base = match.group(1)
            dirs.append(base if option == "--modules-path" else os.path.join(base, "modules"))
    return _module_file(dirs, MODULE_NAME, "RTMP module", "libnginx-mod-rtmp")


def _module_file(dirs, name: str, what: str, package: str) -> str:
    """The first ``dirs``/``name`` that exists; `PeerUnavailable` naming the Debian package otherwise."""
    for folder in dirs:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    raise PeerUnavailable(f"nginx {what} ({name}) not found in {', '.join(dirs)}; {INSTALL_HINT} (Debian: {package})")


class NginxRtmp(PeerProcess):
    """nginx serving RTMP on 127.0.0.1, its files all under ``workdir``.

    Every application is ``live on`` and, with ``record=True``, records every
    published stream to ``workdir/records/<app>/<name>.flv``. ``push`` adds
    ``push URL;`` lines (nginx's own relay) to every application.
    ``lifetime`` bounds how long nginx may run at all.
    """

    name = "nginx"
    stop_signal = signal.SIGTERM  # fast shutdown: closes clients and recordings

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        port: int | None = None,
        applications: Sequence[str] = ("live",),
        push: Sequence[str] = (),
        record: bool = True,
        chunk_size: int = 4096,
        extra_application_config: str = "",
        start_timeout: float = 30.0,
        lifetime: float = 900.0,
        tls: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        super().__init__(timeout=lifetime, log_dir=self.workdir / "logs")
        self.nginx = find_tool("nginx")
        self.module = find_rtmp_module(self.nginx)
        self.tls = tls
        self.stream_module = find_stream_module(self.nginx) if tls else None
        self.tls_port = 0
        self.crashes = 0
        self.fixed_port = port
        self.port = port or 0
        self.applications = tuple(a.strip("/") for a in applications)
        if not self.applications:
            raise ValueError("NginxRtmp needs at least one application")
        self.push = tuple(push)
        self.record = record
        self.chunk_size = chunk_size
        self.extra_application_config = extra_application_config
        self.start_timeout = start_timeout
        self.startup_seconds: float | None = None
        self.records_dir = self.workdir / "records"
        self.config_path = self.workdir / "nginx.conf"
        self.error_log = self.workdir / "logs" / "error.log"
        self.access_log = self.workdir / "logs" / "access.log"

    # -- configuration ------------------------------------------------------

    def config_text(self) -> str:
        """The nginx.conf this server runs with (port must be chosen)."""
        load = f'load_module "{self.module}";\n' if self.module else ""
        if self.stream_module:
            load += f'load_module "{self.stream_module}";\n'
        apps = "".join(self._application_block(app) for app in self.applications)
        terminator = ""
        if self.tls:
            cert, key = self.tls
            terminator = (
                "stream {\n"
                "  server {\n"
                f"    listen {LOCALHOST}:{self.tls_port} ssl;\n"
                f'    ssl_certificate "{cert}";\n'
                f'    ssl_certificate_key "{key}";\n'
                f"    proxy_pass {LOCALHOST}:{self.port};\n"
                "  }\n"
                "}\n"
            )
        return (
            f"{load}"
            "daemon off;\n"
            "master_process off;\n"
            "worker_processes 1;\n"
            f'pid "{self.workdir / "nginx.pid"}";\n'
            f'error_log "{self.error_log}" info;\n'
            "events { worker_connections 1024; }\n"
            "rtmp {\n"
            f'  log_format rtmprelay "{_ACCESS_FORMAT}";\n'
            f'  access_log "{self.access_log}" rtmprelay;\n'
            "  server {\n"
            f"    listen {LOCALHOST}:{self.port};\n"
            f"    chunk_size {self.chunk_size};\n"
            f"{apps}"
            "  }\n"
            "}\n"
            f"{terminator}"
        )

    def _application_block(self, app: str) -> str:
        lines = ["live on;"]
        if self.record:
            lines += [
                "record all;",
                f'record_path "{self.records_dir / app}";',
                "record_unique off;",
                "record_suffix .flv;",
            ]
        lines += [f"push {url};" for url in self.push]
        if self.extra_application_config:
            lines.append(self.extra_application_config)
        body = "".join(f"      {line}\n" for line in lines)
        return f"    application {app} {{\n{body}    }}\n"

    # -- life cycle ---------------------------------------------------------

    def start(self):
        """Write the config, start nginx and wait until its port accepts."""
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        for app in self.applications:
            (self.records_dir / app).mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.fixed_port else 5
        for attempt in range(attempts):
            if not self.fixed_port:
                self.port = free_port()
                if self.tls:
                    self.tls_port = free_port()
            self.config_path.write_text(self.config_text())
            (self.workdir / "nginx.pid").unlink(missing_ok=True)
            self.argv = [
                self.nginx,
                "-p", str(self.workdir),
                "-e", str(self.error_log),
                "-c", str(self.config_path),
            ]
            super().start()
            try:
                self.startup_seconds = self._wait_ready()
                return self
            except ConnectionError:
                self.kill()
                if "Address already in use" in self.startup_errors() and attempt + 1 < attempts:
                    self.close()
                    self._proc = None  # try again on another port
                    continue
                raise PeerError(
                    f"nginx did not start.\n{self.describe()}\n{self.startup_errors()}"
                ) from None
            except TimeoutError:
                self.kill()
                raise PeerError(
                    f"nginx did not accept on port {self.port} within {self.start_timeout:g} s.\n"
                    f"{self.describe()}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def crash(self) -> None:
        """Kill nginx at once (SIGKILL: no goodbye to any client), keeping its ports for
        `start` and what it recorded: the recordings so far move to ``records.N``
        (N = 1 for the first crash) so the next run's cannot overwrite them."""
        self.kill()
        for log in (self._stdout, self._stderr):
            if log is not None:
                log.close()
        self._proc = None
        self.crashes += 1
        self.fixed_port = self.port
        if self.records_dir.exists():
            self.records_dir.rename(self.workdir / f"records.{self.crashes}")

    def recordings_of(self, name: str, app: str = "live") -> list[Path]:
        """Every recording of app/name across crashes, oldest first (those that exist)."""
        relative = self.recording_path(name, app).relative_to(self.records_dir)
        folders = [self.workdir / f"records.{n}" for n in range(1, self.crashes + 1)] + [self.records_dir]
        return [folder / relative for folder in folders if (folder / relative).exists()]

    def tls_url(self, path: str, app: str = "live", host: str = "localhost") -> str:
        """``rtmps://localhost:TLS_PORT/{app}/{path}`` through the TLS terminator."""
        return f"rtmps://{host}:{self.tls_port}/{app.strip('/')}/{path.lstrip('/')}"

    def _wait_ready(self) -> float:
        """Seconds until nginx itself listens on the port.

        An accepting port alone is not proof: another process may hold it
        while nginx retries its bind(). nginx writes its pid file only once
        every listen socket is bound; where /proc exists the socket's owner
        is checked too.
        """
        started = time.monotonic()
        pid_file = self.workdir / "nginx.pid"
        deadline = started + self.start_timeout
        while True:
            pid = _read_pid(pid_file)
            if pid is not None and _listens(pid, self.port) is not False:
                wait_for_port(self.port, timeout=max(0.1, deadline - time.monotonic()))
                if self.tls:
                    wait_for_port(self.tls_port, timeout=max(0.1, deadline - time.monotonic()))
                return time.monotonic() - started
            if not self.running:
                raise ConnectionError(f"nginx exited before listening on {self.port}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"nginx not listening on {self.port} after {self.start_timeout:g} s")
            time.sleep(0.01)

    def startup_errors(self) -> str:
        """emerg/alert/crit lines of the error log and stderr."""
        text = self.stderr_text
        if self.error_log.exists():
            text += self.error_log.read_text("utf-8", "replace")
        return "\n".join(l for l in text.splitlines() if re.search(r"\[(emerg|alert|crit)\]", l))

    # -- addresses and files ------------------------------------------------

    def url(self, path: str, app: str = "live") -> str:
        """``rtmp://127.0.0.1:PORT/{app}/{path}``."""
        return f"rtmp://{LOCALHOST}:{self.port}/{app.strip('/')}/{path.lstrip('/')}"

    def recording_path(self, name: str, app: str = "live") -> Path:
        """Where ``record all`` writes stream ``name`` of ``app`` (``/`` -> ``%2F``)."""
        return self.records_dir / app.strip("/") / (name.replace("/", "%2F") + ".flv")

    @property
    def recordings(self) -> list[Path]:
        """Every FLV file nginx has written so far, sorted."""
        if not self.records_dir.exists():
            return []
        return sorted(self.records_dir.rglob("*.flv"))

    def access_records(self) -> list[AccessRecord]:
        """The access log: one record per client that has disconnected."""
        if not self.access_log.exists():
            return []
        records = []
        for line in self.access_log.read_text("utf-8", "replace").splitlines():
            parts = line.split("\t")
            if len(parts) != 6:
                continue
            command, app, name, received, sent, seconds = parts
            records.append(
                AccessRecord(command, app, name, _int(received), _int(sent), _int(seconds))
            )
        return records

    def wait_recording(
        self, name: str, app: str = "live", *, timeout: float = 30.0, count: int = 1
    ) -> Path:
        """Wait until ``count`` publish sessions of app/name have ended; return the FLV.

        nginx closes the recording before it logs the publisher's disconnect,
        so once the access log has the line the file is complete. A publisher
        that has exited may still have bytes in flight: call this rather than
        reading the file at once.
        """
        deadline = time.monotonic() + timeout
        app = app.strip("/")
        while True:
            done = [
                r for r in self.access_records()
                if "PUBLISH" in r.command and r.app == app and r.name == name
            ]
            if len(done) >= count:
                return self.recording_path(name, app)
            if not self.running:
                raise PeerError(f"nginx exited while waiting for {app}/{name}.\n{self.describe()}")
            if time.monotonic() >= deadline:
                raise PeerTimeout(
                    f"no finished publish of app={app!r} name={name!r} in nginx's access "
                    f"log after {timeout:g} s; seen: {self.access_records()}"
                )
            time.sleep(0.02)

    def wait_log(self, pattern: str, *, count: int = 1, timeout: float = 30.0) -> list[str]:
        """Wait until ``count`` lines of the error log (info level) match ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            lines = [l for l in self.error_log_text().splitlines() if regex.search(l)]
            if len(lines) >= count:
                return lines
            if not self.running:
                raise PeerError(f"nginx exited while waiting for {pattern!r}.\n{self.describe()}")
            if time.monotonic() >= deadline:
                raise PeerTimeout(
                    f"{len(lines)} of {count} error log lines match {pattern!r} after {timeout:g} s"
                )
            time.sleep(0.02)

    def wait_players(self, name: str, count: int = 1, *, timeout: float = 30.0) -> None:
        """Wait until ``count`` clients have sent play for stream ``name``.

        Start players, wait for them, then publish: they see the first frame.
        """
        self.wait_log(rf"\bplay: name='{re.escape(name)}'", count=count, timeout=timeout)

    def error_log_text(self) -> str:
        return self.error_log.read_text("utf-8", "replace") if self.error_log.exists() else ""

    def __repr__(self) -> str:
        return f"<NginxRtmp port={self.port} pid={self.pid} apps={list(self.applications)}>"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _listens(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` has a TCP socket listening on ``port`` (Linux /proc).

    None when /proc cannot tell (another OS, no permission).
    """
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    suffix = f":{port:04X}"
    inodes = {
        f"socket:[{fields[9]}]"
        for fields in (line.split() for line in lines)
        if len(fields) > 9 and fields[1].endswith(suffix) and fields[3] == "0A"
    }
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:
            continue
    return False


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1
