"""``fakescope web worker``: the job runner as its own process, beside a front end with 0 workers.

The Helm chart runs the upload front end with ``FAKESCOPE_WEB_WORKERS=0`` and scales these
workers on pending jobs. Here both are real: a uvicorn front end in this process, the worker as a
``fakescope`` subprocess, one SQLite database and upload folder, the session's real Triton.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakescope.allocator import huge_page_advice
from fakescope.cli import main
from fakescope.web import jobstore
from fakescope.web.db import open_database
from tests.support.media import make_face_video
from tests.support.web_support import LiveServer, upload, wait_for_job, web_settings

EXIT_CONFIG = 7


def _worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fakescope.cli", "web", "worker", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_web_worker_analyses_pending_job_when_front_end_runs_no_workers(triton, tmp_path: Path):
    video = make_face_video(tmp_path / "face.mp4")
    settings = web_settings(tmp_path, triton.address.grpc_url, workers=0)
    with LiveServer(settings) as server, server.client() as client:
        response = upload(client, video)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        time.sleep(1.0)  # several poll intervals: a front-end worker would have claimed it
        assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "pending"

        worker = _worker(
            {
                "FAKESCOPE_WEB_DATABASE_URL": settings.database_url,
                "FAKESCOPE_WEB_DATA_DIR": str(settings.data_dir),
                "FAKESCOPE_WEB_TRITON_URL": triton.address.grpc_url,
                "FAKESCOPE_WEB_POLL_INTERVAL_S": "0.1",
            },
            "--threads",
            "1",
            "--drain-timeout",
            "10",
        )
        try:
            job = wait_for_job(client, job_id, timeout_s=90)
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=30)
    assert job["status"] == "done", job
    assert job["verdict"]["status"] == "ok"
    assert job["faces"], "the worker stored no face thumbnails"
    assert worker.returncode == 0, output
    assert "1 analysis thread(s)" in output
    engine = open_database(settings.database_url)
    try:
        stored = jobstore.get_job(engine, job_id)
    finally:
        engine.dispose()
    assert stored is not None and stored.worker is not None
    assert stored.worker.split(":")[1] == str(worker.pid)  # the subprocess did it, not the app
    assert stored.video_path is None  # deleted after analysis, as the front end's runner does
    assert not list(settings.upload_dir.iterdir())


def test_web_worker_exits_with_config_error_when_database_unsupported(tmp_path: Path):
    worker = _worker({"FAKESCOPE_WEB_DATA_DIR": str(tmp_path)}, "--database", "mysql://db/x")
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == EXIT_CONFIG, output
    assert "unsupported database 'mysql'" in output


def test_web_worker_refuses_zero_threads_when_inherited_from_environment(tmp_path: Path):
    # The front end's FAKESCOPE_WEB_WORKERS=0 must not silently give a worker that does nothing.
    env = {
        "FAKESCOPE_WEB_WORKERS": "0",
        "FAKESCOPE_WEB_DATABASE_URL": f"sqlite:///{tmp_path / 'web.db'}",
        "FAKESCOPE_WEB_DATA_DIR": str(tmp_path),
    }
    worker = _worker(env)
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == EXIT_CONFIG, output
    assert "at least 1 analysis thread" in output


@pytest.mark.usefixtures("huge_pages_advised")
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_web_process_faults_uploads_in_small_pages_when_it_starts(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Both processes that decode uploads set up their memory first (fakescope/allocator.py):
    # checked in this process, through a configuration error that ends each one at once.
    monkeypatch.setenv("FAKESCOPE_WEB_DATA_DIR", str(tmp_path))
    assert main(["web", command, "--database", "mysql://db/x"]) == EXIT_CONFIG
    assert not huge_page_advice()
