"""Decide whether a running tritonserver is making progress, from its Prometheus metrics.

Why: in the soak run tritonserver 2.51 hung with one ensemble request in flight; its health
endpoints still answered 200 while every later video waited in ``face_detector``'s queue until
the 5 s queue timeout refused it (benchmarks/results/soak.md). Neither an exit nor
``/v2/health/live`` shows that; the per-model request metrics do.

What tritonserver 2.51 (the pytriton wheel) exposes here, measured on a real server:

* ``nv_inference_pending_request_count`` (gauge) counts requests *waiting in a model's queue*.
  A request the model is executing is not counted, and the ensemble's gauge stays 0.
* ``nv_inference_request_success`` and ``nv_inference_exec_count`` (counters) grow when a
  model finishes a request; a python model that answers with an error response counts as a
  success.
* ``nv_inference_request_failure`` (counter, label ``reason``): ``REJECTED`` when the queue
  refuses or times out a request and ``CANCELED`` when the client gives up — both without the
  model ever executing it. The ensemble counts each failed step as ``OTHER`` failures of its own.

Hence the rule, per model: a model is **stalled** when it has requests waiting now, was first
seen with waiting requests more than ``stall_timeout_s`` ago, and has finished nothing since
(success, execution, or a failure other than ``REJECTED``/``CANCELED``). Refused and canceled
requests are not progress: refusals are exactly what a hung ``face_detector`` keeps producing,
and the ensemble's ``OTHER`` failures that follow them belong to the ensemble, which never
counts as waiting. A model with nothing waiting is never stalled, so an idle server is never
stalled; a hung model is found when the next request queues for it. A metrics endpoint that
has not answered for ``stall_timeout_s`` counts as stalled too.

:class:`ProgressWatchdog` holds the decision (fed with snapshots and timestamps, no I/O);
:func:`fetch_snapshot` reads one snapshot over HTTP.
"""

from __future__ import annotations

import logging
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

logger = logging.getLogger(__name__)

#: How long a model may have requests waiting without finishing any before the server counts
#: as stalled. It must exceed the longest legitimate wait on a loaded 2-core machine: a video
#: request takes under 5 s here, ``face_detector`` refuses what waited 5 s, and a busy
#: neighbour has made the same work 6x slower (../shared/docs/environment.md). 60 s leaves
#: that 12x headroom while a hang costs about a minute of refused videos, not the rest of a run.
DEFAULT_STALL_TIMEOUT_S: Final = 60.0
#: How often a supervisor reads the metrics: often enough to act within a few seconds of the
#: timeout, rarely enough that the reads cost nothing next to the requests.
DEFAULT_WATCHDOG_POLL_S: Final = 5.0
#: How long one read of ``/metrics`` may take; an endpoint slower than this did not answer.
METRICS_READ_TIMEOUT_S: Final = 2.0

PENDING_METRIC: Final = "nv_inference_pending_request_count"
SUCCESS_METRIC: Final = "nv_inference_request_success"
EXEC_METRIC: Final = "nv_inference_exec_count"
FAILURE_METRIC: Final = "nv_inference_request_failure"
#: Failure reasons of requests that left the queue without the model executing them.
NOT_PROGRESS_REASONS: Final = frozenset({"REJECTED", "CANCELED"})


class MetricsUnavailableError(RuntimeError):
    """The metrics endpoint did not answer, or answered something that is not Triton's."""


@dataclass(frozen=True)
class ModelProgress:
    """One model's state in one snapshot.

    Attributes:
        pending: requests waiting in its queue now.
        finished: requests it has finished since the server started (successes, executions and
            failures other than refusals and cancellations, summed: only changes matter).

    """

    pending: int
    finished: int


#: Model name -> its state; one snapshot of the whole server.
Snapshot = Mapping[str, ModelProgress]


@dataclass(frozen=True)
class Stall:
    """Why a server counts as stalled.

    Attributes:
        pending: the stalled models and how many requests wait for each (empty when the
            metrics endpoint itself did not answer).
        waited_s: how long the longest of them has waited without progress (or how long the
            endpoint has not answered).
        metrics_unanswered: True when the endpoint did not answer for the timeout.

    """

    pending: dict[str, int]
    waited_s: float
    metrics_unanswered: bool = False

    def describe(self) -> str:
        """One line for a log or an error message."""
        if self.metrics_unanswered:
            return f"metrics endpoint unanswered for {self.waited_s:.0f} s"
        models = ", ".join(f"{m} ({n} pending)" for m, n in sorted(self.pending.items()))
        return f"no progress for {self.waited_s:.0f} s with requests waiting: {models}"


