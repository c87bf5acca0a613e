"""The face heatmap route against a real uvicorn server and the real Triton.

A face video goes through the whole service (upload, analysis, thumbnails and the classifier's
crops kept); its face's heatmap is then asked for as PNG and as JSON. The JSON's base score
equals the face's score in the verdict: the heatmap scores the very input the verdict scored.
A second service, whose Triton address answers nothing, serves jobs written straight into its
database: a face with a crop (503) and a face analysed before crops were kept (404).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data
from sqlalchemy import Engine

from fakescope.client.triton import ClassifierInput
from fakescope.contract import CLASSIFIER_MODEL
from fakescope.serving.model_config import served_version_dir
from fakescope.web import jobstore, keys
from fakescope.web.db import open_database
from fakescope.web.faces import FaceThumbnail, classifier_crop_png
from tests.support.media import make_face_video
from tests.support.servers import REPOSITORY, free_ports
from tests.support.web_support import LiveServer, upload, wait_for_job, web_settings

FRAMING = ClassifierInput(
    version="4", input_size=160, max_batch_size=32, face_margin=-0.08, face_shift=(0.0, 0.06)
)


@pytest.fixture(scope="module")
def server(triton, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("web-heatmap")
    with LiveServer(web_settings(root, triton.address.grpc_url)) as live:
        yield live


@pytest.fixture(scope="module")
def analysed(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A visitor's finished face job, its first face's heatmap as PNG and as JSON."""
    video = make_face_video(tmp_path_factory.mktemp("web-heatmap-video") / "face.mp4")
    client = server.client()
    job = wait_for_job(client, upload(client, video).json()["id"])
    assert job["status"] == "done" and job["faces"], job
    face = job["faces"][0]
    png = client.get(face["heatmap_url"])
    as_json = client.get(face["heatmap_url"], params={"format": "json"})
    by_accept = client.get(face["heatmap_url"], headers={"Accept": "application/json"})
    yield {"client": client, "job": job, "png": png, "json": as_json, "by_accept": by_accept}
    client.close()


