"""The REST API against a real uvicorn server and the real Triton (no mocks of either)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from fakescope import contract
from fakescope.client.analyze import analyze
from fakescope.client.content_credentials import JSON_FIELD
from fakescope.client.video import sample_frames
from fakescope.web import jobstore, keys
from fakescope.web.db import open_database
from fakescope.web.principals import ADMIN_COOKIE, VISITOR_COOKIE
from fakescope.web.settings import Settings
from tests.support.detector_queue import analyze_in_thread, wait_until_waiting
from tests.support.media import make_face_video, make_no_face_video
from tests.support.servers import free_ports
from tests.support.web_support import LiveServer, raw_request, upload, wait_for_job, web_settings
from tests.support.webhook_receiver import webhook_receiver

LIMIT = 1024 * 1024
ADMIN = "admin-token-for-tests-0123"


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("web-videos")
    return {
        "face": make_face_video(root / "face.mp4"),
        "no_face": make_no_face_video(root / "coffee.mp4", seconds=1.0),
        "long": make_no_face_video(
            root / "long.mp4", seconds=4.0, size=(160, 96), source="gradient"
        ),
    }


@pytest.fixture(scope="module")
def server(triton, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("web-api")
    settings = web_settings(
        root, triton.address.grpc_url, max_upload_bytes=LIMIT, max_duration_s=3.0, admin_token=ADMIN
    )
    with LiveServer(settings) as live:
        yield live


@pytest.fixture(scope="module")
def face_job(server: LiveServer, videos: dict[str, Path]) -> dict:
    with server.client() as client:
        response = upload(client, videos["face"])
        assert response.status_code == 202, response.text
        job = wait_for_job(client, response.json()["id"])
        faces = [client.get(f["url"]) for f in job["faces"]]
        listing = client.get("/api/v1/jobs").json()
        verdict = client.get(job["links"]["verdict"])
    return {"job": job, "faces": faces, "listing": listing, "verdict": verdict}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _key(server: LiveServer, **limits: int) -> tuple[keys.ApiKey, str]:
    engine = open_database(server.settings.database_url)
    try:
        return keys.create_key(
            engine,
            "Test Media",
            monthly_quota=limits.get("quota", 100),
            rate_per_minute=limits.get("rate", 100),
        )
    finally:
        engine.dispose()


# --- the happy path --------------------------------------------------------------------------
def test_submit_job_returns_client_json_verdict_when_face_video_analysed(
    face_job: dict,
    videos: dict[str, Path],
    triton,
):
    job = face_job["job"]
    assert job["status"] == "done", job["error"]
    direct = analyze(videos["face"], url=triton.address.grpc_url).to_json_dict()
    verdict = face_job["verdict"].json()
    assert face_job["verdict"].status_code == 200
    assert set(verdict) == set(direct) | {JSON_FIELD}  # the CLI's --json fields
    assert verdict == job["verdict"]
    assert verdict["video"] == "face.mp4"
    assert verdict["label"] == direct["label"]
    assert verdict["fake_probability"] == pytest.approx(direct["fake_probability"], abs=1e-5)
    assert verdict["frame_scores"] == pytest.approx(direct["frame_scores"], abs=1e-5)
    assert len(job["frame_timestamps"]) == verdict["frames"] == 16


def test_face_thumbnails_served_as_jpeg_when_job_done(face_job: dict):
    faces = face_job["faces"]
    assert faces and len(faces) == face_job["job"]["verdict"]["faces"]
    assert all(r.status_code == 200 and r.content[:3] == b"\xff\xd8\xff" for r in faces)
    scores = [f["fake_score"] for f in face_job["job"]["faces"]]
    assert scores == sorted(scores, reverse=True)


def test_list_jobs_shows_only_own_jobs_when_two_visitors(face_job: dict, server: LiveServer):
    assert [j["id"] for j in face_job["listing"]["jobs"]] == [face_job["job"]["id"]]
    with server.client() as stranger:
        assert stranger.get("/api/v1/jobs").json()["jobs"] == []
        missing = stranger.get(f"/api/v1/jobs/{face_job['job']['id']}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "no_such_job"


def test_video_deleted_when_analysis_done_without_opt_in(face_job: dict, server: LiveServer):
    assert face_job["job"]["video_stored"] is False
    assert _files(server.settings.upload_dir) == []
    assert _files(server.settings.tmp_dir) == []


def test_no_face_video_gets_no_face_verdict_when_analysed(server, videos):
    with server.client() as client:
        job = wait_for_job(client, upload(client, videos["no_face"]).json()["id"])
    assert job["verdict"]["label"] == "NO_FACE"
    assert job["verdict"]["fake_probability"] is None
    assert job["faces"] == []


def test_video_kept_when_user_opts_in(server, videos):
    with server.client() as client:
        response = upload(client, videos["no_face"], keep_video="true")
        job = wait_for_job(client, response.json()["id"])
    assert job["keep_video"] is True and job["video_stored"] is True
    engine = open_database(server.settings.database_url)
    stored = jobstore.get_job(engine, job["id"])
    engine.dispose()
    assert stored is not None and Path(stored.video_path).is_file()


# --- limits and bad input ----------------------------------------------------------------------
def _multipart_head(port: int, extra: str) -> bytes:
    return (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary=XyZ\r\n{extra}\r\n"
    ).encode()


def test_submit_job_answers_413_before_reading_when_content_length_over_limit(server):
    head = _multipart_head(server.port, f"Content-Length: {50 * LIMIT}\r\n")
    status, _, response = raw_request(server.port, head)  # not one byte of body sent
    assert status == 413, response
    assert b'"too_large"' in response
    assert _files(server.settings.tmp_dir) == []


def test_submit_job_stops_reading_with_413_when_streamed_body_crosses_limit(server, videos):
    part = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        b"Content-Type: video/mp4\r\n\r\n" + videos["face"].read_bytes()[:4096]
    )
    total_chunks = 400  # 400 x 64 KiB = 25 MiB, far beyond the 1 MiB limit

    def chunks() -> Iterator[bytes]:
        yield b"%x\r\n%s\r\n" % (len(part), part)
        for _ in range(total_chunks):
            yield b"%x\r\n%s\r\n" % (65536, b"\0" * 65536)

    head = _multipart_head(server.port, "Transfer-Encoding: chunked\r\n")
    status, sent, response = raw_request(server.port, head, chunks())
    assert status == 413, response[:300]
    assert b'"too_large"' in response
    assert sent < total_chunks * 65536 / 2  # the server answered long before the body ended
    assert _files(server.settings.tmp_dir) == []
    assert _files(server.settings.upload_dir) == [] or all(
        p.suffix == ".mp4" and "big" not in p.name for p in _files(server.settings.upload_dir)
    )


def test_submit_job_answers_415_when_file_is_not_a_video(server, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("these are my interview notes, not a video\n" * 20)
    with server.client() as client:
        response = upload(client, text)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "not_a_video"
    assert _files(server.settings.tmp_dir) == []


def test_submit_job_answers_415_when_container_header_hides_garbage(server, tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    before = _files(server.settings.upload_dir)
    with server.client() as client:
        response = upload(client, fake)
    assert response.status_code == 415
    assert (
        "cannot be decoded" in response.json()["error"]["message"]
        or "not a video" in response.json()["error"]["message"]
    )
    assert _files(server.settings.tmp_dir) == []
    assert _files(server.settings.upload_dir) == before


def test_submit_job_answers_413_when_video_longer_than_limit(server, videos):
    with server.client() as client:
        response = upload(client, videos["long"])
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_long"


def test_submit_job_answers_415_when_body_is_not_multipart(server):
    with server.client() as client:
        response = client.post(
            "/api/v1/jobs", content=b"\x00" * 100, headers={"Content-Type": "video/mp4"}
        )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "not_multipart"


def test_submit_job_answers_422_when_webhook_not_loopback(server, videos):
    with server.client() as client:
        response = upload(client, videos["no_face"], webhook_url="http://10.9.8.7/hook")
    assert response.status_code == 422
    assert "loopback" in response.json()["error"]["message"]


# --- keys, quotas, rate limits -----------------------------------------------------------------
def test_submit_job_answers_401_when_key_unknown_or_malformed(server, videos):
    unknown = "fsk_0123456789ab_" + "A" * 43
    with server.client() as client:
        bad = upload(client, videos["no_face"], headers={"X-API-Key": unknown})
        malformed = upload(
            client, videos["no_face"], headers={"Authorization": "Bearer fsk_nonsense"}
        )
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "bad_key"
    assert malformed.status_code == 401


def test_submit_job_answers_403_when_key_revoked(server, videos):
    key, secret = _key(server)
    engine = open_database(server.settings.database_url)
    keys.revoke_key(engine, key.id)
    engine.dispose()
    with server.client() as client:
        response = upload(client, videos["no_face"], headers={"X-API-Key": secret})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "revoked_key"


def _server_from_env(root: Path, allow_anonymous: str) -> LiveServer:
    """A server whose anonymous switch comes from the README's variable (no analysis runs)."""
    base = dataclasses.asdict(web_settings(root, f"127.0.0.1:{free_ports(1)[0]}", workers=0))
    del base["allow_anonymous"]
    env = {"FAKESCOPE_WEB_ALLOW_ANONYMOUS": allow_anonymous}
    return LiveServer(Settings.from_env(env, **base))