@dataclass
class _ModelClock:
    finished: int
    waiting_since: float | None = None


@dataclass
class ProgressWatchdog:
    """Feed it a snapshot every few seconds; it says when the server has stalled (pure logic).

    Args:
        stall_timeout_s: see :data:`DEFAULT_STALL_TIMEOUT_S`; must be positive.
        started_at: when watching began (the clock of the first unanswered read).

    """

    stall_timeout_s: float
    started_at: float
    _models: dict[str, _ModelClock] = field(default_factory=dict, init=False)
    _last_answer: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.stall_timeout_s <= 0:
            raise ValueError(f"stall_timeout_s must be positive, got {self.stall_timeout_s}")
        self._last_answer = self.started_at

    def observe(self, snapshot: Snapshot | None, now: float) -> Stall | None:
        """Take one snapshot (None: the endpoint did not answer) taken at ``now``.

        Returns:
            A :class:`Stall` when the server counts as stalled now, else None.

        """
        if snapshot is None:
            silent = now - self._last_answer
            if silent > self.stall_timeout_s:
                return Stall(pending={}, waited_s=silent, metrics_unanswered=True)
            return None
        self._last_answer = now
        if any(
            name in self._models and state.finished < self._models[name].finished
            for name, state in snapshot.items()
        ):
            # Counters went down: another server process answers (restarted outside this
            # watchdog). Nothing seen before says anything about it: start over.
            self._models.clear()
        stalled: dict[str, int] = {}
        waited = 0.0
        for name, state in snapshot.items():
            clock = self._models.get(name)
            if clock is None or state.finished != clock.finished:
                clock = self._models[name] = _ModelClock(finished=state.finished)
            if state.pending <= 0:
                # Nothing waits now. The clock keeps running if requests waited earlier and
                # none was finished since: they were refused or canceled, not served.
                continue
            if clock.waiting_since is None:
                clock.waiting_since = now
            if now - clock.waiting_since > self.stall_timeout_s:
                stalled[name] = state.pending
                waited = max(waited, now - clock.waiting_since)
        for gone in set(self._models) - set(snapshot):  # unloaded models
            del self._models[gone]
        return Stall(pending=stalled, waited_s=waited) if stalled else None


_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][\w:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[str, ModelProgress]:
    """Return each model's :class:`ModelProgress` from Triton's Prometheus text.

    Only the four per-model request metrics are read (the standard library parses them: the
    ``prometheus_client`` parser is not part of the server install). Versions of one model are
    summed.

    Raises:
        MetricsUnavailableError: the text holds none of Triton's per-model request metrics.

    """
    pending: dict[str, int] = {}
    finished: dict[str, int] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        name = match.group("name")
        if name not in (PENDING_METRIC, SUCCESS_METRIC, EXEC_METRIC, FAILURE_METRIC):
            continue
        labels = dict(_LABEL.findall(match.group("labels") or ""))
        model = labels.get("model")
        if model is None:
            continue
        value = int(float(match.group("value")))
        finished.setdefault(model, 0)
        if name == PENDING_METRIC:
            pending[model] = pending.get(model, 0) + value
        elif name != FAILURE_METRIC or labels.get("reason") not in NOT_PROGRESS_REASONS:
            finished[model] += value
    if not finished:
        raise MetricsUnavailableError("no per-model request metrics in the answer")
    return {m: ModelProgress(pending=pending.get(m, 0), finished=f) for m, f in finished.items()}


def fetch_snapshot(url: str, timeout_s: float = METRICS_READ_TIMEOUT_S) -> dict[str, ModelProgress]:
    """Read ``url`` (Triton's ``/metrics``) and parse it.

    Raises:
        MetricsUnavailableError: no answer within ``timeout_s``, an HTTP error, or an answer
            without Triton's per-model metrics.

    """
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        raise MetricsUnavailableError(f"{url}: {exc}") from exc
    return parse_metrics(text)


def read_snapshot(url: str) -> dict[str, ModelProgress] | None:
    """:func:`fetch_snapshot`, or None (logged) when the endpoint did not answer usefully."""
    try:
        return fetch_snapshot(url)
    except MetricsUnavailableError as exc:
        logger.warning("watchdog: %s", exc)
        return None
