"""Blocking playlist reloads (LL-HLS) over real HTTP on 127.0.0.1: a request with
_HLS_msn/_HLS_part is held as a Deferred until the playlist position says its
part exists, refused when it asks too far ahead, answered 503 after three target
durations or when too many are held, and released when its client goes."""

from __future__ import annotations

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.web import server as web_server

from rtmprelay.hls.playlist import Position
from rtmprelay.web.hls import BlockingReloads, HlsResource

V0 = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.200\n...old\n"
V1 = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.200\n...new\n"


def position(segment: int, part: tuple[int, int] | None, ended: bool = False, hint: str | None = None) -> Position:
    return Position(segment, part, ended, 2, 0.2, hint)


class Served:
    def __init__(self, tmp_path, max_held: int = 10) -> None:
        self.folder = (tmp_path / "hls" / "u1" / "s1").resolve()
        self.folder.mkdir(parents=True)
        self.playlist = self.folder / "video.m3u8"
        self.playlist.write_bytes(V0)
        (self.folder / "plain.m3u8").write_bytes(V0)
        self.clock = Clock()
        self.reloads = BlockingReloads(self.clock, max_held=max_held)
        self.reloads.playlist_written(self.playlist, position(3, (4, 2)))
        site = web_server.Site(HlsResource(tmp_path / "hls", self.reloads))
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.base = f"http://127.0.0.1:{self.port.getHost().port}/u1/s1/"

    def get(self, query: str, name: str = "video.m3u8") -> defer.Deferred:
        return treq.get(self.base + name + query, persistent=False)

    def write(self, data: bytes, at: Position) -> None:
        self.playlist.write_bytes(data)
        self.reloads.playlist_written(self.playlist, at)


@pytest.fixture
def served(tmp_path):
    served = Served(tmp_path)
    yield served
    pytest_twisted.blockon(defer.maybeDeferred(served.port.stopListening))


@defer.inlineCallbacks
def until(predicate, timeout: float = 5.0):
    """Let the real reactor run (the request travels over loopback) until ``predicate()``."""
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        yield deferLater(0.01)
    raise AssertionError("timed out waiting")


def deferLater(seconds: float) -> defer.Deferred:
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)


@pytest.mark.parametrize("query", ["?_HLS_msn=3", "?_HLS_msn=4&_HLS_part=2", "?_HLS_msn=4&_HLS_part=1", "?_HLS_msn=1"])
@pytest_twisted.inlineCallbacks
def test_what_is_there_is_answered_at_once(served, query):
    response = yield served.get(query)
    assert response.code == 200
    assert (yield treq.content(response)) == V0
    assert served.reloads.held == 0


@defer.inlineCallbacks
def answered_after(served, query: str, *writes):
    """Ask with ``query``; once it is held, write each (data, position): every
    write but the last leaves it held. Returns (response, body)."""
    answer = served.get(query)
    yield until(lambda: served.reloads.held == 1)
    for data, at in writes[:-1]:
        served.write(data, at)
        assert served.reloads.held == 1, at
    served.write(*writes[-1])
    response = yield answer
    body = yield treq.content(response)
    return response, body


@pytest_twisted.inlineCallbacks
def test_a_reload_is_held_until_its_part_is_listed(served):
    # a rewrite that does not reach the part leaves it held
    response, body = yield answered_after(served, "?_HLS_msn=4&_HLS_part=3", (V0, position(3, (4, 2))), (V1, position(3, (4, 3))))
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["application/vnd.apple.mpegurl"]
    assert response.headers.getRawHeaders("cache-control") == ["no-cache"]
    assert body == V1
    assert served.reloads.held == 0
    assert served.reloads.counters["answered"] == 1


@pytest_twisted.inlineCallbacks
def test_a_part_past_the_end_of_its_segment_is_answered_by_the_next_segments_first(served):
    # hls.js asks for part N of segment M; segment M whole holds everything of it
    response, _ = yield answered_after(served, "?_HLS_msn=4&_HLS_part=5", (V0, position(4, (4, 4))))
    assert response.code == 200
    # ... and part 0 of M + 1 is the part after its last
    _, body = yield answered_after(served, "?_HLS_msn=5&_HLS_part=0", (V1, position(4, (5, 0))))
    assert body == V1


@pytest_twisted.inlineCallbacks
def test_a_segment_request_waits_for_the_whole_segment(served):
    _, body = yield answered_after(served, "?_HLS_msn=4", (V0, position(3, (4, 9))), (V1, position(4, (4, 9))))
    assert body == V1


@pytest_twisted.inlineCallbacks
def test_an_ended_playlist_answers_everything(served):
    response, body = yield answered_after(served, "?_HLS_msn=5&_HLS_part=1", (V1, position(4, (4, 3), ended=True)))
    assert (response.code, body) == (200, V1)


