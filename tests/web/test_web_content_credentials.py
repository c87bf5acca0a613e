"""Content Credentials in the web service: API, result page, webhook, settings.

A real uvicorn server and the real Triton; the videos are signed here with a test CA whose
root is the service's trust list (``FAKESCOPE_WEB_TRUST_ANCHORS_PATH``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakescope.client.content_credentials import JSON_FIELD
from fakescope.web.settings import Settings, SettingsError
from tests.support.c2pa_media import AI_GENERATED, make_test_ca, manifest, sign_video
from tests.support.media import make_face_video
from tests.support.web_support import LiveServer, upload, wait_for_job, web_settings
from tests.support.webhook_receiver import webhook_receiver


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("web-c2pa")
    signer = make_test_ca(organisation="Test Newsroom Generator")
    trust = root / "roots.pem"
    trust.write_bytes(signer.ca_pem)
    unsigned = make_face_video(root / "interview.mp4")
    signed = sign_video(unsigned, root / "generated.mp4", signer, manifest(AI_GENERATED))
    return {"trust": trust, "unsigned": unsigned, "signed": signed}


@pytest.fixture(scope="module")
def jobs(triton, media, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One visitor uploads the signed video (with a webhook) and the unsigned one."""
    root = tmp_path_factory.mktemp("web-c2pa-server")
    settings = web_settings(root, triton.address.grpc_url, trust_anchors_path=media["trust"])
    with (
        webhook_receiver() as hook,
        LiveServer(settings) as live,
        live.client() as client,
    ):
        signed = upload(client, media["signed"], webhook_url=hook.url)
        unsigned = upload(client, media["unsigned"])
        assert signed.status_code == unsigned.status_code == 202, signed.text
        done = {
            name: wait_for_job(client, response.json()["id"])
            for name, response in (("signed", signed), ("unsigned", unsigned))
        }
        assert hook.event.wait(30)
        pages = {name: client.get(f"/jobs/{job['id']}").text for name, job in done.items()}
        verdict = client.get(done["signed"]["links"]["verdict"]).json()
        yield {"jobs": done, "pages": pages, "verdict": verdict, "hook": hook.received}


def test_job_verdict_carries_trusted_ai_declaration_when_signer_is_on_the_trust_list(jobs):
    job = jobs["jobs"]["signed"]
    assert job["status"] == "done", job["error"]
    cc = job["verdict"][JSON_FIELD]
    assert (cc["status"], cc["validation_state"]) == ("valid_trusted", "Trusted")
    assert cc["declares_ai_generated"] is True
    assert cc["digital_source_types"] == ["trainedAlgorithmicMedia"]
    assert cc["signer"]["organisation"] == "Test Newsroom Generator"
    assert cc["signer"]["certificate_issuer"].startswith("Test Newsroom Generator Root CA")
    assert jobs["verdict"] == job["verdict"]  # GET …/verdict: the CLI's --json fields


def test_job_probability_is_untouched_by_credentials_when_same_pictures_are_signed(jobs):
    signed, unsigned = (jobs["jobs"][k]["verdict"] for k in ("signed", "unsigned"))
    assert unsigned[JSON_FIELD]["status"] == "absent"
    # Same frames, one copy signed as AI-generated: the classifier's numbers do not move.
    assert signed["label"] == unsigned["label"]
    assert signed["fake_probability"] == pytest.approx(unsigned["fake_probability"], abs=1e-6)
    assert signed["frame_scores"] == pytest.approx(unsigned["frame_scores"], abs=1e-6)


def test_webhook_payload_carries_credentials_when_signed_job_is_done(jobs):
    payload = jobs["hook"][0]
    assert payload["job_id"] == jobs["jobs"]["signed"]["id"]
    assert payload["verdict"][JSON_FIELD]["status"] == "valid_trusted"


def test_result_page_shows_credentials_panel_beside_the_verdict_when_job_is_done(jobs):
    signed, unsigned = jobs["pages"]["signed"], jobs["pages"]["unsigned"]
    assert 'id="content-credentials"' in signed and 'data-status="valid_trusted"' in signed
    assert "Signed by a signer on your trust list" in signed
    assert "made by generative AI (trainedAlgorithmicMedia)" in signed
    assert "does not change the fake score" in signed
    assert signed.index('id="score"') < signed.index('id="content-credentials"')
    assert 'data-status="absent"' in unsigned and "No Content Credentials" in unsigned


def test_web_settings_refuse_trust_anchors_path_when_file_holds_no_certificate(tmp_path):
    bad = tmp_path / "roots.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(SettingsError, match="trust_anchors_path") as info:
        Settings.from_env({"FAKESCOPE_WEB_TRUST_ANCHORS_PATH": str(bad)})
    assert "no certificate" in str(info.value)
    assert Settings.from_env({"FAKESCOPE_WEB_TRUST_ANCHORS_PATH": ""}).trust_anchors_path is None
