"""pytest plugin: real RTMP peers as fixtures.

Registered through the ``pytest11`` entry point ``rtmprelay``; without the
package installed, load it with ``pytest -p rtmprelay.testing.plugin``.

Every peer a fixture starts is stopped (process group killed) at the end of
the test, pass or fail, and its command line, status and stderr tail are
printed then, which pytest shows for failed tests. A missing program or
GStreamer element skips the test, naming what is missing.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rtmprelay.testing.browser import HeadlessChromium
from rtmprelay.testing.nginx import NginxRtmp
from rtmprelay.testing.peers import PeerProcess, PeerUnavailable
from rtmprelay.testing.players import FfmpegRecorder, GstPlayer, RtmpdumpPlayer
from rtmprelay.testing.ports import free_port as _free_port
from rtmprelay.testing.publishers import FfmpegPublisher, GstPublisher, make_test_flv
from rtmprelay.testing.relay import RelayProcess

PEERS_MARKER = (
    "peers: needs real external peers (ffmpeg, nginx-rtmp, GStreamer) "
    "installed by the README test command"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", PEERS_MARKER)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """A test that itself meets a missing peer (PeerUnavailable) is skipped."""
    try:
        return (yield)
    except PeerUnavailable as exc:
        pytest.skip(str(exc))


@contextlib.contextmanager
def _skip_if_unavailable() -> Iterator[None]:
    try:
        yield
    except PeerUnavailable as exc:
        pytest.skip(str(exc))


class PeerSet:
    """The peers one test started; `close` stops them all, newest first."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.peers: list[PeerProcess] = []
        self._numbers = itertools.count(1)

    def next_number(self) -> int:
        return next(self._numbers)

    def add(self, peer: PeerProcess, *, start: bool = True) -> PeerProcess:
        self.peers.append(peer)
        if start:
            peer.start()
        return peer

    def close(self) -> None:
        for peer in reversed(self.peers):
            try:
                peer.close()
            except Exception as exc:  # teardown must reach every peer
                print(f"stopping {peer!r} failed: {exc!r}")
        for peer in self.peers:
            print(f"--- {peer!r}\n{peer.describe(tail_lines=15)}")


@pytest.fixture
def rtmp_peers(tmp_path: Path) -> Iterator[PeerSet]:
    """The set of peers of this test, all stopped at teardown.

    Add your own `PeerProcess` with ``rtmp_peers.add(peer)`` to get the same
    cleanup; logs go to ``rtmp_peers.log_dir`` (``tmp_path/peer-logs``).
    """
    peers = PeerSet(tmp_path / "peer-logs")
    try:
        yield peers
    finally:
        peers.close()


@pytest.fixture(name="free_port")
def free_port_fixture() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    return _free_port()


@pytest.fixture
def nginx_rtmp_factory(tmp_path: Path, rtmp_peers: PeerSet) -> Callable[..., NginxRtmp]:
    """``make(**NginxRtmp options) -> NginxRtmp``, started and accepting.

    Options: ``port``, ``applications=("live",)``, ``push=()``, ``record=True``,
    ``chunk_size=4096``, ``extra_application_config=""``, ``lifetime=900``.
    """

    def make(**options) -> NginxRtmp:
        workdir = tmp_path / f"nginx-{rtmp_peers.next_number()}"
        with _skip_if_unavailable():
            server = NginxRtmp(workdir, **options)
        rtmp_peers.add(server)
        return server

    return make


@pytest.fixture
def nginx_rtmp(nginx_rtmp_factory: Callable[..., NginxRtmp]) -> NginxRtmp:
    """nginx-rtmp on a free port: application ``live``, recording everything."""
    return nginx_rtmp_factory()


