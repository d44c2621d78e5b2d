"""rtmprelay.testing.browser: where Chromium is missing, the test is skipped saying what to install."""

from __future__ import annotations

import shutil

import pytest

from rtmprelay.testing import browser
from rtmprelay.testing.peers import PeerUnavailable


def test_a_missing_chromium_names_the_packages_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(PeerUnavailable, match="apt-get install chromium chromium-driver"):
        browser.HeadlessChromium(tmp_path)
