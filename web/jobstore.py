"""Jobs in the database: create, read, list, and the worker's state transitions.

State machine: ``pending → running → done | failed``, and ``running → pending`` when Triton
was unreachable or refused the analysis as overloaded (retried after ``not_before``) or when
the worker's lease expired (it died).
A worker *claims* a job with a conditional ``UPDATE … WHERE status = 'pending'``; only one
claimant sees a row count of 1, on SQLite and PostgreSQL alike. Every later transition is
conditional on ``worker = <me> AND status = 'running'``: a worker whose job was taken back
cannot overwrite the new owner's result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, Engine, and_, delete, func, select, text, update

from . import db

if TYPE_CHECKING:
    from .faces import FaceThumbnail

__all__ = [
    "JOB_STATUSES",
    "FaceCrop",
    "Job",
    "claim_next",
    "complete_job",
    "count_by_status",
    "create_job",
    "extend_leases",
    "fail_job",
    "get_face_crop",
    "get_face_jpeg",
    "get_job",
    "list_faces",
    "list_jobs",
    "reclaim_expired",
    "requeue_job",
    "set_webhook_result",
]

logger = logging.getLogger(__name__)

PENDING: Final = "pending"
RUNNING: Final = "running"
DONE: Final = "done"
FAILED: Final = "failed"
JOB_STATUSES: Final = (PENDING, RUNNING, DONE, FAILED)
#: PostgreSQL advisory lock (any number of this application's own) that job creations take in
#: turn, so that each counts the uses the others recorded (see :func:`create_job`).
_ADMISSION_LOCK: Final = 0x46534A42  # "FSJB"


@dataclass(frozen=True)
class Job:
    """One row of ``jobs``."""

    id: str
    owner: str
    key_id: str | None
    status: str
    filename: str
    size_bytes: int
    video_path: str | None
    keep_video: bool
    webhook_url: str | None
    webhook_result: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    not_before: float
    lease_until: float | None
    worker: str | None
    attempts: int
    error_code: str | None
    error_message: str | None
    label: str | None
    fake_probability: float | None
    result_json: str | None
    timestamps_json: str | None

    @property
    def verdict(self) -> dict[str, Any] | None:
        """The verdict (``Verdict.to_json_dict()`` form) once the job is done."""
        return json.loads(self.result_json) if self.result_json else None

    @property
    def frame_timestamps(self) -> list[float]:
        """Seconds of each sampled frame (empty before the job is done)."""
        return json.loads(self.timestamps_json) if self.timestamps_json else []


def _job(row: Any) -> Job:
    return Job(**dict(row._mapping))


def create_job(
    engine: Engine,
    *,
    job_id: str,
    owner: str,
    subject: str,
    key_id: str | None,
    filename: str,
    size_bytes: int,
    video_path: str,
    keep_video: bool,
    webhook_url: str | None,
    admit: Callable[[Connection], None] | None = None,
) -> Job:
    """Insert a pending job and its ``uses`` row in one transaction.

    ``admit(conn)``, when given, runs inside that transaction before the use is recorded, with
    the creations of other jobs held off until the commit: uses it counts are all there (none
    recorded meanwhile by a concurrent upload), so an exception it raises (quota used up, key
    revoked) refuses the job, and nothing of it is written.
    """
    at = db.now()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Concurrent creations take turns: otherwise each one would count uses without the
            # others' (not yet committed), and all of them would pass the last unit of a quota.
            conn.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _ADMISSION_LOCK})
        # On SQLite this first write takes the database's write lock until the commit: the
        # same turn-taking (and the job row is invisible to workers until then).
        conn.execute(
            db.jobs.insert().values(
                id=job_id,
                owner=owner,
                key_id=key_id,
                status=PENDING,
                filename=filename,
                size_bytes=size_bytes,
                video_path=video_path,
                keep_video=keep_video,
                webhook_url=webhook_url,
                webhook_result=None,
                created_at=at,
                updated_at=at,
                started_at=None,
                finished_at=None,
                not_before=at,
                lease_until=None,
                worker=None,
                attempts=0,
                error_code=None,
                error_message=None,
                label=None,
                fake_probability=None,
                result_json=None,
                timestamps_json=None,
            )
        )
        if admit is not None:
            admit(conn)
        conn.execute(
            db.uses.insert().values(
                at=at,
                day=db.utc_day(at),
                subject=subject,
                key_id=key_id,
                job_id=job_id,
            )
        )
        row = conn.execute(select(db.jobs).where(db.jobs.c.id == job_id)).one()
    return _job(row)


def get_job(engine: Engine, job_id: str) -> Job | None:
    """Return the job with this id, or ``None``."""
    with engine.connect() as conn:
        row = conn.execute(select(db.jobs).where(db.jobs.c.id == job_id)).first()
    return None if row is None else _job(row)


def list_jobs(
    engine: Engine,
    owner: str,
    *,
    limit: int = 50,
    before: float | None = None,
) -> list[Job]:
    """List the owner's jobs, newest first; ``before`` pages by ``created_at``."""
    query = select(db.jobs).where(db.jobs.c.owner == owner)
    if before is not None:
        query = query.where(db.jobs.c.created_at < before)
    query = query.order_by(db.jobs.c.created_at.desc()).limit(limit)
    with engine.connect() as conn:
        return [_job(r) for r in conn.execute(query)]


