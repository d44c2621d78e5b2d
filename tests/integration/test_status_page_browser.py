"""The status page in a real browser (Debian's headless Chromium): ffmpeg publishes, the page
lists the stream, its preview plays the stream's HLS through hls.js. Screenshots are kept in the
test's peer-logs folder beside the relay's and ffmpeg's logs."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

pytestmark = pytest.mark.peers

#: The issue's bound: a stream the relay has is on the page within 3 s (the page polls every second).
LISTED_WITHIN_S = 3.0

ROW = "tr[data-path='{path}']"


def listed_by_api(relay, path: str) -> bool:
    with urllib.request.urlopen(relay.http_url("/api/streams"), timeout=10) as response:
        return any(stream["path"] == path for stream in json.load(response))


def wait_for(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def row_text(driver, path: str) -> str | None:
    return driver.execute_script(
        "const row = document.querySelector(arguments[0]); return row ? row.innerText : null;", ROW.format(path=path)
    )


def video_state(driver, path: str) -> dict | None:
    return driver.execute_script(
        """const video = document.querySelector(arguments[0] + ' video');
        if (!video) return null;
        return {time: video.currentTime, error: video.error && video.error.code, paused: video.paused,
                width: video.videoWidth, height: video.videoHeight};""",
        ROW.format(path=path),
    )


def open_page_and_see_the_stream(browser, relay, publisher_factory, path: str, **publish) -> str:
    """Open the page, then publish: the row appears within LISTED_WITHIN_S of the relay listing the stream."""
    driver = browser.driver
    driver.get(relay.http_url("/"))
    assert wait_for(lambda: "live stream" in driver.find_element("id", "summary").text, timeout=10)
    publisher_factory(relay.url(path), **publish)
    assert wait_for(lambda: listed_by_api(relay, path), timeout=20), relay.log_text
    listed_at = time.monotonic()
    text = wait_for(lambda: row_text(driver, path), timeout=LISTED_WITHIN_S + 2)
    waited = time.monotonic() - listed_at
    assert text, f"the page did not list {path}"
    assert waited <= LISTED_WITHIN_S, f"the page listed {path} {waited:.1f} s after the relay had it"
    return text


def test_the_page_lists_a_live_stream_and_its_preview_plays(rtmprelay_factory, ffmpeg_publisher_factory, headless_chromium):
    relay = rtmprelay_factory(["--profile", "cloudflare"], hls=True)
    driver = headless_chromium.driver
    path = "live/user1/glasses"
    # the glasses' shape: 15 fps, a keyframe every second, far below Cloudflare's bitrate floor
    open_page_and_see_the_stream(headless_chromium, relay, ffmpeg_publisher_factory, path, seconds=30, size="640x360", fps=15, gop=15)

    first = wait_for(lambda: (state := video_state(driver, path)) and state["time"] > 0 and state, timeout=30, interval=0.25)
    assert first, f"the preview never started: {row_text(driver, path)}\n{headless_chromium.console()}"
    later = wait_for(lambda: (state := video_state(driver, path)) and state["time"] >= first["time"] + 1.5 and state, timeout=20)
    assert later, f"the preview stopped at {video_state(driver, path)}"
    assert later["error"] is None and not later["paused"]
    assert (later["width"], later["height"]) == (640, 360)

    # the bitrate rule is judged over 10 s after the first 2
    text = wait_for(lambda: "bitrate (not repaired)" in (t := row_text(driver, path)) and t, timeout=20) or row_text(driver, path)
    assert "frames repeated" in text and "keyframes relabelled" in text  # what the cleaner repaired
    assert "bitrate (not repaired)" in text  # what it could not
    assert "preview failed" not in text
    shot = headless_chromium.screenshot("status-page.png")
    print(f"screenshot: {shot}")
    errors = [m for m in headless_chromium.console() if m["level"] == "SEVERE"]
    assert not errors, errors


def test_without_hls_the_page_says_there_is_no_preview(rtmprelay_factory, ffmpeg_publisher_factory, headless_chromium):
    relay = rtmprelay_factory(["--no-hls"])
    path = "live/user1/nohls"
    text = open_page_and_see_the_stream(headless_chromium, relay, ffmpeg_publisher_factory, path, seconds=20, size="160x96", fps=30, gop=60)
    assert "HLS is off for this stream: no preview" in text
    assert video_state(headless_chromium.driver, path) is None
    headless_chromium.screenshot("status-page-no-hls.png")


class _CannedRelay:
    """The page's own files and a /api/streams answer the test sets: how the page draws fields
    main's relay does not send yet (upstream state, A/V drift) and text a peer chose."""

    def __init__(self) -> None:
        import http.server
        import threading

        from rtmprelay.web.status import load_static

        files = load_static()
        self.streams: list = []
        canned = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path == "/api/streams":
                    body, kind = json.dumps(canned.streams).encode(), "application/json"
                else:
                    file = files.get("index.html" if self.path == "/" else self.path.removeprefix("/static/"))
                    if file is None:
                        self.send_error(404)
                        return
                    body, kind = file.body, file.content_type
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_fields_that_come_later_are_shown_and_peer_text_stays_text(headless_chromium):
    relay = _CannedRelay()
    hostile = "<img src=x onerror=document.title='owned'>"
    relay.streams = [
        {
            "path": "live/u1/later",
            "counters": {"video_messages": 10, "audio_messages": 12, "bytes_in": 1000, "keyframes": 1},
            "cleaner": {"input_bitrate": 2_500_000, "input_fps": 12.5, "input_keyframe_interval_s": 4.0,
                        "max_input_keyframe_interval_s": 6.5, "av_drift_ms": 42, "duplicated": 3, "repairs": {"video": {"reset": 2}}},
            "verdicts": [{"rule": "continuous_audio", "broken": True, "repaired": False, "detail": hostile}],
            "metadata": {"width": 1280.0, "height": 720.0, "framerate": 30.0, "encoder": hostile},
            "hls": None,
            "upstreams": [{"destination": "rtmps://live.example:443/live/abcd…", "state": "backing_off", "attempts": 3, "last_error": hostile}],
        }
    ]
    try:
        driver = headless_chromium.driver
        driver.get(relay.url)
        text = wait_for(lambda: row_text(driver, "live/u1/later"), timeout=5)
        assert text, driver.page_source
        for shown in ("backing off", "rtmps://live.example:443/live/abcd…", "attempts: 3", "A/V drift 42 ms",
                      "2.50 Mbit/s", "12.5 fps", "3 frames repeated", "2 video timestamp resets re-based",
                      "continuous audio (not repaired)", hostile):
            assert shown in text, (shown, text)
        assert driver.execute_script("return document.querySelectorAll('img').length") == 0
        assert driver.title != "owned"
        headless_chromium.screenshot("status-page-later-fields.png")

        relay.streams = []  # the stream ends: its row goes within a poll or two
        assert wait_for(lambda: row_text(driver, "live/u1/later") is None, timeout=5)
        assert driver.find_element("id", "empty").is_displayed()
    finally:
        relay.close()
