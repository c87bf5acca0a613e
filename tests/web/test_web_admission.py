"""Quotas, rate limits and revocation hold for uploads already streaming when they change.

A real uvicorn server on a real SQLite database, no analysis (``workers=0``). An upload is
held after its headers: the client sends ``Expect: 100-continue`` and the server answers
``100 Continue`` only when the handler starts reading the body, that is once its checks of the
key passed; the body follows when the test says so.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakescope.web import db, keys
from tests.support.media import make_no_face_video
from tests.support.servers import free_ports
from tests.support.web_support import LiveServer, race_for_the_last_use, web_settings


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_no_face_video(tmp_path_factory.mktemp("admission") / "coffee.mp4", seconds=1.0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    settings = web_settings(
        tmp_path, f"127.0.0.1:{free_ports(1)[0]}", workers=0, anonymous_daily_quota=1
    )
    with LiveServer(settings) as live:
        yield live


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


class HeldUpload:
    """An upload whose body waits until :meth:`finish`; built once the server said 100 Continue."""

    def __init__(self, port: int, video: Path, headers: dict[str, str]):
        boundary = uuid.uuid4().hex
        self.body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n'
                "Content-Type: video/mp4\r\n\r\n"
            ).encode()
            + video.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = (
            f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(self.body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        ).encode()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(head)
        interim = _read_head(self.sock)
        assert interim.startswith(b"HTTP/1.1 100 "), interim  # the key's checks passed

    def finish(self) -> tuple[int, bytes]:
        """Send the body; return the final status and the whole answer."""
        with self.sock:
            self.sock.sendall(self.body)
            response = b""
            while chunk := self.sock.recv(65536):
                response += chunk
        return int(response.split(b" ", 2)[1]), response


def _key(live: LiveServer, **limits: int) -> tuple[keys.ApiKey, str]:
    engine = db.open_database(live.settings.database_url)
    try:
        return keys.create_key(engine, "Wire", **limits)
    finally:
        engine.dispose()


def _usage(live: LiveServer, key: keys.ApiKey) -> dict[str, object]:
    engine = db.open_database(live.settings.database_url)
    try:
        return keys.usage(engine, key)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("limits", "code"),
    [
        ({"monthly_quota": 1, "rate_per_minute": 100}, b'"quota_exceeded"'),
        ({"monthly_quota": 100, "rate_per_minute": 1}, b'"rate_limited"'),
    ],
)
def test_submit_job_answers_429_when_uploads_admitted_together_overrun_the_key_limit(
    server: LiveServer, video: Path, limits: dict[str, int], code: bytes
):
    key, secret = _key(server, **limits)
    held = [HeldUpload(server.port, video, {"X-API-Key": secret}) for _ in range(3)]
    answers = [upload.finish() for upload in held]
    assert [status for status, _ in answers] == [202, 429, 429], answers
    assert all(
        code in response and b"retry-after:" in response.lower() for _, response in answers[1:]
    )
    assert _usage(server, key)["used_total"] == 1
    assert len(_files(server.settings.upload_dir)) == 1  # the refused uploads were deleted
    assert _files(server.settings.tmp_dir) == []


def test_submit_job_answers_403_when_the_key_is_revoked_while_the_video_streams(
    server: LiveServer, video: Path
):
    key, secret = _key(server, monthly_quota=100, rate_per_minute=100)
    held = HeldUpload(server.port, video, {"X-API-Key": secret})
    engine = db.open_database(server.settings.database_url)
    keys.revoke_key(engine, key.id)
    engine.dispose()
    status, response = held.finish()
    assert status == 403, response
    assert b'"revoked_key"' in response
    assert _usage(server, key)["used_total"] == 0
    assert _files(server.settings.upload_dir) == []
    assert _files(server.settings.tmp_dir) == []


def test_submit_job_answers_429_when_anonymous_uploads_admitted_together_overrun_the_quota(
    server: LiveServer, video: Path
):
    with server.client() as client:
        client.get("/api/v1/jobs")  # the visitor cookie: one visitor for both uploads
        cookie = f"fakescope_visitor={client.cookies['fakescope_visitor']}"
    held = [HeldUpload(server.port, video, {"Cookie": cookie}) for _ in range(2)]
    answers = [upload.finish() for upload in held]
    assert [status for status, _ in answers] == [202, 429], answers
    assert b'"quota_exceeded"' in answers[1][1]
    assert len(_files(server.settings.upload_dir)) == 1
    assert _files(server.settings.tmp_dir) == []


def test_create_job_admits_one_when_uploads_race_for_the_last_use_of_a_quota(tmp_path: Path):
    engine = db.open_database(f"sqlite:///{tmp_path / 'race.db'}")
    try:
        outcomes = race_for_the_last_use(engine, racers=6)
    finally:
        engine.dispose()
    assert sorted(outcomes) == ["created"] + ["quota_exceeded"] * 5