@pytest_twisted.inlineCallbacks
def test_no_answer_in_three_target_durations_is_503(served):
    answer = served.get("?_HLS_msn=4&_HLS_part=3")
    yield until(lambda: served.reloads.held == 1)
    served.clock.advance(5.9)
    assert served.reloads.held == 1
    served.clock.advance(0.1)  # 3 x the 2 s target duration
    response = yield answer
    assert response.code == 503
    assert served.reloads.held == 0
    assert served.reloads.counters["timed_out"] == 1


@pytest.mark.parametrize(
    "query",
    [
        "?_HLS_msn=6",  # more than two segments past the last whole one (3)
        "?_HLS_msn=4&_HLS_part=18",  # 16 parts past the last part (4, 2); the limit is 3 / 0.2 = 15
        "?_HLS_msn=5&_HLS_part=15",  # 16 parts into the next segment
    ],
)
@pytest_twisted.inlineCallbacks
def test_too_far_ahead_is_400_at_once(served, query):
    response = yield served.get(query)
    assert response.code == 400
    assert served.reloads.held == 0
    assert served.reloads.counters["too_far"] == 1


@pytest.mark.parametrize("query", ["?_HLS_part=3", "?_HLS_msn=x", "?_HLS_msn=-1", "?_HLS_msn=4&_HLS_part=1.5", "?_HLS_msn=4&_HLS_msn=5"])
@pytest_twisted.inlineCallbacks
def test_malformed_directives_are_400(served, query):
    response = yield served.get(query)
    assert response.code == 400
    assert served.reloads.counters["bad_request"] == 1


@pytest_twisted.inlineCallbacks
def test_the_limit_just_inside_is_held(served):
    answer = served.get("?_HLS_msn=4&_HLS_part=17")  # 15 parts past (4, 2)
    yield until(lambda: served.reloads.held == 1)
    served.write(V1, position(4, (5, 0)))
    response = yield answer
    assert response.code == 200


@pytest_twisted.inlineCallbacks
def test_directives_on_a_playlist_without_parts_are_ignored(served):
    response = yield served.get("?_HLS_msn=99&_HLS_part=1", name="plain.m3u8")
    assert response.code == 200
    assert served.reloads.held == 0


@pytest_twisted.inlineCallbacks
def test_held_requests_are_bounded(tmp_path):
    served = Served(tmp_path, max_held=2)
    try:
        first, second = served.get("?_HLS_msn=4&_HLS_part=3"), served.get("?_HLS_msn=4&_HLS_part=4")
        yield until(lambda: served.reloads.held == 2)
        response = yield served.get("?_HLS_msn=4&_HLS_part=3")
        assert response.code == 503
        assert response.headers.getRawHeaders("retry-after") == ["1"]
        assert served.reloads.counters["refused_busy"] == 1
        served.write(V1, position(4, (5, 0)))
        assert [(yield first).code, (yield second).code] == [200, 200]
    finally:
        yield served.port.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_client_that_leaves_frees_its_place(served):
    answer = served.get("?_HLS_msn=4&_HLS_part=3")
    yield until(lambda: served.reloads.held == 1)
    answer.addErrback(lambda failure: None)  # the client's own side of the cancel
    answer.cancel()
    yield until(lambda: served.reloads.held == 0)
    assert not served.clock.getDelayedCalls()  # its timeout went with it


@pytest_twisted.inlineCallbacks
def test_files_removed_answer_404(served):
    answer = served.get("?_HLS_msn=4&_HLS_part=3")
    yield until(lambda: served.reloads.held == 1)
    served.reloads.folder_removed(served.folder)
    response = yield answer
    assert response.code == 404
    assert served.reloads.position(served.playlist) is None


@pytest_twisted.inlineCallbacks
def test_the_preload_hinted_part_is_held_until_written(served):
    served.write(V0, position(3, (4, 2), hint="video_4.3.m4s"))
    answer = served.get("", name="video_4.3.m4s")
    yield until(lambda: served.reloads.held == 1)
    (served.folder / "video_4.3.m4s").write_bytes(b"moof+mdat")
    served.write(V1, position(3, (4, 3), hint="video_4.4.m4s"))
    response = yield answer
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["video/iso.segment"]
    assert (yield treq.content(response)) == b"moof+mdat"


@pytest_twisted.inlineCallbacks
def test_a_missing_part_no_hint_names_is_404_at_once(served):
    served.write(V0, position(3, (4, 2), hint="video_4.3.m4s"))
    for name in ("video_4.4.m4s", "../s1/video_4.9.m4s", "video_4.3.txt"):
        response = yield served.get("", name=name)
        assert response.code == 404, name
    assert served.reloads.held == 0


@pytest_twisted.inlineCallbacks
def test_a_hinted_part_that_does_not_come_is_503_then_forgotten(served):
    served.write(V0, position(3, (4, 2), hint="video_4.3.m4s"))
    answer = served.get("", name="video_4.3.m4s")
    yield until(lambda: served.reloads.held == 1)
    served.clock.advance(6)
    assert (yield answer).code == 503
    served.reloads.folder_removed(served.folder)
    assert (yield served.get("", name="video_4.3.m4s")).code == 404
