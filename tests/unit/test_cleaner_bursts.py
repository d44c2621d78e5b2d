"""An encoder's start and end are not a drifting clock (issue 9, point 2).

A real ffmpeg publisher (`-re`, libx264 with lookahead, AAC) sends its first
frames late and together (the encoders fill their lookahead first), then each
message about 160 ms after its timestamp, and when it stops it flushes the
encoders: the last 200 ms of both tracks arrive within a few milliseconds,
earlier against their timestamps than anything before. Read as clock drift,
that flush made the relay drop five or six AAC frames at the end of every
60 fps ffmpeg publish (3 at 30 fps), audible cuts in the last half second.
Measured on a capture of `ffmpeg -re -f lavfi -i testsrc2=rate=60 ... -f flv`
into the relay. Both tracks move alike: that is the encoder, not a clock.
"""

from __future__ import annotations

import random

import pytest

from rtmprelay.media.cleaner import CleanerConfig, StreamCleaner
from rtmprelay.media.message import MediaMessage

CLOUDFLARE = CleanerConfig.from_profile("cloudflare")
DELAY_S = 0.16  # the encoders' steady delay, as measured
START_S = 0.40  # the first messages leave together this long after the start
FLUSH_MS = 200  # the last this many ms of media leave together at the end


def like_ffmpeg(tags, seed):
    """Arrival times of an encoder's output, in the muxer's order (one TCP connection keeps
    it): late together at the start, steady, flushed at the end."""
    rng = random.Random(seed)
    end_ms = max(tag.timestamp for tag in tags)
    flush_at = (end_ms - FLUSH_MS) / 1000 + DELAY_S + 0.005
    arrivals = []
    last = 0.0
    for tag in tags:
        if tag.timestamp >= end_ms - FLUSH_MS:
            at = flush_at + rng.uniform(0, 0.016)
        else:
            at = max(START_S, tag.timestamp / 1000 + DELAY_S) + rng.uniform(0, 0.005)
        last = max(at, last)
        arrivals.append((last, tag))
    return arrivals


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("fps", [30, 60])
@pytest.mark.parametrize("encoder", ["x264-baseline", "x264-default"])
def test_an_encoders_start_and_flush_move_no_audio_frame(encoder_tags, encoder, fps, seed):
    tags = encoder_tags(encoder, fps, seconds=8)
    cleaner = StreamCleaner(CLOUDFLARE)
    out = []
    now = 0.0
    for now, tag in like_ffmpeg(tags, seed):
        out += cleaner.push(MediaMessage.of(tag.tag_type, tag.timestamp, tag.payload), now)
    out += cleaner.poll(now + 5)
    out += cleaner.finish()
    counters = cleaner.counters
    assert counters.audio_dropped == 0 and counters.audio_drift_inserted == 0, counters
    # every frame out; at 60 fps the grid's rise may move the audio on by one silent frame
    assert counters.audio_out - counters.audio_in == counters.silence_inserted <= (1 if fps > 30 else 0), counters
    assert counters.video_out == counters.video_in, counters
