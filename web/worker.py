"""``fakescope web worker``: the job runner alone, without the HTTP front end.

In a cluster the upload front end and the analysis workers scale on different signals: the
front end on requests, the workers on pending jobs in the database (KEDA's PostgreSQL scaler,
``deploy/helm/fakescope``). The front end then runs with 0 in-process workers
(``FAKESCOPE_WEB_WORKERS=0``) and this process claims the jobs, with the same
:class:`~.jobs.JobRunner` and the same ``FAKESCOPE_WEB_*`` settings: ``workers`` is its number
of analysis threads. Uploads must be on storage both can read.

Stopping: SIGTERM or SIGINT stops claiming new jobs and waits up to ``drain_s`` for the jobs in
hand; a job still running after that is taken back by another worker once its lease expires.
"""

from __future__ import annotations

import logging
import signal
import threading

from .db import open_database
from .jobs import JobRunner
from .settings import Settings, SettingsError

__all__ = ["install_stop_signals", "run_worker"]

logger = logging.getLogger(__name__)


def install_stop_signals(stop: threading.Event) -> None:
    """Make SIGTERM (Kubernetes' stop) and SIGINT (Ctrl-C) set ``stop``."""

    def _handler(signum: int, _frame: object) -> None:
        logger.info("signal %d: stop claiming jobs, finish the ones in hand", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


def run_worker(settings: Settings, stop: threading.Event, drain_s: float) -> None:
    """Run ``settings.workers`` analysis threads until ``stop`` is set, then drain.

    Raises:
        SettingsError: ``settings.workers`` is 0 (a worker without threads would do nothing).
        DatabaseError: the database cannot be opened or holds another schema version.

    """
    if settings.workers < 1:
        raise SettingsError("a worker needs at least 1 analysis thread (workers >= 1)")
    engine = open_database(settings.database_url)
    runner = JobRunner(engine, settings, base_url=settings.public_url)
    try:
        runner.start()
        stop.wait()
    finally:
        runner.stop(timeout_s=drain_s)
        engine.dispose()
