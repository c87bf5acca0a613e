"""Locks that native threads can share where gevent has monkey-patched ``threading``.

The load generator runs under Locust, which monkey-patches ``threading``: ``threading.Lock``
and ``threading.RLock`` are then gevent's. It decodes videos in native threads (a gevent thread
pool), and a gevent lock contended by two native threads can miss its wake-up, leaving a thread
waiting for ever. Two decoding threads making shared-memory regions at once hung the load
generator in CI so, on the resource tracker's lock. The locks here are the operating system's
in any process. They are for memory, file and logging work, held across nothing that yields to
gevent; greenlets of one thread share an OS lock's owner, so one never blocks its own thread.
"""

from __future__ import annotations

import _thread
import logging
import sys
from typing import Any


def os_lock() -> Any:
    """Return a lock of the operating system's threads, even where gevent patched ``threading``."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        return monkey.get_original("_thread", "allocate_lock")()
    return _thread.allocate_lock()


def logging_with_os_locks() -> None:
    """Give :mod:`logging` OS locks: its module lock, every handler's, and each new handler's.

    Where gevent patched ``threading``, logging's locks are gevent's, and two native threads
    logging at once can wait for ever: on a handler's lock when both emit a record, or on the
    module's lock when both make a logger's first call at a level, which fills the logger's
    level cache (every video's decode logs at DEBUG; ``tests/unit/test_native_threads.py``
    hangs without this). Call it once, before such threads start. ``_thread.RLock`` is the
    interpreter's own, which gevent leaves alone.
    """
    logging._lock = _thread.RLock()  # type: ignore[attr-defined]
    for ref in list(logging._handlerList):  # type: ignore[attr-defined]
        handler = ref()
        if handler is not None:
            handler.lock = _thread.RLock()
    logging.Handler.createLock = _create_os_lock  # type: ignore[method-assign]


def _create_os_lock(self: logging.Handler) -> None:
    self.lock = _thread.RLock()
    logging._register_at_fork_reinit_lock(self)  # type: ignore[attr-defined]
