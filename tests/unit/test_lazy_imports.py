"""PyAV is loaded by the first transcode or MPEG-TS segment, not by the relay's start.

A relay that only forwards, or writes fMP4 HLS in copy mode, never needs it;
loading it costs about 18 MB of resident memory for nothing (docs/performance.md).
Checked in a fresh interpreter: this test process has imported PyAV long ago.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """
import sys
from rtmprelay.tap import Options, makeService
options = Options()
options.parseOptions({args!r})
makeService(options)
print("av" in sys.modules)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--rtmp", "tcp:0:interface=127.0.0.1", "--http", "tcp:0:interface=127.0.0.1", "--no-hls"],
        ["--rtmp", "tcp:0:interface=127.0.0.1", "--http", "tcp:0:interface=127.0.0.1"],  # HLS on, no stream yet
    ],
    ids=["forwarding", "hls-idle"],
)
def test_the_relay_starts_without_pyav(tmp_path, args):
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(args=args)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", done.stderr
