"""rtmprelay.testing.marks: the wall-clock mark painted into a picture reads back,
through H.264 and scaling too, and latencies wrap with the 2**32 ms mark."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from rtmprelay.testing.marks import latency_ms, mark_picture, read_mark, summary


@pytest.mark.parametrize("ms", [0, 1, 2**32 - 1, 1_765_000_000_123])
def test_a_mark_reads_back(ms):
    assert read_mark(mark_picture(ms, 640, 360), 640, 360) == ms % 2**32


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_mark_survives_h264_and_scaling():
    marks = [1_765_000_000_000 + 33 * n for n in range(10)]
    pictures = b"".join(mark_picture(ms, 640, 360, n) for n, ms in enumerate(marks))
    done = subprocess.run(
        [
            "ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", "640x360", "-r", "30", "-i", "pipe:0",
            "-c:v", "libx264", "-b:v", "300k", "-f", "h264", "pipe:1",
        ],
        input=pictures, capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "h264", "-i", "pipe:0", "-vf", "scale=64:32", "-pix_fmt", "gray", "-f", "rawvideo", "pipe:1"],
        input=done.stdout, capture_output=True, timeout=60, check=True,
    ).stdout
    frames = [decoded[i : i + 64 * 32] for i in range(0, len(decoded), 64 * 32)]
    assert [read_mark(frame, 64, 32) for frame in frames] == [ms % 2**32 for ms in marks]


def test_latency_wraps_with_the_mark():
    assert latency_ms(2**32 - 100, 2**32 + 50) == 150
    assert latency_ms(1000, 900) == -100
    assert summary([3, 1, 2])["p50"] == 2
    assert summary([]) == {"count": 0}
