"""Stops a tritonserver whose starting process died without stopping it.

:class:`~fakescope.serving.embedded.EmbeddedTriton` starts this next to every tritonserver it
launches, its stdin the read end of a pipe whose write end only the starting process holds
(and a child it forks without exec, which the watch then waits for too). The read returns when
every holder of the write end is gone: the starting process exited or was killed (SIGKILL, the
OOM killer) without :meth:`EmbeddedTriton.stop`, which stops this watch first. The server it
leaves behind would keep its ports, its python stubs and their shared memory until someone
found it; this watch then stops it as ``stop`` would: SIGTERM, SIGKILL to its process group
after ``grace_s``, and its shared-memory regions removed.

A process and not a thread or ``PR_SET_PDEATHSIG``: the server must outlive every thread of
its starter but not the starter itself, and the kernel sends the parent-death signal when the
*thread* that forked the child ends (servers are started from short-lived threads).

Started by :func:`start_orphan_watch` as ``python -m fakescope.serving.orphan_watch PID GRACE_S
SHM_GLOB``; it imports nothing heavy, so it starts in tens of milliseconds beside tritonserver.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time

from fakescope.paths import SHM_DIR
from fakescope.serving.process_group import stat_fields, wait_until_gone

logger = logging.getLogger(__name__)

#: How long an orphaned server gets to stop on SIGTERM before its process group is killed.
ORPHAN_GRACE_S = 30.0


def start_orphan_watch(pid: int, shm_glob: str) -> subprocess.Popen[bytes]:
    """Start the watch over server ``pid``; end it with :func:`end_orphan_watch` before a stop.

    Its own session, so that a Ctrl-C meant for the starter does not end it first. It writes
    only its log, to the starter's stderr; not holding the starter's stdout, it keeps no reader
    of that waiting for an end of file while it lives.
    """
    return subprocess.Popen(
        [sys.executable, "-m", __name__, str(pid), str(ORPHAN_GRACE_S), shm_glob],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def end_orphan_watch(watch: subprocess.Popen[bytes]) -> None:
    """End the watch without it acting: the starter is stopping the server itself."""
    watch.kill()  # before its pipe closes, which would tell it the starter is gone
    watch.wait()
    if watch.stdin is not None:
        watch.stdin.close()


def start_time(pid: int) -> str | None:
    """Return process ``pid``'s start time (``/proc/<pid>/stat`` field 22), None if it is gone.

    A pid is reused once its process is gone: the start time tells the server from a newcomer.
    """
    fields = stat_fields(pid)
    return fields[19] if fields else None


def _runs(pid: int, started: str) -> bool:
    """Whether the process started at ``started`` still runs (a zombie, not yet reaped, not)."""
    fields = stat_fields(pid)
    return fields is not None and fields[19] == started and fields[0] != "Z"


def stop_orphan(pid: int, started: str, grace_s: float, shm_glob: str) -> bool:
    """Stop server ``pid`` (if it is still the one started at ``started``); return if it was."""
    if start_time(pid) != started:
        return False
    logger.warning("the process that started tritonserver %d is gone: stopping it", pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _runs(pid, started) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # the server if it hung, and its python stubs
    wait_until_gone(pid, grace_s)
    for region in SHM_DIR.glob(shm_glob):
        region.unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    """Wait for the starter to go, then stop its server."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pid", type=int)
    parser.add_argument("grace_s", type=float)
    parser.add_argument("shm_glob")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    started = start_time(args.pid)
    if started is None:
        return 0
    sys.stdin.buffer.read()  # returns at end of file: every holder of the write end is gone
    stop_orphan(args.pid, started, args.grace_s, args.shm_glob)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
