"""A backstop under pytest-timeout: a hang that holds the GIL still ends the run.

pytest-timeout's "thread" method ends a hung test from a Python thread: it prints every thread's
stack and calls ``os._exit``. That thread needs the GIL. A thread that blocks while holding it
(a C call that never releases it) freezes the timer thread too, before or during its dump, and
so can CPython 3.11.7's deadlock between ``sys._current_frames`` and a thread that is exiting
(python/cpython#106883); the run then waits for CI's own limit, and the output not yet flushed
is lost. One CI run was held to that limit: pytest-timeout fired in the last test's teardown,
and the output CI kept ends partway through its dump.

:mod:`faulthandler`'s watchdog is a C thread that needs no GIL. It is armed with each test's
pytest-timeout limit plus ``timeout_backstop_grace`` seconds; when it fires it writes every
thread's stack to the run's own stderr and exits the process.

A process forked while the timer is armed would inherit it without its thread, and arming or
cancelling the timer there, as the interpreter's own exit does, would wait for good; so the
timer is cancelled around every ``os.fork`` and armed again in the parent for the time left.
"""

from __future__ import annotations

import faulthandler
import os
import time
from typing import Any, TextIO

import pytest

#: Seconds after pytest-timeout's limit before the backstop fires: pytest-timeout's own dump
#: takes well under a second, so it gets its chance first.
DEFAULT_GRACE_S = 60.0
GRACE_INI = "timeout_backstop_grace"

_GRACE = pytest.StashKey[float]()
_STDERR = pytest.StashKey[TextIO]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the grace period as an ini option (``-o timeout_backstop_grace=N``)."""
    parser.addini(
        GRACE_INI,
        "seconds after the pytest-timeout limit before faulthandler dumps every thread and exits",
        default=str(DEFAULT_GRACE_S),
    )


def pytest_configure(config: pytest.Config) -> None:
    """Read the grace period and keep a copy of the run's stderr for the dump.

    Output capture is suspended while plugins are configured, so file descriptor 2 is the run's
    own stderr here; during a test it points at the capture's temp file, lost at the exit.
    """
    grace = float(config.getini(GRACE_INI))
    if grace <= 0:
        raise pytest.UsageError(f"{GRACE_INI} must be a positive number of seconds, got {grace}")
    config.stash[_GRACE] = grace
    config.stash[_STDERR] = os.fdopen(os.dup(2), "w")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the copy of stderr."""
    if _STDERR in config.stash:
        config.stash[_STDERR].close()


class _Watchdog:
    """faulthandler's timer (one per process), disarmed around ``os.fork``."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.file: TextIO | None = None
        os.register_at_fork(before=self._pause, after_in_parent=self._resume)

    def arm(self, seconds: float, file: TextIO) -> None:
        """Dump every thread's stack to ``file`` and exit in ``seconds``, unless disarmed."""
        self.deadline, self.file = time.monotonic() + seconds, file
        self._resume()

    def disarm(self) -> None:
        """Cancel the dump."""
        self.deadline = None
        faulthandler.cancel_dump_traceback_later()

    def _pause(self) -> None:
        if self.deadline is not None:
            faulthandler.cancel_dump_traceback_later()

    def _resume(self) -> None:
        if self.deadline is not None:
            left = max(self.deadline - time.monotonic(), 1.0)
            faulthandler.dump_traceback_later(left, exit=True, file=self.file)


_watchdog: _Watchdog | None = None


def _the_watchdog() -> _Watchdog:
    global _watchdog
    if _watchdog is None:  # one per process: fork handlers cannot be unregistered
        _watchdog = _Watchdog()
    return _watchdog


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # no hook without pytest-timeout
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> None:
    """Arm the watchdog for this test; pytest-timeout's own timer is set after this returns."""
    limit = float(settings.timeout) + item.config.stash[_GRACE]
    _the_watchdog().arm(limit, item.config.stash[_STDERR])


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # no hook without pytest-timeout
def pytest_timeout_cancel_timer(item: pytest.Item) -> None:
    """Disarm the watchdog; pytest-timeout cancels its own timer after this returns."""
    _the_watchdog().disarm()
