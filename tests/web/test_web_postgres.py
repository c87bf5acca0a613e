"""The web service on a real PostgreSQL server (a throwaway cluster; skipped with the reason
when PostgreSQL's tools are not installed)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from fakescope.web import db, jobstore, keys
from fakescope.web.db import open_database
from fakescope.web.metrics import business_metrics
from tests.support.media import make_face_video
from tests.support.web_support import (
    LiveServer,
    postgres_unavailable_reason,
    race_for_the_last_use,
    throwaway_postgres,
    upload,
    wait_for_job,
    web_settings,
)

pytestmark = pytest.mark.skipif(
    postgres_unavailable_reason() is not None, reason=str(postgres_unavailable_reason())
)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


@pytest.fixture
def pg(pg_url: str) -> Iterator[Engine]:
    engine = open_database(pg_url)
    with engine.begin() as conn:
        for table in ("faces", "uses", "page_views", "jobs", "api_keys"):
            conn.execute(text(f"DELETE FROM {table}"))
    yield engine
    engine.dispose()


def _job(
    engine: Engine, n: int, subject: str = "visitor:" + "a" * 32, key_id: str | None = None
) -> jobstore.Job:
    return jobstore.create_job(
        engine,
        job_id=f"{n:032x}",
        owner=subject.replace("key:", "org:"),
        subject=subject,
        key_id=key_id,
        filename=f"v{n}.mp4",
        size_bytes=1,
        video_path=f"/nonexistent/{n}",
        keep_video=False,
        webhook_url=None,
    )


def test_postgres_engine_is_postgresql_when_url_given(pg: Engine):
    assert pg.dialect.name == "postgresql"
    with pg.connect() as conn:
        assert conn.execute(text("SELECT version()")).scalar_one().startswith("PostgreSQL")


def test_postgres_claim_gives_each_job_to_one_worker_when_workers_race(pg: Engine):
    for n in range(12):
        _job(pg, n)
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (job := jobstore.claim_next(pg, name, lease_s=60)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed) == sorted(f"{n:032x}" for n in range(12))


def test_postgres_quota_and_usage_counted_when_key_used(pg: Engine):
    key, secret = keys.create_key(pg, "Daily Planet", monthly_quota=2, rate_per_minute=10)
    assert keys.verify_key(pg, secret).id == key.id
    for n in range(2):
        _job(pg, n, subject=key.subject, key_id=key.id)
    with pytest.raises(keys.LimitExceededError, match="monthly quota of 2"):
        keys.check_limits(pg, key)
    assert keys.usage(pg, key)["used_this_month"] == 2
    metrics = business_metrics(pg, days=3)
    assert metrics.uses_today == 2
    assert metrics.conversion_keys.first_use == 1 and metrics.conversion_keys.second_use == 1
    assert metrics.per_key[0]["uses"] == 2
    keys.revoke_key(pg, key.id)
    with pytest.raises(keys.ApiKeyError) as revoked:
        keys.verify_key(pg, secret)
    assert revoked.value.status == 403


def test_postgres_takes_a_job_for_every_key_when_the_key_was_created(pg: Engine):
    """PostgreSQL enforces column lengths: a key's organisation must fit its jobs' owner."""
    refused = []
    for n, length in enumerate((1, 40, 76, 77, 100, 200)):
        try:
            key, _ = keys.create_key(pg, "O" * length, monthly_quota=10, rate_per_minute=10)
        except ValueError:
            refused.append(length)
            continue
        job = jobstore.create_job(
            pg,
            job_id=f"{n:032x}",
            owner=key.owner,
            subject=key.subject,
            key_id=key.id,
            filename="v.mp4",
            size_bytes=1,
            video_path=f"/nonexistent/{n}",
            keep_video=False,
            webhook_url=None,
        )
        assert jobstore.list_jobs(pg, key.owner) == [job]
    assert 200 in refused


def test_postgres_create_job_admits_one_when_uploads_race_for_the_last_use_of_a_quota(
    pg: Engine,
):
    outcomes = race_for_the_last_use(pg, racers=6)
    assert sorted(outcomes) == ["created"] + ["quota_exceeded"] * 5


def test_postgres_job_survives_restart_and_stores_faces_when_analysed(
    pg: Engine,
    pg_url: str,
    triton,
    tmp_path,
):
    video = make_face_video(tmp_path / "face.mp4")
    settings = web_settings(tmp_path, triton.address.grpc_url, database_url=pg_url, workers=0)
    with LiveServer(settings) as first, first.client() as client:
        job_id = upload(client, video).json()["id"]
        cookies = dict(client.cookies)
    with LiveServer(settings.replace(workers=1)) as second, second.client(cookies=cookies) as c:
        job = wait_for_job(c, job_id)
        face = c.get(job["faces"][0]["url"])
    assert job["status"] == "done" and job["verdict"]["faces"] > 0
    assert job["verdict"]["content_credentials"]["status"] == "absent"  # stored with the verdict
    assert face.content[:3] == b"\xff\xd8\xff"
    with pg.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM faces")).scalar_one() == len(job["faces"])
        assert conn.execute(text("SELECT count(*) FROM uses")).scalar_one() == 1
        versions = conn.execute(text("SELECT version FROM schema_info")).scalars().all()
    assert versions == [db.SCHEMA_VERSION]  # written once by the first server, kept by the second
