"""Headless Chromium for tests that look at a page as a person would.

Debian's ``chromium`` and ``chromium-driver`` packages, driven through
WebDriver by Selenium. Why Selenium rather than Playwright: Debian builds
chromedriver from the same source as its chromium, so driver and browser always
match; Playwright speaks a protocol pinned to the Chromium build it downloads
itself, and no browser is downloaded here. Selenium is given both paths, so its
Selenium Manager (which would download drivers) never runs.

Without the browser, its driver or the selenium module, :class:`HeadlessChromium`
raises :class:`PeerUnavailable` naming what to install, and the plugin skips
the test. ``close()`` writes the browser's console log to ``log_dir``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from rtmprelay.testing.peers import PeerUnavailable

__all__ = ["CHROMIUM_FLAGS", "HeadlessChromium"]

INSTALL_HINT = "apt-get install chromium chromium-driver (scripts/install.sh does)"
#: Flags that work as root on a machine with no network but loopback: without the
#: background-networking ones Chromium keeps dialling Google and logging refusals.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
)


def _find(names: tuple[str, ...], what: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise PeerUnavailable(f"{what} not found (looked for {', '.join(names)}): {INSTALL_HINT}")


class HeadlessChromium:
    """A headless Chromium (``.driver``, a Selenium WebDriver) with its own profile folder."""

    def __init__(self, log_dir: str | os.PathLike[str], *, window: tuple[int, int] = (1400, 800)) -> None:
        browser = _find(("chromium", "chromium-browser"), "Chromium")
        driver_path = _find(("chromedriver",), "chromedriver")
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError:
            raise PeerUnavailable("the selenium module is not installed: pip install -e '.[test]'") from None
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=self.log_dir)
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", f"--window-size={window[0]},{window[1]}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(driver_path, log_output=str(self.log_dir / "chromedriver.log"))
        self.driver = webdriver.Chrome(service=service, options=options)
        self._console: list[dict] = []

    def screenshot(self, name: str) -> Path:
        """A PNG of the window, kept in ``log_dir``."""
        path = self.log_dir / name
        self.driver.save_screenshot(str(path))
        return path

    def console(self) -> list[dict]:
        """Every console message so far: ``{"level", "message", "source", "timestamp"}``."""
        self._console += self.driver.get_log("browser")
        return list(self._console)

    def close(self) -> None:
        try:
            messages = self.console()
            (self.log_dir / "chromium-console.log").write_text("".join(json.dumps(m) + "\n" for m in messages))
        finally:
            self.driver.quit()
            shutil.rmtree(self._profile, ignore_errors=True)
