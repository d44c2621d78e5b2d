"""LL-HLS from real publishes, read by real clients: a blocking-reload client that
follows the parts as an LL-HLS player does, ffmpeg as a plain HLS player of the
same playlist, and hls.js (low-latency mode) in headless Chromium. The publisher
paints its wall-clock time into every picture (rtmprelay.testing.marks), so the
players' glass-to-player latency is measured; nothing here asserts how long it is
(see bench/hls_latency.py and docs/performance.md for the figures)."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import pytest

from rtmprelay.testing.hls import read_low_latency
from rtmprelay.testing.marks import BROWSER_PLAYER_JS, FfmpegMarkReader, MarkedPublisher
from tests.integration.test_status_page_browser import wait_for

pytestmark = pytest.mark.peers

PATH = "live/user1/glasses"
FOLDER = "user1/glasses"
_PART = re.compile(r"video_(\d+)\.(\d+)\.m4s")


def fetch(url: str) -> tuple[int, str, float]:
    """(status, body, seconds it took)."""
    began = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read().decode(), time.monotonic() - began
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), time.monotonic() - began


def ll_relay(rtmprelay_factory, tmp_path, mode: str):
    return rtmprelay_factory(["--hls", str(tmp_path / "hls"), "--hls-segment-type", "fmp4", "--hls-mode", mode])


def follow_parts(relay, responses: int, name: str = "video.m3u8") -> list:
    """An LL-HLS client's playlist loop: each reload asks (blocking) for the part after
    the last one it has; returns every playlist read, each checked against the rules."""
    url = relay.http_url(f"/hls/{FOLDER}/{name}")
    assert wait_for(lambda: fetch(url)[0] == 200, 30), relay.log_text
    status, text, _ = fetch(url)
    read = []
    for _ in range(responses):
        playlist = read_low_latency(text)
        assert playlist.problems == (), text
        read.append(playlist)
        if playlist.ended:
            break
        last = playlist.parts[-1]
        whole = {msn for msn, _, _ in playlist.segments}
        msn, part = (last.msn + 1, 0) if last.msn in whole else (last.msn, last.index + 1)
        status, text, took = fetch(f"{url}?_HLS_msn={msn}&_HLS_part={part}")
        assert status == 200, (status, text)
        after = read_low_latency(text)
        assert after.ended or (after.parts[-1].msn, after.parts[-1].index) >= (msn, part) or after.segments[-1][0] >= msn
    return read


@pytest.mark.parametrize("mode", ["transcode", "copy"])
def test_an_ll_client_follows_the_parts_and_ffmpeg_plays_the_same_playlist(rtmprelay_factory, rtmp_peers, tmp_path, mode):
    relay = ll_relay(rtmprelay_factory, tmp_path, mode)
    publisher = MarkedPublisher([relay.url(PATH)], 30, size=(320, 192), log_dir=rtmp_peers.log_dir).start()
    reader = None
    try:
        read = follow_parts(relay, 25)
        # 25 blocking reloads, each answered with the part it asked for: about five a second
        assert len(read) == 25
        parts = [(p.msn, p.index) for playlist in read for p in playlist.parts]
        assert len(set(parts)) >= 24  # a new part for every reload after the first read
        # the audio rendition's playlist keeps the same rules and reports the video's parts
        audio = follow_parts(relay, 10, "audio.m3u8")
        assert len(audio) == 10
        assert [report["URI"] for report in audio[-1].rendition_reports] == ["video.m3u8"]
        # a plain HLS client of the same master playlist: whole segments, the part tags skipped
        reader = FfmpegMarkReader(relay.http_url(f"/hls/{FOLDER}/index.m3u8"), 6, log_dir=rtmp_peers.log_dir).start()
        reader.wait(60)
        assert len(reader.samples) >= 5 * 25, reader.log_text
        # a frame cannot reach a player before it is painted: the marks read back are sane
        assert all(latency > 0 for _, latency in reader.samples), reader.samples[:10]
        # the whole segments the plain client read are the parts' bytes
        status, text, _ = fetch(relay.http_url(f"/hls/{FOLDER}/video.m3u8"))
        playlist = read_low_latency(text)
        segment_msn, segment_uri, _ = next(s for s in playlist.segments if any(p.msn == s[0] for p in playlist.parts))
        folder = tmp_path / "hls" / FOLDER
        joined = b"".join((folder / p.uri).read_bytes() for p in playlist.parts if p.msn == segment_msn)
        assert (folder / segment_uri).read_bytes().endswith(joined)
    finally:
        if reader is not None:
            reader.stop()
        publisher.stop()
    assert publisher.error is None, publisher.log_text


def test_numbering_goes_on_across_a_publisher_reconnect(rtmprelay_factory, rtmp_peers, tmp_path):
    relay = ll_relay(rtmprelay_factory, tmp_path, "transcode")
    url = relay.http_url(f"/hls/{FOLDER}/video.m3u8")
    first = MarkedPublisher([relay.url(PATH)], 5, size=(320, 192), log_dir=rtmp_peers.log_dir / "first").start()
    seen: list[tuple[int, int, bool]] = []

    def collect():
        status, text, _ = fetch(url)
        if status == 200:
            for part in read_low_latency(text).parts:
                if (part.msn, part.index, part.discontinuity) not in seen:
                    seen.append((part.msn, part.index, part.discontinuity))
        return status

    try:
        wait_for(lambda: collect() == 200, 30)
        while first._thread.is_alive():
            collect()
            time.sleep(0.1)
        first.wait(30)
    finally:
        first.stop()
    collect()
    second = MarkedPublisher([relay.url(PATH)], 8, size=(320, 192), log_dir=rtmp_peers.log_dir / "second").start()
    try:
        ended_at = time.monotonic() + 8
        while time.monotonic() < ended_at:
            collect()
            status, text, _ = fetch(url)
            assert read_low_latency(text).problems == (), text
            time.sleep(0.1)
    finally:
        second.stop()
    order = sorted({(msn, index) for msn, index, _ in seen})
    # no part number skipped or repeated: the next index, or part 0 of the next segment
    for (msn, index), (next_msn, next_index) in zip(order, order[1:]):
        assert (next_msn, next_index) in ((msn, index + 1), (msn + 1, 0)), order
    marked = [(msn, index) for msn, index, discontinuity in seen if discontinuity]
    assert len(marked) == 1 and marked[0][1] == 0, seen
    assert marked[0][0] > order[0][0]


def test_hls_js_plays_ll_hls_with_blocking_reloads_and_parts(rtmprelay_factory, rtmp_peers, tmp_path, headless_chromium):
    relay = ll_relay(rtmprelay_factory, tmp_path, "transcode")
    publisher = MarkedPublisher([relay.url(PATH)], 40, size=(320, 192), log_dir=rtmp_peers.log_dir).start()
    driver = headless_chromium.driver
    try:
        assert wait_for(lambda: fetch(relay.http_url(f"/hls/{FOLDER}/index.m3u8"))[0] == 200, 30), relay.log_text
        driver.get(relay.http_url("/health"))
        driver.execute_script(
            BROWSER_PLAYER_JS, "ll", relay.http_url("/static/vendor/hls.light.min.js"),
            relay.http_url(f"/hls/{FOLDER}/index.m3u8"), True,
        )  # fmt: skip
        state = "return {n: window.rtmprelay.ll.samples.length, errors: window.rtmprelay.ll.errors}"
        progress = wait_for(lambda: (s := driver.execute_script(state)) and (s["n"] >= 150 or s["errors"]) and s, 40)
        headless_chromium.screenshot("llhls.png")
        assert progress and not progress["errors"], (progress, headless_chromium.console())
        samples = driver.execute_script("return window.rtmprelay.ll.samples")
        assert all(latency > 0 for _, latency in samples), samples[:10]
        fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        # hls.js asked for the playlist with delivery directives, and fetched parts
        assert any("_HLS_msn=" in name and "_HLS_part=" in name for name in fetched), fetched
        assert any(_PART.search(name) for name in fetched), fetched
    finally:
        publisher.stop()
