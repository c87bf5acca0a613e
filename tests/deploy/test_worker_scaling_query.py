"""The KEDA trigger's SQL, as rendered by the chart, run against the web service's real schema.

KEDA's postgresql scaler runs the ScaledObject's query and scales the workers to
``ceil(result / targetQueryValue)``. The query is run here on a database made by the service's
own :func:`~fakescope.web.db.open_database`, holding jobs in every status: on SQLite always, and
on a throwaway PostgreSQL (the backend KEDA reads) where its tools are installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text, update

from fakescope.web import db, jobstore
from fakescope.web.db import open_database
from tests.support.helm_chart import REQUIRED_VALUES, render
from tests.support.web_support import postgres_unavailable_reason, throwaway_postgres

#: How many jobs of each status the database holds; the workers' share is pending + running.
JOBS = {jobstore.PENDING: 3, jobstore.RUNNING: 2, jobstore.DONE: 4, jobstore.FAILED: 1}


def _keda_query() -> str:
    [trigger] = render(REQUIRED_VALUES).one("ScaledObject")["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    return str(trigger["metadata"]["query"])


def _fill(engine: Engine) -> None:
    n = 0
    for status, count in JOBS.items():
        for _ in range(count):
            n += 1
            job_id = f"{n:032x}"
            jobstore.create_job(
                engine,
                job_id=job_id,
                owner="visitor:" + "a" * 32,
                subject="visitor:" + "a" * 32,
                key_id=None,
                filename=f"v{n}.mp4",
                size_bytes=1,
                video_path=f"/uploads/{n}.mp4",
                keep_video=False,
                webhook_url=None,
            )
            with engine.begin() as conn:
                conn.execute(update(db.jobs).where(db.jobs.c.id == job_id).values(status=status))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = open_database(f"sqlite:///{tmp_path / 'web.db'}")
        yield engine
        engine.dispose()
        return
    if (reason := postgres_unavailable_reason()) is not None:
        pytest.skip(reason)
    with throwaway_postgres() as url:
        engine = open_database(url)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM uses"))
            conn.execute(text("DELETE FROM jobs"))
        yield engine
        engine.dispose()


def test_keda_query_counts_pending_and_running_jobs_when_run_on_service_schema(engine: Engine):
    _fill(engine)
    with engine.connect() as conn:
        [(count,)] = conn.execute(text(_keda_query())).all()
    assert count == JOBS[jobstore.PENDING] + JOBS[jobstore.RUNNING]
