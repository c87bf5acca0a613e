"""Debian's headless Chromium driven by Playwright, with a close that cannot hang the run.

Not a test module. Playwright's ``close`` and ``stop`` wait for the browser to exit, with no
limit: a Chromium that stops answering holds the test run until CI's own limit. One CI run's
browser test stood in its teardown past the suite's 300 s limit with Playwright's driver still
running. :func:`killed_if_stuck` kills the driver and every process under it once a block has
run past its limit; Playwright then sees its connection close and returns.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import psutil

logger = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: How long closing a context or the browser may take before the driver is killed: a close
#: takes well under a second here.
CLOSE_TIMEOUT_S = 60.0
#: The argument Playwright starts its Node.js driver with (``node cli.js run-driver``).
DRIVER_ARGUMENT = "run-driver"


def playwright_drivers() -> list[psutil.Process]:
    """The Playwright drivers this process started."""
    drivers = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if DRIVER_ARGUMENT in child.cmdline():
                drivers.append(child)
    return drivers


def kill_playwright_drivers() -> int:
    """Kill this process's Playwright drivers and every process under them; return how many."""
    killed = 0
    for driver in playwright_drivers():
        with contextlib.suppress(psutil.NoSuchProcess):
            for process in [*driver.children(recursive=True), driver]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
                    killed += 1
    return killed


@contextlib.contextmanager
def killed_if_stuck(timeout_s: float, what: str) -> Iterator[None]:
    """Run the block; past ``timeout_s`` kill the Playwright drivers so that it returns."""
    fired = threading.Event()

    def kill() -> None:
        fired.set()
        killed = kill_playwright_drivers()
        logger.warning(
            "%s still waiting after %.0f s: killed %d Playwright driver and browser processes",
            what,
            timeout_s,
            killed,
        )

    timer = threading.Timer(timeout_s, kill)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if fired.is_set():  # in the run's warnings summary: the test passed all the same
            warnings.warn(
                f"{what} took over {timeout_s:.0f} s: Playwright's driver was killed",
                stacklevel=3,
            )


@contextlib.contextmanager
def launched_chromium(close_timeout_s: float = CLOSE_TIMEOUT_S) -> Iterator[Any]:
    """Start Playwright and Chromium; yield the browser; close both, within ``close_timeout_s``."""
    from playwright.sync_api import Error, sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except BaseException:
        playwright.stop()
        raise
    try:
        yield browser
    finally:
        with killed_if_stuck(close_timeout_s, "closing Chromium"):
            with contextlib.suppress(Error):  # the connection is gone once the driver is killed
                browser.close()
            playwright.stop()
