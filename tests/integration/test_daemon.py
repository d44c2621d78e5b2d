"""The daemon as a user starts it: twistd finds the plugin, --help documents
every option, bad options fail clearly."""

from __future__ import annotations

import subprocess
import sys

from rtmprelay.tap import Options

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def run(*args, cwd="/"):
    # cwd / so that only the installed package (not this checkout) can be found
    return subprocess.run([*TWISTD, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_twistd_lists_the_plugin():
    result = run("--help")
    assert "rtmprelay" in result.stdout


def test_help_documents_every_option():
    result = run("rtmprelay", "--help")
    assert result.returncode == 0, result.stderr
    names = [p[0] for p in Options.optParameters] + [f[0] for f in Options.optFlags] + ["rtmp"]
    missing = [n for n in names if f"--{n}" not in result.stdout]
    assert not missing, result.stdout


def test_bad_forward_template_is_a_usage_error():
    result = run("-n", "rtmprelay", "--forward", "rtmp://up/live/{nope}")
    assert result.returncode != 0
    assert "unknown placeholder {nope}" in result.stdout + result.stderr


def test_console_script_runs_the_same_plugin():
    result = subprocess.run(
        [sys.executable, "-m", "rtmprelay", "--fps", "abc"], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert result.returncode != 0
    assert "--fps takes a number" in result.stdout + result.stderr
