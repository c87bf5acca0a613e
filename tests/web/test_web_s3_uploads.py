"""Uploads on S3 (``FAKESCOPE_WEB_UPLOAD_URL``): stored there, analysed elsewhere, deleted.

A real S3 server (SeaweedFS) on loopback, the session's real Triton, the real web app under
uvicorn, and a ``fakescope web worker`` subprocess with a data folder of its own: the front end
and the worker share only the database and the bucket, as two machines would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakescope.web.app import create_app
from fakescope.web.db import open_database
from fakescope.web.jobs import STALE_PART_S, JobRunner
from fakescope.web.settings import Settings, SettingsError
from fakescope.web.upload_store import upload_store
from tests.support.media import make_face_video
from tests.support.s3_server import S3Server, use_its_credentials
from tests.support.web_support import LiveServer, upload, wait_for_job, web_settings

BUCKET = "uploads"


@pytest.fixture(scope="module")
def uploads_bucket(s3_server: S3Server) -> str:
    """The bucket the web service stores uploads in (created by the test, once)."""
    s3_server.create_bucket(BUCKET)
    return BUCKET


@pytest.fixture
def s3_env(s3_server: S3Server, uploads_bucket: str, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The S3 server's credentials in the environment (read by the upload store)."""
    return use_its_credentials(s3_server, monkeypatch)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


@pytest.mark.slow
def test_upload_is_stored_on_s3_analysed_by_another_worker_and_deleted_when_upload_url_is_s3(
    s3_env, triton, tmp_path
):
    video = make_face_video(tmp_path / "face.mp4")
    prefix = "front-and-worker"
    uploads = s3_env.storage(BUCKET, prefix)
    settings = web_settings(
        tmp_path / "front",
        triton.address.grpc_url,
        workers=0,
        upload_url=s3_env.url(BUCKET, prefix),
    )
    with LiveServer(settings) as server, server.client() as client:
        response = upload(client, video)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        stored = uploads.listing()
        assert list(stored.values()) == [video.stat().st_size]
        assert next(iter(stored)).startswith(job_id)
        assert _files(settings.data_dir) == []  # nothing left on the front end's disk

        worker_dir = tmp_path / "worker"  # another machine: no folder shared with the front end
        env = {
            **os.environ,
            "FAKESCOPE_WEB_DATABASE_URL": settings.database_url,
            "FAKESCOPE_WEB_DATA_DIR": str(worker_dir),
            "FAKESCOPE_WEB_UPLOAD_URL": settings.upload_url,
            "FAKESCOPE_WEB_TRITON_URL": triton.address.grpc_url,
            "FAKESCOPE_WEB_POLL_INTERVAL_S": "0.1",
        }
        command = [sys.executable, "-m", "fakescope.cli", "web", "worker", "--threads", "1"]
        worker = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            job = wait_for_job(client, job_id, timeout_s=120)
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=60)
    assert job["status"] == "done", (job, output)
    assert job["verdict"]["status"] == "ok" and job["faces"]
    assert job["video_stored"] is False
    assert uploads.listing() == {}  # deleted from S3 after the analysis
    assert _files(worker_dir) == []  # the worker's local copy went too


@pytest.mark.slow
def test_kept_upload_stays_on_s3_until_retention_deletes_it_when_keep_video_is_set(
    s3_env, triton, tmp_path
):
    video = make_face_video(tmp_path / "face.mp4", seconds=1.0)
    prefix = "kept"
    uploads = s3_env.storage(BUCKET, prefix)
    settings = web_settings(
        tmp_path, triton.address.grpc_url, upload_url=s3_env.url(BUCKET, prefix)
    )
    with LiveServer(settings) as server, server.client() as client:
        response = upload(client, video, keep_video="true")
        assert response.status_code == 202, response.text
        job = wait_for_job(client, response.json()["id"])
        assert job["status"] == "done" and job["video_stored"] is True
        assert len(uploads.listing()) == 1
        runner = server.app.state.service.runner
        fresh = runner.settings.replace(video_retention_s=3600.0)
        runner.settings = fresh
        assert runner.sweep_retention() == 0 and len(uploads.listing()) == 1
        runner.settings = fresh.replace(video_retention_s=0.001)
        time.sleep(0.01)
        assert runner.sweep_retention() == 1
        assert uploads.listing() == {}
        assert client.get(f"/api/v1/jobs/{job['id']}").json()["video_stored"] is False


def test_job_runner_removes_a_download_left_by_a_dead_process_when_it_starts(s3_env, tmp_path):
    settings = web_settings(
        tmp_path, "127.0.0.1:1", workers=0, upload_url=s3_env.url(BUCKET, "leftovers")
    )
    store = upload_store(settings)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\0" * 100)
    ref = store.put(video, "job.mp4")
    # Two analyses' downloads, their `with` blocks never left: one of a process that died an
    # hour ago, one in progress now.
    dead, in_progress = store.local_copy(ref), store.local_copy(ref)
    dead_copy, live_copy = dead.__enter__(), in_progress.__enter__()
    untouched = time.time() - 2 * STALE_PART_S
    os.utime(dead_copy, (untouched, untouched))
    engine = open_database(settings.database_url)
    runner = JobRunner(engine, settings)
    runner.start()
    runner.stop()
    engine.dispose()
    assert not dead_copy.exists()
    assert live_copy.exists()
    in_progress.__exit__(None, None, None)
    dead.__exit__(None, None, None)
    assert _files(settings.tmp_dir) == []


def test_web_refuses_to_start_naming_the_variable_when_upload_bucket_is_missing(s3_env, tmp_path):
    settings = web_settings(
        tmp_path, "127.0.0.1:1", upload_url=s3_env.url("no-such-uploads", "videos")
    )
    with pytest.raises(SettingsError, match=r"FAKESCOPE_WEB_UPLOAD_URL=.*does not exist"):
        create_app(settings)


def test_web_refuses_to_start_when_upload_credentials_are_missing(s3_env, tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    settings = web_settings(tmp_path, "127.0.0.1:1", upload_url=s3_env.url(BUCKET, "x"))
    with pytest.raises(SettingsError, match="no S3 credentials"):
        create_app(settings)


@pytest.mark.parametrize("url", ["s3://Uploads/videos", "/var/uploads", "s3://127.0.0.1:0/b1"])
def test_settings_refuse_upload_url_when_not_a_valid_s3_url(url):
    with pytest.raises(SettingsError, match="upload_url"):
        Settings.from_env({"FAKESCOPE_WEB_UPLOAD_URL": url})
