"""Units of the web service that need no server: wording, chart, sniffing, settings, keys, CLI."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from sqlalchemy import text, update
from starlette.requests import Request

from fakescope.cli import main as fakescope_main
from fakescope.client.triton import DEFAULT_URLS
from fakescope.web import cli, db, jobstore, keys
from fakescope.web.jobs import JobRunner
from fakescope.web.presentation import LIMITATIONS_NOTICE, describe, timeline_svg
from fakescope.web.principals import ApiError, resolve_principal
from fakescope.web.settings import Settings, SettingsError
from fakescope.web.uploads import looks_like_video
from fakescope.web.webhooks import WebhookURLError, check_webhook_url
from tests.support.media import make_face_video
from tests.support.servers import wait_until
from tests.support.web_support import BlackHole


def _verdict(label: str, p: float | None, trained: bool = True) -> dict:
    return {
        "label": label,
        "fake_probability": p,
        "frames": 4,
        "faces": 3,
        "threshold": 0.5,
        "model_trained": trained,
        "frame_scores": [0.2, None, p, 0.1],
    }


def test_describe_flags_manipulation_in_plain_words_when_fake():
    w = describe(_verdict("FAKE", 0.93), [0.0, 1.0, 2.0, 3.0])
    assert w.headline == "Very likely manipulated" and w.tone == "fake"
    assert "93 %" in w.detail and "0:02.0" in w.detail and w.caveat is None


def test_describe_warns_not_proof_when_real():
    w = describe(_verdict("REAL", 0.04))
    assert w.headline == "No sign of face manipulation"
    assert "not proof" in w.detail


def test_describe_says_cannot_tell_when_no_face():
    w = describe(_verdict("NO_FACE", None))
    assert w.headline == "No face found" and "cannot say" in w.detail


def test_describe_adds_test_mode_caveat_when_classifier_untrained():
    assert "not findings" in describe(_verdict("REAL", 0.3, trained=False)).caveat


def test_describe_repeats_the_stated_limitations_when_trained_classifier_has_them():
    verdict = {**_verdict("REAL", 0.3), "model_limitations": "Trained only on synthetic faces."}
    caveat = describe(verdict).caveat
    assert caveat == LIMITATIONS_NOTICE + "Trained only on synthetic faces."


def test_timeline_svg_draws_dots_and_no_face_ticks_when_scores_have_gaps():
    svg = timeline_svg([0.2, None, 0.8, 0.1], [0.0, 1.0, 2.0, 3.0], duration=4.0)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<circle") == 3
    assert svg.count('class="noface"') == 1
    assert svg.count('class="dot fake"') == 1
    assert 'class="threshold"' in svg


def test_looks_like_video_accepts_containers_and_rejects_others_when_sniffed(tmp_path):
    mp4 = make_face_video(tmp_path / "v.mp4", seconds=0.2)
    assert looks_like_video(mp4.read_bytes()[:189])
    assert looks_like_video(b"\x1a\x45\xdf\xa3" + b"\0" * 20)
    assert looks_like_video(b"RIFF\0\0\0\0AVI LIST")
    assert not looks_like_video(b"GIF89a" + b"\0" * 200)
    assert not looks_like_video(b"%PDF-1.7\n" + b"\0" * 200)
    assert not looks_like_video(b"hello")


def test_settings_from_env_reads_variables_when_valid():
    s = Settings.from_env(
        {
            "FAKESCOPE_WEB_WORKERS": "3",
            "FAKESCOPE_WEB_ALLOW_ANONYMOUS": "no",
            "FAKESCOPE_WEB_MAX_SIDE": "",
            "FAKESCOPE_WEB_DATA_DIR": "/x",
            "FAKESCOPE_WEB_TRITON_SHARED_MEMORY": "on",
        }
    )
    assert (s.workers, s.allow_anonymous, s.max_side, s.data_dir) == (3, False, None, Path("/x"))
    assert s.triton_shared_memory_flag is True
    assert Settings().triton_shared_memory_flag is None  # auto: when Triton is on loopback


def test_settings_from_env_names_variable_when_malformed():
    with pytest.raises(SettingsError, match="FAKESCOPE_WEB_WORKERS"):
        Settings.from_env({"FAKESCOPE_WEB_WORKERS": "many"})
    with pytest.raises(SettingsError, match="webhook_policy"):
        Settings.from_env({"FAKESCOPE_WEB_WEBHOOK_POLICY": "anywhere"})
    with pytest.raises(SettingsError, match="triton_shared_memory must be one of"):
        Settings.from_env({"FAKESCOPE_WEB_TRITON_SHARED_MEMORY": "yes"})


def test_settings_take_the_protocols_own_port_when_no_triton_url_is_given():
    assert Settings.from_env({}).triton_url == DEFAULT_URLS["grpc"]
    assert (
        Settings.from_env({"FAKESCOPE_WEB_TRITON_PROTOCOL": "http"}).triton_url
        == (DEFAULT_URLS["http"])
    )
    given = {"FAKESCOPE_WEB_TRITON_PROTOCOL": "http", "FAKESCOPE_WEB_TRITON_URL": "t:9000"}
    assert Settings.from_env(given).triton_url == "t:9000"


def test_settings_from_env_refuses_an_empty_folder_when_data_dir_is_blank():
    with pytest.raises(SettingsError, match="FAKESCOPE_WEB_DATA_DIR=''"):
        Settings.from_env({"FAKESCOPE_WEB_DATA_DIR": ""})


def test_settings_from_env_warns_of_a_variable_when_no_setting_has_its_name(
    caplog: pytest.LogCaptureFixture,
):
    settings = Settings.from_env({"FAKESCOPE_WEB_WORKER": "9", "OTHER_WORKER": "9"})
    assert settings.workers == Settings().workers
    assert "ignoring unknown settings: FAKESCOPE_WEB_WORKER" in caplog.text
    assert "OTHER_WORKER" not in caplog.text


def test_web_serve_exits_7_before_starting_triton_when_a_setting_is_out_of_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # a repository that is not there: had Triton been started first, it would fail with 6
    code = fakescope_main(
        [
            "web",
            "serve",
            "--start-triton",
            "--repository",
            str(tmp_path / "no-repository"),
            "--workers",
            "-1",
            "--data-dir",
            str(tmp_path / "data"),
            "--database",
            f"sqlite:///{tmp_path / 'web.db'}",
        ]
    )
    assert code == cli.EXIT_CONFIG
    assert "workers must be >= 0, got -1" in capsys.readouterr().err


def test_check_webhook_url_refuses_private_address_when_policy_public():
    with pytest.raises(WebhookURLError, match="not a public address"):
        check_webhook_url("http://127.0.0.1:9/hook", "public")
    with pytest.raises(WebhookURLError, match="disabled"):
        check_webhook_url("http://127.0.0.1:9/hook", "off")
    with pytest.raises(WebhookURLError, match="http"):
        check_webhook_url("file:///etc/passwd", "loopback")
    assert check_webhook_url("http://127.0.0.1:9/hook", "loopback")


@pytest.mark.parametrize(
    ("host", "public"),
    [
        ("[2002:a00:1::1]", False),  # 6to4 of 10.0.0.1
        ("[2002:7f00:1::1]", False),  # 6to4 of 127.0.0.1
        ("[64:ff9b::a9fe:a9fe]", False),  # NAT64 of 169.254.169.254 (cloud metadata)
        ("[64:ff9b:1::a00:1]", False),  # local-use NAT64 of 10.0.0.1
        ("[2002:808:808::1]", True),  # 6to4 of 8.8.8.8
        ("[64:ff9b::808:808]", True),  # NAT64 of 8.8.8.8
    ],
)
def test_check_webhook_url_judges_the_ipv4_address_when_an_ipv6_one_carries_it(
    host: str, public: bool
):
    url = f"http://{host}/hook"
    if public:
        assert check_webhook_url(url, "public") == url
    else:
        with pytest.raises(WebhookURLError, match="not a public address"):
            check_webhook_url(url, "public")


@pytest.mark.parametrize("host", ["a..b", ".x", "a" * 64 + ".example", "x." + "b" * 70])
def test_check_webhook_url_refuses_with_webhook_url_error_when_a_host_label_is_empty_or_too_long(
    host: str,
):
    for policy in ("public", "loopback"):
        with pytest.raises(WebhookURLError, match="not a valid host name"):
            check_webhook_url(f"http://{host}/hook", policy)


def test_key_stored_hashed_when_created(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    engine = db.open_database(url)
    key, secret = keys.create_key(engine, "Gazette", monthly_quota=5, rate_per_minute=2)
    engine.dispose()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("k.db*"))
    # fsk_<id>_<secret>: the secret is URL-safe base64, which may hold "_" itself
    prefix = f"{keys.KEY_PREFIX}_{key.id}_"
    assert secret.startswith(prefix)
    assert len(secret) - len(prefix) >= 32
    assert secret[len(prefix) :].encode() not in raw
    assert key.id.encode() in raw


def test_create_key_refuses_an_organisation_when_its_jobs_owner_would_overflow_the_column(
    tmp_path,
):
    engine = db.open_database(f"sqlite:///{tmp_path / 'o.db'}")
    owner_chars = db.jobs.c.owner.type.length  # "org:" + organisation goes in this column
    longest = "O" * (owner_chars - len("org:"))
    key, _ = keys.create_key(engine, longest, monthly_quota=1, rate_per_minute=1)
    assert len(key.owner) == owner_chars
    with pytest.raises(ValueError, match=f"organisation must be 1..{len(longest)} characters"):
        keys.create_key(engine, longest + "O", monthly_quota=1, rate_per_minute=1)
    assert [k.organisation for k in keys.list_keys(engine)] == [longest]
    engine.dispose()


def test_keys_cli_exits_7_naming_the_limit_when_organisation_is_too_long(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    org = "O" * (db.jobs.c.owner.type.length + 1)
    assert cli.main(["web", "keys", "create", "--org", org, "--database", url]) == 7
    assert "organisation must be 1.." in capsys.readouterr().err


def test_open_database_refuses_other_schema_version_when_found(tmp_path):
    url = f"sqlite:///{tmp_path / 'v.db'}"
    engine = db.open_database(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE schema_info SET version = 99"))
    engine.dispose()
    with pytest.raises(db.DatabaseError, match="schema version"):
        db.open_database(url)


def test_keys_cli_creates_lists_and_revokes_when_run(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert (
        cli.main(
            [
                "web",
                "keys",
                "create",
                "--org",
                "Courier",
                "--monthly-quota",
                "50",
                "--json",
                "--database",
                url,
            ]
        )
        == 0
    )
    created = json.loads(capsys.readouterr().out)
    assert created["key"].startswith("fsk_") and created["monthly_quota"] == 50
    assert cli.main(["web", "keys", "list", "--json", "--database", url]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["key_id"] == created["key_id"] and listed["revoked"] is False
    assert cli.main(["web", "keys", "revoke", created["key_id"], "--database", url]) == 0
    assert cli.main(["web", "keys", "revoke", "000000000000", "--database", url]) == 3
    assert "no API key" in capsys.readouterr().err
    engine = db.open_database(url)
    with pytest.raises(keys.ApiKeyError):
        keys.verify_key(engine, created["key"])
    engine.dispose()


def test_keys_cli_exits_2_when_quota_not_positive(tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["web", "keys", "create", "--org", "X", "--monthly-quota", "0"])
    assert exc.value.code == 2


def test_retention_sweep_deletes_kept_video_when_older_than_retention(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'r.db'}", data_dir=tmp_path, video_retention_s=0.01
    )
    engine = db.open_database(settings.database_url)
    video = tmp_path / "kept.mp4"
    video.write_bytes(b"x")
    job = jobstore.create_job(
        engine,
        job_id="f" * 32,
        owner="visitor:v",
        subject="visitor:v",
        key_id=None,
        filename="kept.mp4",
        size_bytes=1,
        video_path=str(video),
        keep_video=True,
        webhook_url=None,
    )
    jobstore.fail_job(engine, job.id, None, code="x", message="x")
    time.sleep(0.05)
    assert JobRunner(engine, settings).sweep_retention() == 1
    assert not video.exists()
    assert jobstore.get_job(engine, job.id).video_path is None
    engine.dispose()


def test_job_runner_keeps_the_video_and_its_worker_when_settling_a_job_fails(tmp_path):
    """A failed write of the outcome leaves the upload for the next attempt, and the thread."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'j.db'}",
        data_dir=tmp_path,
        workers=1,
        lease_s=1.5,
        poll_interval_s=0.1,
        triton_url="127.0.0.1:1",  # never called: the video is unreadable
    )
    engine = db.open_database(settings.database_url)
    video = tmp_path / "upload.mp4"
    video.write_bytes(b"no container at all")
    job = jobstore.create_job(
        engine,
        job_id="e" * 32,
        owner="visitor:v",
        subject="visitor:v",
        key_id=None,
        filename="upload.mp4",
        size_bytes=video.stat().st_size,
        video_path=str(video),
        keep_video=False,
        webhook_url=None,
    )
    # The database refuses the outcome, as a locked or failing one would.
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER refuse_outcome BEFORE UPDATE OF status ON jobs "
                "WHEN NEW.status = 'failed' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
            )
        )
    runner = JobRunner(engine, settings)
    runner.start()
    try:
        assert wait_until(lambda: jobstore.get_job(engine, job.id).attempts >= 2, timeout_s=30)
        assert video.exists()
        assert [t.name for t in runner._threads if t.is_alive()] == [
            "fakescope-job-0",
            "fakescope-heartbeat",
            "fakescope-housekeeping",
        ]
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse_outcome"))
        assert wait_until(
            lambda: jobstore.get_job(engine, job.id).status == jobstore.FAILED, timeout_s=30
        )
    finally:
        runner.stop()
    settled = jobstore.get_job(engine, job.id)
    assert settled.error_code == "unreadable_video"
    assert settled.video_path is None
    assert not video.exists()
    engine.dispose()