def test_submit_job_answers_401_without_key_when_anonymous_uploads_off(tmp_path, videos):
    with _server_from_env(tmp_path, "false") as live, live.client() as client:
        anonymous = upload(client, videos["no_face"])
        _, secret = _key(live)
        keyed = upload(client, videos["no_face"], headers={"X-API-Key": secret})
    assert live.settings.allow_anonymous is False
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["error"]["code"] == "key_required"
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert VISITOR_COOKIE not in anonymous.cookies
    assert keyed.status_code == 202, keyed.text  # keys are unaffected


def test_submit_job_answers_202_without_key_when_anonymous_uploads_on(tmp_path, videos):
    with _server_from_env(tmp_path, "true") as live, live.client() as client:
        response = upload(client, videos["no_face"])
        job = client.get(f"/api/v1/jobs/{response.json()['id']}")  # the cookie names the owner
    assert live.settings.allow_anonymous is True
    assert response.status_code == 202, response.text
    assert VISITOR_COOKIE in response.cookies
    assert job.status_code == 200 and job.json()["status"] == "pending"


def test_submit_job_answers_429_when_monthly_quota_used(server, videos):
    _, secret = _key(server, quota=1)
    auth = {"Authorization": f"Bearer {secret}"}
    with server.client() as client:
        first = upload(client, videos["no_face"], headers=auth)
        second = upload(client, videos["no_face"], headers=auth)
        usage = client.get("/api/v1/usage", headers=auth).json()
        wait_for_job(client, first.json()["id"], headers=auth)
    assert first.status_code == 202
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "quota_exceeded"
    assert int(second.headers["Retry-After"]) > 0
    assert usage["used_this_month"] == 1 and usage["remaining_this_month"] == 0


