"""The processes of one process group, read from ``/proc``: tritonserver and its python stubs.

tritonserver is started in its own session, so its process group holds it and every python
stub it started, also after tritonserver itself has died.
"""

from __future__ import annotations

import time
from pathlib import Path

#: How often :func:`wait_until_gone` looks again.
_POLL_S = 0.02


def _stat_fields(stat: Path) -> list[str] | None:
    """Return the fields of one ``/proc/<pid>/stat`` from field 3 (state) on; None if gone."""
    try:
        text = stat.read_text()
    except OSError:  # the process ended while we looked
        return None
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    return text[text.rindex(")") + 2 :].split()


def stat_fields(pid: int) -> list[str] | None:
    """Return process ``pid``'s ``/proc/<pid>/stat`` fields from field 3 (state) on; None if gone.

    Index 0 is the state (``Z``: a zombie), 2 the process group, 19 the start time.
    """
    return _stat_fields(Path(f"/proc/{pid}/stat"))


def group_stat_fields(pgid: int) -> list[list[str]]:
    """Return the ``/proc/<pid>/stat`` fields from field 3 on, per process of group ``pgid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        if fields is not None and int(fields[2]) == pgid:  # pgrp is field 5
            found.append(fields)
    return found


def live_members(pgid: int) -> int:
    """Return how many processes of group ``pgid`` still run (zombies, already dead, aside)."""
    return sum(fields[0] != "Z" for fields in group_stat_fields(pgid))


def wait_until_gone(pgid: int, timeout_s: float) -> int:
    """Wait until no process of group ``pgid`` runs, at most ``timeout_s``; return how many do.

    A SIGKILL is delivered asynchronously: a process killed a moment ago may still be tearing
    down its memory, and a stub that still runs may still hold its shared memory and ports.
    """
    deadline = time.monotonic() + timeout_s
    while (alive := live_members(pgid)) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    return alive