def _job_row(engine, n: int, video_path: str, *, keep: bool) -> jobstore.Job:
    return jobstore.create_job(
        engine,
        job_id=f"{n:032x}",
        owner="visitor:v",
        subject="visitor:v",
        key_id=None,
        filename=f"v{n}.mp4",
        size_bytes=1,
        video_path=video_path,
        keep_video=keep,
        webhook_url=None,
    )


def test_job_runner_keeps_a_running_jobs_lease_when_the_retention_sweep_hangs_on_the_store(
    tmp_path, monkeypatch
):
    """A store that never answers holds up the sweep, never the heartbeat of running jobs."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "test-only")  # the black hole takes any credentials
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'h.db'}",
        data_dir=tmp_path,
        workers=1,
        lease_s=3.0,
        poll_interval_s=0.1,
        video_retention_s=60.0,
        triton_url="127.0.0.1:1",  # never called: the video never arrives
    )
    engine = db.open_database(settings.database_url)
    with BlackHole() as store:
        bucket = f"s3://127.0.0.1:{store.port}/uploads"
        kept = _job_row(engine, 1, f"{bucket}/kept.mp4", keep=True)
        jobstore.fail_job(engine, kept.id, None, code="x", message="x")
        with engine.begin() as conn:  # uploaded an hour ago: past its retention
            conn.execute(
                update(db.jobs).where(db.jobs.c.id == kept.id).values(created_at=db.now() - 3600)
            )
        running = _job_row(engine, 2, f"{bucket}/running.mp4", keep=False)
        runner = JobRunner(engine, settings)
        runner.start()
        try:
            # the worker's download of the running job and the sweep's delete both hang
            assert wait_until(lambda: store.connections >= 2, timeout_s=30)
            assert jobstore.get_job(engine, running.id).worker == runner.worker_id
            time.sleep(2 * settings.lease_s)  # the lease lasts that long only if renewed
            assert jobstore.reclaim_expired(engine) == 0  # as another runner's heartbeat does
            assert jobstore.get_job(engine, running.id).attempts == 1
        finally:
            store.close()  # the store refuses from now on: the download and the sweep give up
            runner.stop()
    engine.dispose()


def test_keys_cli_exits_7_when_database_unusable(tmp_path, capsys):
    url = "postgresql+psycopg2://nobody@127.0.0.1:1/none"
    assert cli.main(["web", "keys", "list", "--database", url]) == 7
    assert "fakescope: error:" in capsys.readouterr().err


def _post_from(origin: str, host: str) -> Request:
    """A page's POST as the service receives it: from ``origin``, with ``Host: host``."""
    headers = [(b"origin", origin.encode()), (b"host", host.encode())]
    return Request({"type": "http", "method": "POST", "path": "/api/v1/jobs", "headers": headers})


@pytest.mark.parametrize(
    ("public_url", "accepted"), [("https://fakescope.example", True), ("", False)]
)
def test_resolve_principal_takes_the_public_origin_when_a_proxy_rewrote_host(
    tmp_path, public_url: str, accepted: bool
):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'o.db'}", data_dir=tmp_path, public_url=public_url
    )
    engine = db.open_database(settings.database_url)
    request = _post_from("https://fakescope.example", "127.0.0.1:8080")  # nginx's $proxy_host
    if accepted:
        assert resolve_principal(request, engine, settings).key is None
    else:
        with pytest.raises(ApiError, match="cross-site"):
            resolve_principal(request, engine, settings)
    with pytest.raises(ApiError, match="cross-site"):  # another site stays another site
        resolve_principal(_post_from("https://evil.example", "127.0.0.1:8080"), engine, settings)
    engine.dispose()


def test_web_serve_logs_no_admin_token_when_a_request_line_carries_it():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/admin?token=s3cret&x=1", "1.1", 303),
        None,
    )
    assert cli._redact_admin_token(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /admin?token=<redacted>&x=1 HTTP/1.1" 303'
