"""The database: schema (SQLAlchemy Core), engine creation, and the schema-version check.

SQLite by default (a file, WAL journal, zero setup); PostgreSQL by URL
(``postgresql+psycopg2://…``). Times are stored as float seconds since the epoch (UTC) so both
engines compare them the same way; ``day`` columns are ``YYYY-MM-DD`` (UTC) strings.

Tables:

* ``api_keys`` — one row per key: organisation, quota, rate limit, salted SHA-256 of the
  secret (the key itself is never stored), created/revoked times.
* ``jobs`` — one row per accepted upload: state machine ``pending → running → done|failed``,
  the verdict JSON, the lease of the worker that runs it (so a dead worker's job is resumed).
* ``faces`` — small JPEG thumbnails of the faces of a finished job, with their scores.
* ``face_crops`` — per thumbnail, the classifier's input for that face (lossless PNG at the
  served input size, as ``face_detector`` framed it), scored again on request for heatmaps.
  A table of its own, so that databases made before it gain it by ``create_all``.
* ``uses`` — one row per accepted upload: who (``key:<id>`` or ``visitor:<id>``) and when;
  the source of quotas, rate limits, usage per key and the business metrics.
* ``page_views`` — one row per service-page view; ``seconds`` is the visible time the page's
  beacon reported (the largest report wins).
* ``schema_info`` — the schema version; a database of another version is refused.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import make_url

__all__ = [
    "ORGANISATION_CHARS",
    "OWNER_CHARS",
    "SCHEMA_VERSION",
    "DatabaseError",
    "api_keys",
    "connection",
    "face_crops",
    "faces",
    "jobs",
    "metadata",
    "now",
    "open_database",
    "page_views",
    "uses",
    "utc_day",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
#: Lengths of the columns that other modules' limits derive from (PostgreSQL enforces them).
ORGANISATION_CHARS: Final = 200
OWNER_CHARS: Final = 80

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("organisation", String(ORGANISATION_CHARS), nullable=False, index=True),
    Column("salt", String(64), nullable=False),
    Column("secret_hash", String(128), nullable=False),
    Column("monthly_quota", Integer, nullable=False),
    Column("rate_per_minute", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("note", String(500), nullable=True),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(OWNER_CHARS), nullable=False),  # "org:<name>" or "visitor:<id>"
    Column("key_id", String(16), ForeignKey("api_keys.id"), nullable=True),
    Column("status", String(16), nullable=False),  # pending | running | done | failed
    Column("filename", String(255), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("video_path", Text, nullable=True),  # None once deleted
    Column("keep_video", Boolean, nullable=False),
    Column("webhook_url", Text, nullable=True),
    Column("webhook_result", String(300), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("not_before", Float, nullable=False),
    Column("lease_until", Float, nullable=True),
    Column("worker", String(80), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("error_code", String(40), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("label", String(16), nullable=True),
    Column("fake_probability", Float, nullable=True),
    Column("result_json", Text, nullable=True),  # Verdict.to_json_dict(), video = filename
    Column("timestamps_json", Text, nullable=True),  # seconds of each sampled frame
    Index("ix_jobs_status_not_before", "status", "not_before"),
    Index("ix_jobs_owner_created", "owner", "created_at"),
)

faces = Table(
    "faces",
    metadata,
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("frame_index", Integer, nullable=False),
    Column("timestamp", Float, nullable=False),
    Column("fake_score", Float, nullable=True),
    Column("detection_score", Float, nullable=True),
    Column("box_json", Text, nullable=False),
    Column("jpeg", LargeBinary, nullable=False),
)

face_crops = Table(
    "face_crops",
    metadata,
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("model_version", String(16), nullable=False),  # the classifier it was framed for
    Column("png", LargeBinary, nullable=False),
)

uses = Table(
    "uses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("day", String(10), nullable=False, index=True),
    Column("subject", String(80), nullable=False),  # "key:<id>" or "visitor:<id>"
    Column("key_id", String(16), nullable=True),
    Column("job_id", String(32), nullable=False),
    Index("ix_uses_subject_at", "subject", "at"),
)

page_views = Table(
    "page_views",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("visitor", String(64), nullable=False),
    Column("page", String(40), nullable=False),
    Column("day", String(10), nullable=False, index=True),
    Column("started_at", Float, nullable=False),
    Column("seconds", Float, nullable=True),
)

schema_info = Table(
    "schema_info",
    metadata,
    Column("version", Integer, primary_key=True),
)


class DatabaseError(RuntimeError):
    """The database cannot be used (wrong schema version, unsupported URL)."""


def now() -> float:
    """Seconds since the epoch (UTC), the unit of every time column."""
    return time.time()


def utc_day(at: float) -> str:
    """``YYYY-MM-DD`` of ``at`` (epoch seconds) in UTC."""
    return time.strftime("%Y-%m-%d", time.gmtime(at))


@contextlib.contextmanager
def connection(bind: Engine | Connection) -> Iterator[Connection]:
    """Yield a connection to read with: ``bind`` itself, or a new one of the engine ``bind``.

    Given a connection, the reads happen inside its transaction; a new connection is closed
    afterwards.
    """
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.connect() as conn:
        yield conn


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def open_database(url: str) -> Engine:
    """Create the engine for ``url``, create missing tables and check the schema version.

    SQLite files get their parent folder created, WAL journaling and a 10 s busy timeout
    (workers and requests write from several threads).

    Raises:
        DatabaseError: the URL's backend is neither SQLite nor PostgreSQL, or the database
            holds another schema version.

    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif backend == "postgresql":
        engine = create_engine(url, pool_pre_ping=True)
    else:
        raise DatabaseError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        versions = [row[0] for row in conn.execute(select(schema_info.c.version))]
        if not versions:
            conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))
        elif versions != [SCHEMA_VERSION]:
            engine.dispose()
            raise DatabaseError(
                f"{parsed.render_as_string(hide_password=True)} has schema version {versions}, "
                f"this FakeScope needs {SCHEMA_VERSION}"
            )
    logger.info("database ready: %s", parsed.render_as_string(hide_password=True))
    return engine