def test_submit_job_answers_429_when_rate_limit_reached(server, videos):
    _, secret = _key(server, rate=1)
    auth = {"X-API-Key": secret}
    with server.client() as client:
        first = upload(client, videos["no_face"], headers=auth)
        second = upload(client, videos["no_face"], headers=auth)
        wait_for_job(client, first.json()["id"], headers=auth)
    assert first.status_code == 202
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limited"
    assert 0 < int(second.headers["Retry-After"]) <= 60


def test_key_jobs_shared_within_organisation_when_listed(server, videos):
    _, secret_a = _key(server)
    _, secret_b = _key(server)
    with server.client() as client:
        job = upload(client, videos["no_face"], headers={"X-API-Key": secret_a}).json()
        seen = client.get(f"/api/v1/jobs/{job['id']}", headers={"X-API-Key": secret_b})
        wait_for_job(client, job["id"], headers={"X-API-Key": secret_a})
    assert seen.status_code == 200


# --- webhooks ----------------------------------------------------------------------------------
def test_webhook_posts_verdict_when_job_done(server, videos):
    with webhook_receiver() as hook, server.client() as client:
        response = upload(client, videos["no_face"], webhook_url=hook.url)
        assert response.status_code == 202, response.text
        assert hook.event.wait(60)
        job = wait_for_job(client, response.json()["id"])
        deadline = time.monotonic() + 10
        while job["webhook"]["result"] is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the outcome is stored right after the receiver answered
            job = client.get(f"/api/v1/jobs/{job['id']}").json()
    payload = hook.received[0]
    assert payload["job_id"] == job["id"] and payload["status"] == "done"
    assert payload["verdict"]["label"] == "NO_FACE"
    assert job["webhook"]["result"] == "HTTP 200"


