"""Bad or hostile input to the REST API: a clear 4xx (never a 500), nothing left behind.

A real uvicorn server with a real SQLite database and no analysis (``workers=0``, Triton at a
closed port): these tests stop at the upload, so they need no Triton.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fakescope.web.settings import MAX_FACE_THUMBNAILS
from tests.support.media import make_no_face_video
from tests.support.servers import free_ports
from tests.support.web_support import LiveServer, raw_request, upload, web_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def _closed_triton() -> str:
    return f"127.0.0.1:{free_ports(1)[0]}"  # nothing listens: these tests never analyse


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_no_face_video(tmp_path_factory.mktemp("bad-input") / "coffee.mp4", seconds=1.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("web-bad-input")
    settings = web_settings(root, _closed_triton(), workers=0)
    with LiveServer(settings) as live:
        yield live


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


@pytest.mark.parametrize("hook", ["http://a..b/hook", "http://.x/hook", f"http://{'a' * 64}.b/"])
def test_submit_job_answers_422_bad_webhook_when_a_host_label_is_empty_or_too_long(
    server: LiveServer, video: Path, hook: str
):
    before = _files(server.settings.upload_dir)
    with server.client() as client:
        response = upload(client, video, webhook_url=hook)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "bad_webhook"
    assert "not a valid host name" in response.json()["error"]["message"]
    assert _files(server.settings.tmp_dir) == []
    assert _files(server.settings.upload_dir) == before


@pytest.mark.parametrize("position", [2**63, MAX_FACE_THUMBNAILS, -1])
def test_get_face_answers_422_when_position_is_outside_the_thumbnail_range(
    server: LiveServer, video: Path, position: int
):
    with server.client() as client:
        job = upload(client, video).json()  # pending: its faces do not exist yet
        response = client.get(f"/api/v1/jobs/{job['id']}/faces/{position}.jpg")
        heatmap = client.get(f"/api/v1/jobs/{job['id']}/faces/{position}/heatmap")
        in_range = client.get(f"/api/v1/jobs/{job['id']}/faces/{MAX_FACE_THUMBNAILS - 1}.jpg")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "bad_request"
    assert "position" in response.json()["error"]["message"]
    assert heatmap.status_code == 422, heatmap.text
    assert in_range.status_code == 404  # the largest position allowed reaches the database
    assert in_range.json()["error"]["code"] == "no_such_face"


# A web service whose disk fills mid-upload: the process may write no file past a few KiB
# (RLIMIT_FSIZE, set in that process only once it serves), so the upload's temp file fails to
# grow with EFBIG, as on a full disk; SIGXFSZ is ignored so that the write fails, not the process.
_FULL_DISK_SERVER = r"""
import resource, signal, sys
from pathlib import Path
from tests.support.web_support import LiveServer, web_settings
root, triton_url, limit = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
with LiveServer(web_settings(root, triton_url, workers=0)) as live:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    print(live.port, flush=True)
    sys.stdin.read()
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
"""


def test_submit_job_answers_503_storage_unavailable_when_the_upload_cannot_be_written(
    tmp_path: Path, video: Path
):
    limit = 4096
    assert video.stat().st_size > limit
    child = subprocess.Popen(
        [sys.executable, "-c", _FULL_DISK_SERVER, str(tmp_path), _closed_triton(), str(limit)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(child.stdout.readline())
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            response = upload(client, video)
    finally:
        _, log = child.communicate("", timeout=60)
    assert response.status_code == 503, response.text
    assert response.json()["error"] == {
        "code": "storage_unavailable",
        "message": "the video could not be stored; try again shortly",
    }
    assert "File too large" in log  # the cause is in the service's log, not in the answer
    assert _files(tmp_path / "data" / "tmp") == []
    assert _files(tmp_path / "data" / "uploads") == []


def _chunked_head(port: int) -> bytes:
    return (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()


def test_submit_job_answers_422_before_the_body_ends_when_a_form_field_is_unknown(
    server: LiveServer,
):
    field = b'--XyZ\r\nContent-Disposition: form-data; name="note%d"\r\n\r\n' + b"a" * 2000
    fields = b"\r\n".join(field % i for i in range(30))  # each one under the 2 KiB field limit
    total_chunks = 200  # ~12 MiB of text fields, within the (default) body limit

    def chunks() -> Iterator[bytes]:
        for _ in range(total_chunks):
            yield b"%x\r\n%s\r\n\r\n" % (len(fields) + 2, fields)

    status, sent, response = raw_request(server.port, _chunked_head(server.port), chunks())
    assert status == 422, response[:300]
    assert b'"bad_field"' in response and b"unknown form field 'note0'" in response
    assert sent < total_chunks * len(fields) / 2  # answered long before the body ended
    assert _files(server.settings.tmp_dir) == []


def test_submit_job_answers_422_when_a_form_field_is_sent_twice(server: LiveServer, video: Path):
    before = _files(server.settings.upload_dir)
    with server.client() as client, open(video, "rb") as f:
        response = client.post(
            "/api/v1/jobs",
            files={"file": (video.name, f, "video/mp4")},
            data={"keep_video": ["false", "true"]},
        )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == {
        "code": "bad_field",
        "message": "form field 'keep_video' sent twice",
    }
    assert _files(server.settings.tmp_dir) == []
    assert _files(server.settings.upload_dir) == before
