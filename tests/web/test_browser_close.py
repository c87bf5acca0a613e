"""The browser tests' Chromium cannot hang the run when it stops answering.

(``tests/support/browser.py``.)
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import psutil
import pytest

from tests.support.browser import CHROMIUM, launched_chromium, playwright_drivers

pytest.importorskip("playwright.sync_api", reason="playwright not installed")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason=f"{CHROMIUM} not installed (Debian package chromium)"
)


def _gone(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess):
        return process.status() == psutil.STATUS_ZOMBIE  # killed, not yet reaped by its parent
    return True


def test_launched_chromium_closes_when_the_browser_stops_answering() -> None:
    """Every browser process stopped (SIGSTOP): without the kill, Playwright's close never ends."""
    with (
        pytest.warns(UserWarning, match="closing Chromium took over 2 s"),
        launched_chromium(close_timeout_s=2.0) as browser,
    ):
        browser.new_page().goto("about:blank")
        (driver,) = playwright_drivers()
        browsers = driver.children(recursive=True)
        assert browsers
        for process in browsers:
            process.suspend()
    assert playwright_drivers() == []
    deadline = time.monotonic() + 30  # SIGKILL lands asynchronously
    while not all(_gone(p) for p in [driver, *browsers]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(p) for p in [driver, *browsers])
