"""Glass-to-player latency (issue 13): LL-HLS against plain HLS, same frames, same run.

    .venv/bin/python bench/hls_latency.py [--mode transcode] [--seconds 60] [--warmup 15] [--no-browser]

One marked publisher (``rtmprelay.testing.marks``: Python paints each picture
with its wall-clock time in ms, ffmpeg encodes it with x264 zerolatency, no
B-frames, a 2 s GOP, and the tee muxer sends the same packets to both relays)
feeds two rtmprelay daemons on 127.0.0.1, ports chosen at run time:

    ll      --hls-segment-type fmp4 (LL-HLS: 200 ms parts, blocking reloads)
    plain   --hls-segment-type fmp4 --hls-part 0 (the same CMAF segments, no parts)

both in ``--mode`` (transcode by default: the relay decodes and encodes again,
as the old relay did). Players, all at once, each on its relay's index.m3u8:

    hls.js   hls.js 1.7.4 (the vendored light build) in Debian's headless Chromium,
             lowLatencyMode on for ll, off for plain (what a page would set for each):
             for every frame the video element presents, Date.now() - the mark read
             off a canvas
    ffmpeg   ``ffmpeg -i URL`` decoding as fast as it reads (no playout buffer: the
             earliest a plain client could show each frame; ffmpeg skips LL-HLS tags)

Latency = the wall clock when the player has the frame - the wall clock when it
was painted (one machine, one clock). Frames from the first ``--warmup`` s of
each player are left out (start-up, catching up). Reports count, p50, p90, min
and max per player and relay, and the ratio ll / plain of the p50s. Logs and a
JSON summary go to bench/results/hls_latency-<time>/ (gitignored).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtmprelay.testing.marks import BROWSER_PLAYER_JS, FfmpegMarkReader, MarkedPublisher, summary  # noqa: E402
from rtmprelay.testing.peers import PeerUnavailable  # noqa: E402
from rtmprelay.testing.relay import RelayProcess  # noqa: E402

HERE = Path(__file__).resolve().parent
STREAM = "live/bench/marked"
RELAYS = {
    "ll": ["--hls-segment-type", "fmp4"],
    "plain": ["--hls-segment-type", "fmp4", "--hls-part", "0"],
}


READ_STATE = """const state = window.rtmprelay[arguments[0]];
return state && {samples: state.samples, errors: state.errors, hlsLatency: state.hlsLatency};"""


def wait_for_playlist(relay: RelayProcess, timeout: float = 30.0) -> None:
    url = relay.http_url(f"/hls/{STREAM.split('/', 1)[1]}/index.m3u8")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not appear in {timeout:g} s\n{relay.log_text[-3000:]}")


def steady(samples, since_ms: int) -> list[float]:
    return [latency for at, latency in samples if at >= since_ms]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("transcode", "copy"), default="transcode")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window after the warm-up")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--no-browser", action="store_true", help="ffmpeg players only")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = HERE / "results" / f"hls_latency-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    relays, players, browser = {}, {}, None
    total = args.warmup + args.seconds
    publisher = None
    try:
        for name, extra in RELAYS.items():
            hls_dir = out / f"hls-{name}"
            relays[name] = RelayProcess(
                ["--hls", str(hls_dir), "--hls-mode", args.mode, *extra], log_dir=out / f"relay-{name}"
            ).start()
        urls = [relay.url(STREAM) for relay in relays.values()]
        publisher = MarkedPublisher(urls, total + 30, size=(width, height), log_dir=out).start()
        for relay in relays.values():
            wait_for_playlist(relay)
        started_ms = time.time_ns() // 1_000_000
        playlists = {name: relay.http_url(f"/hls/{STREAM.split('/', 1)[1]}/index.m3u8") for name, relay in relays.items()}
        for name, url in playlists.items():
            players[("ffmpeg", name)] = FfmpegMarkReader(url, total + 5, log_dir=out).start()
        if not args.no_browser:
            from rtmprelay.testing.browser import HeadlessChromium

            try:
                browser = HeadlessChromium(out / "chromium")
            except PeerUnavailable as error:
                print(f"no browser: {error}", file=sys.stderr)
            else:
                first = next(iter(relays.values()))
                browser.driver.get(first.http_url("/health"))  # the relays' origin: hls.js and the playlists
                for name, url in playlists.items():
                    browser.driver.execute_script(
                        BROWSER_PLAYER_JS, name, first.http_url("/static/vendor/hls.light.min.js"), url, name == "ll"
                    )
        time.sleep(total)
        since = started_ms + int(args.warmup * 1000)
        results = {}
        for (player, name), reader in players.items():
            results[f"ffmpeg/{name}"] = summary(steady(reader.samples, since))
        if browser is not None:
            for name in relays:
                state = browser.driver.execute_script(READ_STATE, name) or {}
                samples = [tuple(sample) for sample in state.get("samples", [])]
                results[f"hls.js/{name}"] = summary(steady(samples, since))
                results[f"hls.js/{name}"]["errors"] = state.get("errors", [])
                estimates = state.get("hlsLatency", [])
                if estimates:
                    results[f"hls.js/{name}"]["hls.js's own latency estimate p50 (s)"] = sorted(estimates)[len(estimates) // 2]
            browser.screenshot("players.png")
        for player in ("hls.js", "ffmpeg"):
            ll, plain = results.get(f"{player}/ll", {}), results.get(f"{player}/plain", {})
            if ll.get("p50") and plain.get("p50"):
                results[f"{player} ll/plain p50"] = round(ll["p50"] / plain["p50"], 3)
        report = {
            "command": " ".join(sys.argv),
            "mode": args.mode,
            "size": args.size,
            "warmup_s": args.warmup,
            "window_s": args.seconds,
            "frames_painted": publisher.painted,
            "results": results,
        }
        (out / "summary.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
        return 0
    finally:
        if browser is not None:
            browser.close()
        for reader in players.values():
            reader.stop()
        if publisher is not None:
            publisher.stop()
        for relay in relays.values():
            relay.stop()


if __name__ == "__main__":
    sys.exit(main())
