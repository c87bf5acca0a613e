"""Helpers for the web-service tests: a live uvicorn server, settings, PostgreSQL, raw HTTP.

Not a test module. Servers run in a thread on a free loopback port (the real ASGI server, so
uploads stream over a real socket); PostgreSQL runs as a throwaway cluster (``initdb`` +
``pg_ctl``) in a temp folder, as the ``postgres`` user when the tests run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine

from fakescope.web import jobstore, keys
from fakescope.web.app import create_app
from fakescope.web.principals import ApiError, Principal, admit_upload
from fakescope.web.settings import Settings
from tests.support.servers import free_ports


def web_settings(root: Path, triton_url: str, **overrides: Any) -> Settings:
    """Settings for a test app: SQLite and data under ``root``, Triton at ``triton_url``."""
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{root / 'web.db'}",
        "data_dir": root / "data",
        "triton_url": triton_url,
        "workers": 1,
        "poll_interval_s": 0.1,
        "webhook_policy": "loopback",
        "webhook_timeout_s": 2.0,
        "triton_timeout_s": 30.0,
    }
    values.update(overrides)
    return Settings(**values)


class LiveServer:
    """``create_app(settings)`` served by uvicorn in a thread on a free loopback port."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.app = create_app(settings)
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        # a shutdown that hangs (the job runner's stop included) is a defect, not a leftover
        if self.thread.is_alive():
            raise RuntimeError("uvicorn or its job runner did not stop within 30 s")

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client for this server (cookies persist: one visitor)."""
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def upload(
    client: httpx.Client,
    video: Path,
    *,
    name: str | None = None,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> httpx.Response:
    """POST ``video`` to ``/api/v1/jobs`` as multipart with extra form ``fields``."""
    with open(video, "rb") as f:
        return client.post(
            "/api/v1/jobs",
            files={"file": (name or video.name, f, "video/mp4")},
            data=fields,
            headers=headers or {},
        )


def wait_for_job(
    client: httpx.Client,
    job_id: str,
    *,
    timeout_s: float = 90,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Poll the job until it is done or failed and settled; return its JSON.

    Settled: a video the user did not ask to keep is deleted just after the outcome is stored
    (never before, so that a job whose outcome could not be stored is analysed again).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get(f"/api/v1/jobs/{job_id}", headers=headers or {})
        response.raise_for_status()
        job = response.json()
        settled = job["keep_video"] or not job["video_stored"]
        if job["status"] in ("done", "failed") and settled:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s} s")
        time.sleep(0.2)


def raw_request(
    port: int,
    head: bytes,
    body_chunks: Iterator[bytes] | None = None,
) -> tuple[int, int, bytes]:
    """Send ``head`` then ``body_chunks`` over a raw socket, stopping when an answer arrives.

    Returns ``(status, body_bytes_sent, response_bytes)``. Before each chunk the socket is
    checked for a response: a server that answers early (413) stops the upload at once, as a
    real client would.
    """
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for chunk in body_chunks or iter(()):
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            sent += len(chunk)
        response = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while b"\r\n\r\n" not in response or len(response) < 12:
                data = sock.recv(65536)
                if not data:
                    break
                response += data
            response += _drain(sock)
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0
    return status, sent, response


class BlackHole:
    """A TCP server on loopback that accepts connections and never answers.

    A stand-in for a server that hangs (S3 timing out): a client waits on it for as long as
    its own timeouts allow. :meth:`close` drops every connection and the port, after which the
    client's attempts fail at once (connection refused).
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # so that the accepting thread sees close()
        self.port: int = self._listener.getsockname()[1]
        self._accepted: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return len(self._accepted)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                self._accepted.append(conn)

    def close(self) -> None:
        """Drop every connection and stop listening (idempotent)."""
        self._closed.set()
        self._thread.join(5)
        self._listener.close()
        with self._lock:
            for conn in self._accepted:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drain(sock: socket.socket) -> bytes:
    sock.settimeout(0.5)
    out = b""
    with contextlib.suppress(OSError):
        while data := sock.recv(65536):
            out += data
    return out


def race_for_the_last_use(engine: Engine, racers: int) -> list[str]:
    """Create ``racers`` jobs at once, each admitted as the API does, for a key with a quota
    of one; return each one's outcome: ``created``, or the refusal's code.

    Afterwards the database holds exactly as many jobs and uses as were created.
    """
    key, _ = keys.create_key(engine, "Race", monthly_quota=1, rate_per_minute=100)
    principal, settings = Principal(key=key), Settings()
    start = threading.Barrier(racers)
    outcomes: list[str] = []

    def race(n: int) -> None:
        start.wait(30)
        try:
            jobstore.create_job(
                engine,
                job_id=f"{n:032x}",
                owner=key.owner,
                subject=key.subject,
                key_id=key.id,
                filename="v.mp4",
                size_bytes=1,
                video_path=f"/nonexistent/{n}",
                keep_video=False,
                webhook_url=None,
                admit=lambda conn: admit_upload(conn, settings, principal),
            )
            outcomes.append("created")
        except ApiError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    created = outcomes.count("created")
    assert keys.usage(engine, key)["used_total"] == created
    assert len(jobstore.list_jobs(engine, key.owner)) == created
    return outcomes


# --- PostgreSQL ----------------------------------------------------------------------------
def pg_tool(name: str) -> str | None:
    """Path of a PostgreSQL server tool: on PATH, or Debian's newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return str(candidates[-1]) if candidates else None


def postgres_unavailable_reason() -> str | None:
    """Why a throwaway PostgreSQL cannot be started here, or ``None`` when it can."""
    if os.environ.get("FAKESCOPE_TEST_POSTGRES_URL"):
        return None
    missing = [tool for tool in ("initdb", "pg_ctl") if pg_tool(tool) is None]
    if missing:
        return (
            f"PostgreSQL tools not found ({', '.join(missing)}): install Debian's "
            "postgresql package (.ci/run does) or set FAKESCOPE_TEST_POSTGRES_URL"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as"
    return None


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Yield the URL of a fresh PostgreSQL cluster (or ``$FAKESCOPE_TEST_POSTGRES_URL``).

    The cluster lives in its own folder under the system temp dir (pytest's are private to
    root, and initdb refuses to run as root, so it runs as ``postgres`` there), listens on a
    free loopback port with trust authentication, and is stopped and deleted afterwards.
    """
    if url := os.environ.get("FAKESCOPE_TEST_POSTGRES_URL"):
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="fakescope-pg-"))
    user: str | None = None
    if os.geteuid() == 0:
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data = root / "pgdata"
    port = free_ports(1)[0]

    def run(tool: str, *argv: str) -> None:
        argv = (pg_tool(tool) or tool, *argv)
        done = subprocess.run(
            argv, user=user, cwd=root, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )

    try:
        run("initdb", "-D", str(data), "-U", "fakescope", "--auth=trust", "-E", "UTF8", "--no-sync")
        run(
            "pg_ctl",
            "-D",
            str(data),
            "-l",
            str(root / "pg.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off",
            "start",
        )
        try:
            run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "fakescope", "fakescope")
            yield f"postgresql+psycopg2://fakescope@127.0.0.1:{port}/fakescope"
        finally:
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