# --- restart -----------------------------------------------------------------------------------
def test_job_survives_restart_when_pending_at_shutdown(triton, tmp_path, videos):
    settings = web_settings(tmp_path, triton.address.grpc_url, workers=0)
    with LiveServer(settings) as first, first.client() as client:
        response = upload(client, videos["face"])
        assert response.status_code == 202
        job_id = response.json()["id"]
        assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "pending"
        cookies = dict(client.cookies)
    with LiveServer(settings.replace(workers=1)) as second, second.client(cookies=cookies) as c:
        job = wait_for_job(c, job_id)
    assert job["status"] == "done"
    assert job["verdict"]["label"] in ("FAKE", "REAL")


def test_job_resumed_when_its_worker_died_while_running(triton, tmp_path, videos):
    settings = web_settings(tmp_path, triton.address.grpc_url, workers=0)
    with LiveServer(settings) as first, first.client() as client:
        job_id = upload(client, videos["no_face"]).json()["id"]
        cookies = dict(client.cookies)
    engine = open_database(settings.database_url)
    claimed = jobstore.claim_next(engine, "dead-worker", lease_s=0.01)  # then "crashes"
    engine.dispose()
    assert claimed is not None and claimed.id == job_id
    resumed = settings.replace(workers=1, lease_s=0.3)
    with LiveServer(resumed) as second, second.client(cookies=cookies) as c:
        job = wait_for_job(c, job_id)
    assert job["status"] == "done" and job["attempts"] == 2


# --- how the frames reach Triton ---------------------------------------------------------------
def _registered_regions(triton) -> set[str]:
    status = httpclient.InferenceServerClient(triton.address.http_url)
    return {region["name"] for region in status.get_system_shared_memory_status()}


@pytest.mark.parametrize(("choice", "regions"), [("auto", 1), ("on", 1), ("off", 0)])
def test_job_runner_registers_frame_region_only_when_shared_memory_is_not_off(
    triton, tmp_path, videos, choice, regions
):
    before = _registered_regions(triton)
    settings = web_settings(tmp_path, triton.address.grpc_url, triton_shared_memory=choice)
    with LiveServer(settings) as live, live.client() as client:
        job = wait_for_job(client, upload(client, videos["no_face"]).json()["id"])
        added = _registered_regions(triton) - before  # the runner's client keeps its region
    assert job["status"] == "done"
    assert len(added) == regions


def test_job_fails_with_server_unreachable_when_triton_down(tmp_path, videos):
    closed = f"127.0.0.1:{free_ports(1)[0]}"
    settings = web_settings(
        tmp_path, closed, max_attempts=2, retry_backoff_s=0.1, triton_timeout_s=2.0
    )
    with LiveServer(settings) as live, live.client() as client:
        job = wait_for_job(client, upload(client, videos["no_face"]).json()["id"], timeout_s=60)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "server_unreachable"
    assert job["attempts"] == 2