def reclaim_expired(engine: Engine) -> int:
    """Put running jobs whose lease expired back to pending; return how many."""
    at = db.now()
    with engine.begin() as conn:
        result = conn.execute(
            update(db.jobs)
            .where(db.jobs.c.status == RUNNING, db.jobs.c.lease_until < at)
            .values(
                status=PENDING,
                worker=None,
                lease_until=None,
                updated_at=at,
                error_message="the worker running this job stopped; resumed",
            )
        )
    if result.rowcount:
        logger.warning("resumed %d job(s) whose worker stopped", result.rowcount)
    return int(result.rowcount)


def claim_next(engine: Engine, worker: str, lease_s: float) -> Job | None:
    """Claim the oldest due pending job for ``worker``; ``None`` when there is none."""
    at = db.now()
    with engine.connect() as conn:
        candidates = [
            r[0]
            for r in conn.execute(
                select(db.jobs.c.id)
                .where(db.jobs.c.status == PENDING, db.jobs.c.not_before <= at)
                .order_by(db.jobs.c.created_at)
                .limit(8)
            )
        ]
    for job_id in candidates:
        with engine.begin() as conn:
            result = conn.execute(
                update(db.jobs)
                .where(db.jobs.c.id == job_id, db.jobs.c.status == PENDING)
                .values(
                    status=RUNNING,
                    worker=worker,
                    lease_until=at + lease_s,
                    started_at=at,
                    updated_at=at,
                    attempts=db.jobs.c.attempts + 1,
                )
            )
            if result.rowcount == 1:
                row = conn.execute(select(db.jobs).where(db.jobs.c.id == job_id)).one()
                return _job(row)
    return None


def _mine(job_id: str, worker: str) -> Any:
    return and_(db.jobs.c.id == job_id, db.jobs.c.worker == worker, db.jobs.c.status == RUNNING)


def extend_leases(engine: Engine, job_ids: Sequence[str], worker: str, lease_s: float) -> None:
    """Heartbeat: push the lease of ``worker``'s running jobs ``lease_s`` into the future."""
    if not job_ids:
        return
    at = db.now()
    with engine.begin() as conn:
        conn.execute(
            update(db.jobs)
            .where(
                db.jobs.c.id.in_(list(job_ids)),
                db.jobs.c.worker == worker,
                db.jobs.c.status == RUNNING,
            )
            .values(lease_until=at + lease_s)
        )


def complete_job(
    engine: Engine,
    job_id: str,
    worker: str,
    *,
    verdict: dict[str, Any],
    timestamps: list[float],
    thumbnails: Sequence[FaceThumbnail],
) -> bool:
    """Store the verdict and thumbnails; ``False`` if the job is no longer this worker's."""
    at = db.now()
    with engine.begin() as conn:
        result = conn.execute(
            update(db.jobs)
            .where(_mine(job_id, worker))
            .values(
                status=DONE,
                finished_at=at,
                updated_at=at,
                lease_until=None,
                error_code=None,
                error_message=None,
                label=verdict["label"],
                fake_probability=verdict["fake_probability"],
                result_json=json.dumps(verdict, allow_nan=False),
                timestamps_json=json.dumps([round(t, 4) for t in timestamps]),
            )
        )
        if result.rowcount != 1:
            return False
        conn.execute(delete(db.faces).where(db.faces.c.job_id == job_id))
        conn.execute(delete(db.face_crops).where(db.face_crops.c.job_id == job_id))
        if thumbnails:
            conn.execute(
                db.faces.insert(),
                [
                    {
                        "job_id": job_id,
                        "position": t.position,
                        "frame_index": t.frame_index,
                        "timestamp": t.timestamp,
                        "fake_score": t.fake_score,
                        "detection_score": t.detection_score,
                        "box_json": json.dumps([round(v, 2) for v in t.box]),
                        "jpeg": t.jpeg,
                    }
                    for t in thumbnails
                ],
            )
        crops = [t for t in thumbnails if t.classifier_crop is not None]
        if crops:
            conn.execute(
                db.face_crops.insert(),
                [
                    {
                        "job_id": job_id,
                        "position": t.position,
                        "model_version": t.model_version or "",
                        "png": t.classifier_crop,
                    }
                    for t in crops
                ],
            )
    return True