def _decode(content: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_face_heatmap_returns_png_at_classifier_input_size_when_face_analysed(analysed: dict):
    response = analysed["png"]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert response.headers["cache-control"] == "private, max-age=3600"
    size = analysed["json"].json()["input_size"]
    assert _decode(response.content).shape == (size, size, 3)


def test_face_heatmap_json_scores_the_verdicts_input_when_format_json(analysed: dict):
    response = analysed["json"]
    assert response.status_code == 200, response.text
    body = response.json()
    face = analysed["job"]["faces"][0]
    assert body["position"] == face["position"] == 0
    assert body["verdict_score"] == face["fake_score"]
    assert body["base_score"] == pytest.approx(face["fake_score"], abs=1e-5)
    assert body["model_version"] == body["crop_model_version"]
    assert body["resized_from"] is None
    assert len(body["drops"]) == body["grid"] == 8
    assert all(len(row) == 8 for row in body["drops"])
    assert max(abs(v) for row in body["drops"] for v in row) > 0
    assert body["masking"] == "gaussian_blur" and body["seconds"] > 0
    assert analysed["by_accept"].json()["drops"] == body["drops"]  # the same map, cached


def test_face_heatmap_answers_404_when_face_or_job_unknown_or_not_owned(
    analysed: dict, server: LiveServer
):
    job = analysed["job"]
    base = f"/api/v1/jobs/{job['id']}/faces"
    missing_face = analysed["client"].get(f"{base}/{len(job['faces'])}/heatmap")
    assert missing_face.status_code == 404
    assert missing_face.json()["error"]["code"] == "no_such_face"
    missing_job = analysed["client"].get(f"/api/v1/jobs/{'0' * 32}/faces/0/heatmap")
    assert missing_job.json()["error"]["code"] == "no_such_job"
    with server.client() as stranger:
        other = stranger.get(f"{base}/0/heatmap")
    assert other.status_code == 404 and other.json()["error"]["code"] == "no_such_job"


def test_face_heatmap_answers_401_when_key_unknown(analysed: dict):
    url = analysed["job"]["faces"][0]["heatmap_url"]
    response = analysed["client"].get(url, headers={"Authorization": "Bearer fsk_nonsense"})
    assert response.status_code == 401


def test_face_heatmap_answers_422_when_format_unknown(analysed: dict):
    url = analysed["job"]["faces"][0]["heatmap_url"]
    response = analysed["client"].get(url, params={"format": "gif"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "bad_request"


BOX = [180.0, 60.0, 268.0, 172.0]


def _finished_job(
    engine: Engine, key: keys.ApiKey, crop: bytes | None, version: str | None, root: Path
) -> str:
    """Write a key's finished job with one face (and ``crop``, framed for ``version``)."""
    job_id = secrets.token_hex(16)
    jobstore.create_job(
        engine,
        job_id=job_id,
        owner=key.owner,
        subject=f"key:{key.id}",
        key_id=key.id,
        filename="written.mp4",
        size_bytes=1,
        video_path=str(root / "gone.mp4"),
        keep_video=False,
        webhook_url=None,
    )
    claimed = jobstore.claim_next(engine, "test-worker", 60)
    assert claimed is not None and claimed.id == job_id
    thumb = FaceThumbnail(
        position=0,
        frame_index=0,
        timestamp=0.0,
        fake_score=0.5,
        detection_score=1.0,
        box=BOX,
        jpeg=b"\xff\xd8\xff",
        classifier_crop=crop,
        model_version=version,
    )
    verdict = {"label": "FAKE", "fake_probability": 0.5}
    assert jobstore.complete_job(
        engine, job_id, "test-worker", verdict=verdict, timestamps=[0.0], thumbnails=[thumb]
    )
    return job_id


def test_face_heatmap_answers_409_when_the_crop_was_framed_for_another_classifier(
    server: LiveServer, tmp_path: Path
):
    engine = open_database(server.settings.database_url)
    key, secret = keys.create_key(engine, "Archive News", monthly_quota=10, rate_per_minute=10)
    served = served_version_dir(REPOSITORY / CLASSIFIER_MODEL).name
    older = _finished_job(
        engine, key, classifier_crop_png(data.astronaut(), BOX, FRAMING), FRAMING.version, tmp_path
    )
    garbled = _finished_job(engine, key, b"not a png", served, tmp_path)
    engine.dispose()
    assert FRAMING.version != served
    with server.client(headers={"X-API-Key": secret}) as client:
        stale = client.get(f"/api/v1/jobs/{older}/faces/0/heatmap")
        unreadable = client.get(f"/api/v1/jobs/{garbled}/faces/0/heatmap")
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "stale_crop"
    assert f"version {FRAMING.version}" in stale.json()["error"]["message"]
    assert unreadable.status_code == 404 and unreadable.json()["error"]["code"] == "no_heatmap"


# --- a service whose Triton is gone ---------------------------------------------------------
@pytest.fixture(scope="module")
def offline(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, str, str, str]]:
    """A service without workers or Triton; a key's two finished jobs written into its database.

    Yields the server, the key, and the two job ids: one face with the classifier's crop, one
    face without it (as a job analysed before crops were kept).
    """
    root = tmp_path_factory.mktemp("web-heatmap-offline")
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    settings = web_settings(root, dead, workers=0, triton_timeout_s=3.0)
    engine = open_database(settings.database_url)
    key, secret = keys.create_key(engine, "Offline News", monthly_quota=10, rate_per_minute=10)
    crop = classifier_crop_png(data.astronaut(), BOX, FRAMING)
    ids = [
        _finished_job(engine, key, crop, FRAMING.version, root),
        _finished_job(engine, key, None, None, root),
    ]
    engine.dispose()
    with LiveServer(settings) as live:
        yield live, secret, ids[0], ids[1]


def test_face_heatmap_answers_503_when_triton_unreachable(offline):
    live, secret, with_crop, _ = offline
    with live.client(headers={"X-API-Key": secret}) as client:
        response = client.get(f"/api/v1/jobs/{with_crop}/faces/0/heatmap")
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "classifier_unreachable"
    assert "not answering" in response.json()["error"]["message"]
    assert response.headers["retry-after"] == "30"


def test_face_heatmap_answers_404_when_face_kept_without_classifier_crop(offline):
    live, secret, _, without_crop = offline
    with live.client(headers={"X-API-Key": secret}) as client:
        response = client.get(f"/api/v1/jobs/{without_crop}/faces/0/heatmap")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_heatmap"