@pytest.mark.slow
def test_job_is_tried_again_until_done_when_triton_refuses_it_as_busy(triton, tmp_path):
    # Two 64-frame 720p requests take the detector (one runs, one waits). A 0.4 s clip's job
    # then comes with a 0.2 s budget: the server refuses it rather than answer it late, and the
    # runner puts it back instead of failing it; a later attempt, with a fresh budget, is
    # answered once the detector is free.
    clip = make_face_video(tmp_path / "clip.mp4", seconds=0.4, size=(320, 180))
    source = make_face_video(
        tmp_path / "heavy.mp4", seconds=3.2, fps=10, size=(1280, 720), codec="avc1"
    )
    frames = sample_frames(source, contract.MAX_FRAMES_PER_REQUEST // 2).frames
    heavy = np.concatenate([frames, frames])
    settings = web_settings(tmp_path, triton.address.grpc_url, max_attempts=30, retry_backoff_s=0.2)
    outcomes: dict[str, str] = {}
    url = triton.address.grpc_url
    with LiveServer(settings) as live, live.client() as client:
        users = [analyze_in_thread(url, heavy, None, outcomes, name) for name in ("a", "b")]
        wait_until_waiting(triton, 1)  # one of them runs, the other waits
        job = wait_for_job(client, upload(client, clip).json()["id"], timeout_s=120)
        for user in users:
            user.join()
    assert outcomes == {"a": contract.STATUS_OK, "b": contract.STATUS_OK}
    assert job["status"] == "done", job
    assert job["attempts"] >= 2, job  # the first attempt was refused, not failed


# --- metrics, beacon, admin --------------------------------------------------------------------
def _rejections(text: str, code: str) -> float:
    """The value of ``fakescope_web_rejections_total`` for ``code`` in a scrape (0 if absent)."""
    prefix = f'fakescope_web_rejections_total{{code="{code}"}} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_metrics_exports_business_and_latency_when_scraped(face_job, server):
    admin = {"Authorization": f"Bearer {ADMIN}"}  # as Prometheus sends it
    with server.client() as client:
        before = _rejections(client.get("/metrics", headers=admin).text, "not_multipart")
        refused = client.post(
            "/api/v1/jobs", content=b"\x00" * 100, headers={"Content-Type": "video/mp4"}
        )
        client.request("BREW", "/")  # a method no client of this service sends
        text = client.get("/metrics", headers=admin).text
    assert refused.status_code == 415
    assert 'method="BREW"' not in text
    assert 'count{method="other",route="/",status="405"}' in text
    assert "fakescope_web_uses_today" in text
    assert "fakescope_web_first_to_second_use_conversion_ratio" in text
    assert (
        'fakescope_web_http_request_duration_seconds_count{method="POST",route="/api/v1/jobs"'
        in text
    )
    assert 'fakescope_web_analyses_total{outcome="done"}' in text
    assert _rejections(text, "not_multipart") == before + 1


def test_beacon_sets_average_time_on_page_when_page_reports(server):
    with server.client() as client:
        page = client.get("/")
        view_id = page.text.split('data-view-id="')[1].split('"')[0]
        assert (
            client.post(
                "/api/v1/beacon", content=json.dumps({"view_id": view_id, "seconds": 30})
            ).status_code
            == 204
        )
        assert (
            client.post(
                "/api/v1/beacon", content=json.dumps({"view_id": view_id, "seconds": 12})
            ).status_code
            == 204
        )  # smaller: ignored
        metrics = client.get(
            "/api/v1/admin/metrics", headers={"Authorization": f"Bearer {ADMIN}"}
        ).json()
    with server.client() as stranger:
        # a visitor of its own (cookie set by its page view), not the one whose view it names
        assert VISITOR_COOKIE in stranger.get("/").cookies
        foreign = stranger.post(
            "/api/v1/beacon", content=json.dumps({"view_id": view_id, "seconds": 99})
        )
        after = stranger.get(
            "/api/v1/admin/metrics", headers={"Authorization": f"Bearer {ADMIN}"}
        ).json()
    assert foreign.status_code == 404
    assert metrics["timed_page_views"] >= 1
    assert metrics["average_page_seconds"] == pytest.approx(30.0)
    assert after["average_page_seconds"] == pytest.approx(30.0)


def test_admin_metrics_answers_403_when_token_missing(server):
    with server.client() as client:
        assert client.get("/api/v1/admin/metrics").status_code == 403
        assert client.get("/admin").status_code == 403
        assert client.get("/metrics").status_code == 403  # the business figures are there too


def test_admin_page_sets_no_cookie_when_the_token_in_its_link_is_wrong(server):
    with server.client() as client:
        wrong = client.get("/admin?token=not-the-token", follow_redirects=False)
        right = client.get(f"/admin?token={ADMIN}", follow_redirects=False)
    assert wrong.status_code == 403 and ADMIN_COOKIE not in wrong.cookies
    assert right.status_code == 303 and right.cookies[ADMIN_COOKIE] == ADMIN


def test_openapi_schema_is_the_api_documentation_when_no_viewer_is_served(server):
    with server.client() as client:
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 404  # its CDN scripts: refused by the CSP
        assert 'href="/openapi.json"' in client.get("/").text


def test_admin_metrics_count_conversion_when_key_returns(server, videos):
    _, secret = _key(server)
    auth = {"X-API-Key": secret}
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with server.client() as client:
        before = client.get("/api/v1/admin/metrics", headers=admin).json()
        first = upload(client, videos["no_face"], headers=auth)
        wait_for_job(client, first.json()["id"], headers=auth)
        once = client.get("/api/v1/admin/metrics", headers=admin).json()
        second = upload(client, videos["no_face"], headers=auth)
        wait_for_job(client, second.json()["id"], headers=auth)
        twice = client.get("/api/v1/admin/metrics", headers=admin).json()
    assert (first.status_code, second.status_code) == (202, 202)
    keys_before, keys_once, keys_twice = (m["conversion_keys"] for m in (before, once, twice))
    # the key's first use makes it a first user; its second makes it one who came back
    assert keys_once["first_use"] == keys_before["first_use"] + 1
    assert keys_once["second_use"] == keys_before["second_use"]
    assert keys_twice["first_use"] == keys_once["first_use"]
    assert keys_twice["second_use"] == keys_once["second_use"] + 1
    assert keys_twice["rate"] == pytest.approx(keys_twice["second_use"] / keys_twice["first_use"])
    assert twice["uses_today"] == before["uses_today"] + 2
    assert twice["uses_per_day"][-1]["uses"] == twice["uses_today"]


def test_health_reports_database_and_triton_when_both_answer(server):
    # the path the image's health check and the chart's probes call (contract.WEB_HEALTH_PATH)
    with server.client() as client:
        response = client.get(contract.WEB_HEALTH_PATH)
    assert response.status_code == 200
    body = response.json()
    assert (body["database"], body["triton"]) == ("ok", "live")
    assert isinstance(body["jobs"], dict)


def test_health_reports_triton_unreachable_but_answers_200_when_only_the_database_is_up(
    tmp_path,
):
    (unused,) = free_ports(1)
    settings = web_settings(tmp_path, f"127.0.0.1:{unused}")  # nothing listens there
    with LiveServer(settings) as live, live.client() as client:
        response = client.get(contract.WEB_HEALTH_PATH)
    assert response.status_code == 200  # the web service itself is alive: not restarted
    assert response.json()["triton"] == "unreachable"


def test_openapi_documents_multipart_upload_when_fetched(server):
    with httpx.Client(base_url=server.url) as client:
        spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]
    assert "file" in body["multipart/form-data"]["schema"]["properties"]
