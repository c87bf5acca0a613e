"""What one Locust level of ``fakescope bench`` says of the load it carried.

Whether its records hold every video it sent (:func:`why_incomplete`), and whether it carried
its users within a limit (:func:`level_fits`): read by the bench's verdict, issue #14's targets
and the soak's measured capacity alike.
"""

from __future__ import annotations

from typing import Any, Final

#: Locust's exit codes after a level that ended on its own: 0, or 1 when a request failed or the
#: p95 broke the limit (the locustfile sets it), both of which the level's records say. Any
#: other (2: a user's greenlet died of an unhandled exception; negative: the signal that killed
#: it) means the records may lack videos that were sent.
LOCUST_EXIT_CODES_SAID_BY_RECORDS: Final = (0, 1)


def why_incomplete(stopped: bool, exit_code: int | None) -> str | None:
    """Return why a level's records may lack videos it sent, ``None`` when they hold every one.

    ``stopped``: the level outlived its limit and was stopped (the videos then in flight have
    no record); ``exit_code``: Locust's (``None``: summaries from before it was recorded).
    """
    if stopped:
        return "stopped after its limit, the videos then in flight have no record"
    if exit_code is not None and exit_code not in LOCUST_EXIT_CODES_SAID_BY_RECORDS:
        return f"Locust exited with code {exit_code}, its records may lack videos"
    return None


def level_fits(level: dict[str, Any], limit: float) -> bool:
    """Whether a summarised level kept p95(processing / duration) within ``limit``.

    With nothing refused or failed, and records that hold every video it sent
    (:func:`why_incomplete`; levels summarised before that was recorded count as whole).
    """
    p95 = level["ratio"]["p95"]
    whole = why_incomplete(level.get("stopped", False), level.get("locust_exit_code")) is None
    return p95 is not None and p95 <= limit and level["rejected"] + level["failures"] == 0 and whole