def fail_job(
    engine: Engine,
    job_id: str,
    worker: str | None,
    *,
    code: str,
    message: str,
) -> bool:
    """Mark the job failed with a stable ``code`` and a human ``message``."""
    at = db.now()
    where = _mine(job_id, worker) if worker is not None else db.jobs.c.id == job_id
    with engine.begin() as conn:
        result = conn.execute(
            update(db.jobs)
            .where(where)
            .values(
                status=FAILED,
                finished_at=at,
                updated_at=at,
                lease_until=None,
                error_code=code,
                error_message=message,
            )
        )
    return result.rowcount == 1


def requeue_job(
    engine: Engine, job_id: str, worker: str, *, not_before: float, message: str
) -> bool:
    """Give the job back (pending) to be retried at ``not_before``."""
    with engine.begin() as conn:
        result = conn.execute(
            update(db.jobs)
            .where(_mine(job_id, worker))
            .values(
                status=PENDING,
                worker=None,
                lease_until=None,
                not_before=not_before,
                updated_at=db.now(),
                error_message=message,
            )
        )
    return result.rowcount == 1


def set_webhook_result(engine: Engine, job_id: str, outcome: str) -> None:
    """Record how the completion webhook went."""
    with engine.begin() as conn:
        conn.execute(
            update(db.jobs).where(db.jobs.c.id == job_id).values(webhook_result=outcome[:300])
        )


def clear_video_path(engine: Engine, job_id: str) -> None:
    """Forget the video's path (after the file was deleted)."""
    with engine.begin() as conn:
        conn.execute(update(db.jobs).where(db.jobs.c.id == job_id).values(video_path=None))


def kept_videos_older_than(engine: Engine, before: float) -> list[tuple[str, str]]:
    """``(job_id, video_path)`` of finished jobs whose kept video is past retention."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(db.jobs.c.id, db.jobs.c.video_path).where(
                db.jobs.c.video_path.is_not(None),
                db.jobs.c.created_at < before,
                db.jobs.c.status.in_((DONE, FAILED)),
            )
        ).all()
    return [(r[0], r[1]) for r in rows]


def list_faces(engine: Engine, job_id: str) -> list[dict[str, Any]]:
    """Face metadata of a job (no JPEG bytes), by position."""
    cols = [
        db.faces.c.position,
        db.faces.c.frame_index,
        db.faces.c.timestamp,
        db.faces.c.fake_score,
        db.faces.c.detection_score,
        db.faces.c.box_json,
    ]
    with engine.connect() as conn:
        rows = conn.execute(
            select(*cols).where(db.faces.c.job_id == job_id).order_by(db.faces.c.position)
        ).all()
    return [
        {
            "position": r.position,
            "frame_index": r.frame_index,
            "timestamp": r.timestamp,
            "fake_score": r.fake_score,
            "detection_score": r.detection_score,
            "box": json.loads(r.box_json),
        }
        for r in rows
    ]


def get_face_jpeg(engine: Engine, job_id: str, position: int) -> bytes | None:
    """Return the JPEG of one face thumbnail, or ``None``."""
    with engine.connect() as conn:
        row = conn.execute(
            select(db.faces.c.jpeg).where(
                db.faces.c.job_id == job_id, db.faces.c.position == position
            )
        ).first()
    return None if row is None else bytes(row[0])


@dataclass(frozen=True)
class FaceCrop:
    """The classifier's input for one face (PNG) and the classifier version it was framed for."""

    png: bytes
    model_version: str


def get_face_crop(engine: Engine, job_id: str, position: int) -> FaceCrop | None:
    """Return the classifier's input for one face, or ``None`` (no such face, or none kept)."""
    c = db.face_crops.c
    with engine.connect() as conn:
        row = conn.execute(
            select(c.png, c.model_version).where(c.job_id == job_id, c.position == position)
        ).first()
    return None if row is None else FaceCrop(bytes(row.png), str(row.model_version))


def count_by_status(engine: Engine) -> dict[str, int]:
    """Jobs per status (every status present, 0 when none)."""
    with engine.connect() as conn:
        rows = conn.execute(select(db.jobs.c.status, func.count()).group_by(db.jobs.c.status))
        counts = {status: int(n) for status, n in rows}
    return {s: counts.get(s, 0) for s in JOB_STATUSES}
