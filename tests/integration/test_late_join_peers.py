"""A player that joins a live stream late, with a real player: GStreamer's rtmp2src.

Before issue 9 the relay sent a late joiner the sequence headers at 0 and then
media from where the stream was (about 3 s here): ffmpeg read 82 non-monotonic
DTS lines from such a capture, none from the same capture off nginx-rtmp. Each
player now gets a timeline of its own that starts where its first frame starts.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from rtmprelay.testing.flv import decode_check, read_flv_tags
from rtmprelay.testing.peers import find_tool

pytestmark = pytest.mark.peers


def test_a_late_rtmp2src_player_gets_one_timeline_from_zero(rtmprelay_factory, ffmpeg_publisher_factory, gst_player_factory):
    relay = rtmprelay_factory()  # cleaning on, as by default; no HLS
    url = relay.url("live/user1/late")
    # libx264's defaults (B-frames), 30 fps, a keyframe every 2 s: the README's publisher
    publisher = ffmpeg_publisher_factory(url, seconds=9, fps=30, gop=60)
    deadline = time.monotonic() + 20
    while "publish live/user1/late" not in relay.log_text:
        assert time.monotonic() < deadline, relay.log_text
        time.sleep(0.1)
    time.sleep(3.0)  # the player joins 3 s into the stream, mid-GOP
    player = gst_player_factory(url)  # rtmp2src ends when the stream is unpublished
    assert publisher.wait() == 0, publisher.describe()
    assert player.wait() == 0, player.describe()

    tags = [t for t in read_flv_tags(player.out) if t.kind in ("audio", "video")]
    media = [t for t in tags if not t.is_header]
    assert len([t for t in media if t.kind == "video"]) >= 30 * 4, len(media)  # about 5 s of it
    assert media[0].timestamp <= 100, [t.timestamp for t in tags[:6]]  # from 0, not from 3 s
    for kind in ("audio", "video"):
        times = [t.timestamp for t in media if t.kind == kind]
        assert times == sorted(times), (kind, times[:20])
    ffmpeg = subprocess.run(
        [find_tool("ffmpeg"), "-hide_banner", "-nostdin", "-i", str(player.out), "-f", "null", "-"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "non monotonic" not in ffmpeg.stderr.lower() and "non-monotonic" not in ffmpeg.stderr.lower(), ffmpeg.stderr[-2000:]
    assert decode_check(player.out).clean