@pytest.fixture(scope="session")
def reference_flv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deterministic 3 s 320x240 25 fps H.264 + AAC FLV (`make_test_flv`)."""
    with _skip_if_unavailable():
        return make_test_flv(tmp_path_factory.mktemp("reference") / "reference.flv", seconds=3)


def _factory(peer_class, rtmp_peers: PeerSet, out_default: Callable[[int], Path] | None = None):
    def make(url: str, *args, start: bool = True, **options):
        number = rtmp_peers.next_number()
        if out_default is not None and not args and "out" not in options:
            options["out"] = out_default(number)
        options.setdefault("log_dir", rtmp_peers.log_dir)
        with _skip_if_unavailable():
            peer = peer_class(url, *args, **options)
        return rtmp_peers.add(peer, start=start)

    make.__doc__ = f"Make a {peer_class.__name__} (started unless start=False)."
    return make


@pytest.fixture
def ffmpeg_publisher_factory(rtmp_peers: PeerSet) -> Callable[..., FfmpegPublisher]:
    """``make(url, seconds=3, size, fps, gop, audio, realtime, source_file, app=...)``."""
    return _factory(FfmpegPublisher, rtmp_peers)


@pytest.fixture
def gst_publisher_factory(rtmp_peers: PeerSet) -> Callable[..., GstPublisher]:
    """``make(url, element="rtmpsink"|"rtmp2sink", seconds=3, ..., app=...)``."""
    return _factory(GstPublisher, rtmp_peers)


@pytest.fixture
def rtmpdump_player_factory(tmp_path: Path, rtmp_peers: PeerSet) -> Callable[..., RtmpdumpPlayer]:
    """``make(url, out=tmp_path/"rtmpdump-N.flv", seconds=None, app=..., idle_timeout=10)``."""
    return _factory(RtmpdumpPlayer, rtmp_peers, lambda n: tmp_path / f"rtmpdump-{n}.flv")


@pytest.fixture
def gst_player_factory(tmp_path: Path, rtmp_peers: PeerSet) -> Callable[..., GstPlayer]:
    """``make(url, out=tmp_path/"gst-player-N.flv", seconds=None, app=...)``; out=None discards."""
    return _factory(GstPlayer, rtmp_peers, lambda n: tmp_path / f"gst-player-{n}.flv")


@pytest.fixture
def ffmpeg_recorder_factory(tmp_path: Path, rtmp_peers: PeerSet) -> Callable[..., FfmpegRecorder]:
    """``make(url, out=tmp_path/"ffmpeg-record-N.flv", seconds=None, app=...)``."""
    return _factory(FfmpegRecorder, rtmp_peers, lambda n: tmp_path / f"ffmpeg-record-{n}.flv")


@pytest.fixture
def rtmprelay_factory(rtmp_peers: PeerSet) -> Iterator[Callable[..., RelayProcess]]:
    """``make(args=(), port=None, tls=None) -> RelayProcess``: the relay, listening.

    ``args`` are rtmprelay's own options (``["--forward", url]``); ``tls=(key, cert)``
    listens for RTMPS. ``.url(path)`` and ``.log_text`` help the test.
    """

    relays: list[RelayProcess] = []

    def make(args=(), **options) -> RelayProcess:
        options.setdefault("log_dir", rtmp_peers.log_dir)
        relay = RelayProcess(args, **options)
        relays.append(relay)
        return rtmp_peers.add(relay)

    yield make
    # A traceback in the relay's log is a bug even when the media came through.
    for relay in relays:
        problems = relay.unexpected_errors()
        if problems:
            pytest.fail(f"rtmprelay logged unexpected errors:\n{problems}", pytrace=False)


@pytest.fixture
def headless_chromium(rtmp_peers: PeerSet) -> Iterator[HeadlessChromium]:
    """Debian's headless Chromium driven by Selenium (``.driver``); ``.screenshot(name)`` and its
    console log (at teardown) go to ``rtmp_peers.log_dir``. Skips without chromium, chromedriver or selenium."""
    with _skip_if_unavailable():
        browser = HeadlessChromium(rtmp_peers.log_dir)
    try:
        yield browser
    finally:
        browser.close()


# --- dirty streams (rtmprelay.testing.dirty, .dirty_publisher) -----------------


@pytest.fixture(scope="session")
def dirty_stream_factory(tmp_path_factory: pytest.TempPathFactory):
    """``make(spec=None, **spec_fields) -> DirtyStream``: real H.264 + AAC with scripted faults.

    Encoded with PyAV once per spec and session (cached in memory and in a
    session temp folder); ``make(seconds=3, faults=[AVSkew(400)])`` builds the
    `DirtyStreamSpec` for you. Skips the test without PyAV/libx264.
    """
    from rtmprelay.testing.dirty import DirtyStreamSpec, make_dirty_stream

    cache_dir = tmp_path_factory.mktemp("dirty-streams")
    made: dict = {}

    def make(spec=None, /, **fields):
        if spec is None:
            spec = DirtyStreamSpec(**fields)
        elif fields:
            raise TypeError("give a DirtyStreamSpec or its fields, not both")
        if spec not in made:
            with _skip_if_unavailable():
                made[spec] = make_dirty_stream(spec, cache_dir=cache_dir)
        return made[spec]

    return make


@pytest.fixture
def dirty_publisher_factory(rtmp_peers: PeerSet):
    """``make(url, stream, speed=1.0, *, start=True, **DirtyPublisher options) -> DirtyPublisher``.

    Publishes a `DirtyStream` unchanged, paced on each message's send time
    (``speed`` times real time; None: unpaced). ``.wait()`` returns 0 when it
    went through, ``.check()`` raises naming the error; stopped at teardown.
    """
    from rtmprelay.testing.dirty_publisher import DirtyPublisher

    def make(url: str, stream, speed: float | None = 1.0, *, start: bool = True, **options) -> DirtyPublisher:
        publisher = DirtyPublisher(url, stream, speed=speed, **options)
        return rtmp_peers.add(publisher, start=start)

    return make


@pytest.fixture(scope="session")
def encoder_tags(tmp_path_factory: pytest.TempPathFactory):
    """``get(encoder, fps=30, seconds=10.0, marked=False) -> list[FlvTag]``: a real encoder's
    own FLV output (`rtmprelay.testing.dirty.ENCODERS`, a GOP of two seconds; with
    ``marked``, ffmpeg's sync-marked stream, `encode_marked_flv`), its audio and video tags
    in file order. Made once per arguments and session; skips the test without the encoder.
    """
    from rtmprelay.testing.dirty import encode_flv, encode_marked_flv
    from rtmprelay.testing.flv import read_flv_tags

    folder = tmp_path_factory.mktemp("encoders")
    made: dict = {}

    def get(encoder: str = "x264-baseline", fps: int = 30, seconds: float = 10.0, marked: bool = False):
        key = (encoder, fps, seconds, marked)
        if key not in made:
            name = f"{'marked' if marked else encoder}-{fps}-{seconds:g}.flv"
            try:
                if marked:
                    path = encode_marked_flv(folder / name, seconds=seconds, fps=fps)
                else:
                    path = encode_flv(folder / name, encoder, seconds=seconds, fps=fps, gop=2 * fps)
                made[key] = [t for t in read_flv_tags(path) if t.tag_type in (8, 9)]
            except PeerUnavailable as error:
                made[key] = error
        if isinstance(made[key], PeerUnavailable):
            pytest.skip(f"{encoder}: {made[key]}")
        return made[key]

    return get
