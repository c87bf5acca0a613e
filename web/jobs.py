"""The job runner: worker threads that take pending jobs from the database and analyse them.

Nothing about the queue lives in memory: a job is a row (see :mod:`.jobstore`). Each worker
thread claims the oldest due pending job, analyses it with the client's two steps
(:func:`fakescope.client.analyze.decode_video`, then, once the duration is checked,
:func:`fakescope.client.analyze.verdict_for`; the sampled frames stay at hand for the face
thumbnails), stores the verdict and thumbnails (with the classifier's crop of each face, for
the heatmaps), deletes the video unless the user asked to keep it, and calls the webhook.

Restart safety: a heartbeat thread keeps the lease of running jobs fresh; a job whose lease
expired (its process died) goes back to pending and is resumed by any runner. Housekeeping (the
retention sweep, which waits on the upload store) has a thread of its own: a store that answers
slowly must never hold up the heartbeat, or running jobs would be taken back and analysed twice.
A job claimed more than ``max_attempts`` times fails (``gave_up``) instead of looping forever.

Failures map to stable codes: ``unreadable_video`` (VideoReadError), ``too_long``,
``server_error`` (Triton answered with an error), ``server_unreachable`` and ``server_busy``
(after ``max_attempts`` tries with exponential backoff), ``video_missing``, ``gave_up``,
``internal``. ``server_busy``: Triton refused the analysis as overloaded, either its queue was
full or the video's time limit ran out while it waited. The server refuses rather than answer
late; a job is not late for that, so it is tried again later with a fresh limit, like a job
whose server did not answer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

from sqlalchemy import Engine

from fakescope import contract
from fakescope.client.analyze import decode_video, verdict_for
from fakescope.client.content_credentials import JSON_FIELD, read_with_trust_file
from fakescope.client.frames import VideoReadError
from fakescope.client.triton import (
    ClassifierInput,
    DetectorClient,
    DetectorClientError,
    ServerError,
    ServerUnreachableError,
)
from fakescope.storage import StorageError

from . import db, jobstore
from .faces import face_thumbnails
from .metrics import ServiceMetrics
from .settings import Settings
from .upload_store import DOWNLOAD_GLOB, VideoMissingError, upload_store
from .uploads import PART_SUFFIX
from .webhooks import send_webhook

__all__ = ["JobRunner", "analyse_job_video", "webhook_payload"]

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0
RETENTION_SWEEP_S = 60.0
#: Age of a file in ``tmp_dir`` (upload being received, S3 video being analysed) past which no
#: live process can still be writing or reading it: its process died, and it is deleted.
STALE_PART_S = 3600.0


class _JobFailedError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def analyse_job_video(
    path: str,
    filename: str,
    client: DetectorClient,
    settings: Settings,
) -> tuple[dict[str, Any], list[float], list[Any], float]:
    """Analyse one video; return (verdict JSON, frame timestamps, thumbnails, seconds).

    The verdict JSON is the CLI's ``--json`` object: the classifier's fields and, beside them,
    the ``content_credentials`` object (the video's C2PA manifest, read while the file exists).

    Raises:
        _JobFailedError: the video cannot be read or is too long, or the server answered an error.
        ServerUnreachableError: Triton did not answer (the caller retries later).
        ServerError: Triton refused the analysis as overloaded (the caller retries later).

    """
    try:
        decoded = decode_video(
            path, settings.num_frames, settings.max_side, allocate=client.frames_buffer
        )
    except VideoReadError as exc:
        raise _JobFailedError("unreadable_video", f"{filename}: {exc.detail}") from exc
    sampled = decoded.sampled
    if sampled.duration_seconds > settings.max_duration_s:
        raise _JobFailedError(
            "too_long",
            f"the video lasts {sampled.duration_seconds:.0f} s; the limit is "
            f"{settings.max_duration_s:.0f} s",
        )
    try:
        verdict = verdict_for(filename, decoded, client)
    except ServerError as exc:
        if exc.overloaded:  # the caller tries again later
            raise
        raise _JobFailedError(
            "server_error", f"the analysis server answered with an error: {exc}"
        ) from exc
    # After the verdict, outside processing_seconds: the classifier's crops kept for heatmaps.
    framing = _classifier_framing(client) if verdict.face_boxes else None
    thumbs = face_thumbnails(
        sampled, verdict.face_boxes, limit=settings.max_face_thumbnails, framing=framing
    )
    timestamps = [float(t) for t in sampled.timestamps]
    result = verdict.to_json_dict()
    # While the upload still exists; stored beside the verdict's fields, never blended in.
    result[JSON_FIELD] = read_with_trust_file(path, settings.trust_anchors_path).to_dict()
    return result, timestamps, thumbs, verdict.processing_seconds


def _classifier_framing(client: DetectorClient) -> ClassifierInput | None:
    """Return the served classifier's input size and framing; ``None`` (logged) if unstated.

    Heatmaps are an extra: a classifier that states no framing costs them, never the verdict.
    """
    try:
        return client.classifier_input()
    except DetectorClientError as exc:
        logger.warning("no face crops kept for heatmaps: %s", exc)
        return None


def webhook_payload(job: jobstore.Job, base_url: str) -> dict[str, Any]:
    """Build the JSON a completion webhook carries (a done job's verdict with its credentials)."""
    payload: dict[str, Any] = {
        "job_id": job.id,
        "status": job.status,
        "filename": job.filename,
        "links": {
            "job": f"{base_url}{contract.WEB_API_PREFIX}/jobs/{job.id}",
            "page": f"{base_url}/jobs/{job.id}",
        },
    }
    if job.status == jobstore.DONE:
        payload["verdict"] = job.verdict
    else:
        payload["error"] = {"code": job.error_code, "message": job.error_message}
    return payload


class JobRunner:
    """``settings.workers`` analysis threads, a heartbeat thread and a housekeeping thread."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        metrics: ServiceMetrics | None = None,
        base_url: str = "",
    ):
        """Prepare the runner (no thread starts before :meth:`start`).

        Raises:
            SettingsError: the upload store (``settings.upload_url``) cannot be used.

        """
        self.engine = engine
        self.settings = settings
        self.store = upload_store(settings)
        self.metrics = metrics
        self.base_url = base_url.rstrip("/")
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: set[str] = set()
        self._lock = threading.Lock()

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker, heartbeat and housekeeping threads."""
        self._remove_stale_temp_files()
        targets = [(self._work, f"fakescope-job-{i}") for i in range(self.settings.workers)]
        targets.append((self._heartbeat, "fakescope-heartbeat"))
        targets.append((self._housekeep, "fakescope-housekeeping"))
        for target, name in targets:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        logger.info(
            "job runner %s: %d worker(s) for Triton %s (%s, shared memory %s)",
            self.worker_id,
            self.settings.workers,
            self.settings.triton_url,
            self.settings.triton_protocol,
            self.settings.triton_shared_memory,
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the threads to stop and wait for the job in hand to finish (bounded)."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        still = [t.name for t in self._threads if t.is_alive()]
        if still:
            logger.warning(
                "job threads still running at shutdown: %s (their jobs resume "
                "after the lease expires)",
                still,
            )
        self._threads.clear()

    def notify(self) -> None:
        """Wake idle workers now (a job was just submitted)."""
        self._wake.set()

    # --- threads -------------------------------------------------------------------------------
    def _work(self) -> None:
        client: DetectorClient | None = None
        try:
            while not self._stop.is_set():
                try:
                    job = jobstore.claim_next(self.engine, self.worker_id, self.settings.lease_s)
                except Exception:
                    logger.exception("cannot claim a job; retrying")
                    job = None
                if job is None:
                    self._wake.wait(self.settings.poll_interval_s)
                    self._wake.clear()
                    continue
                if client is None:
                    client = DetectorClient(
                        self.settings.triton_url,
                        self.settings.triton_protocol,
                        timeout_s=self.settings.triton_timeout_s,
                        shared_memory=self.settings.triton_shared_memory_flag,
                    )
                with self._lock:
                    self._running.add(job.id)
                try:
                    self._run(job, client)
                except Exception:  # a database or webhook error must not end this thread
                    logger.exception(
                        "job %s: could not be settled; it is tried again once its lease expires",
                        job.id,
                    )
                finally:
                    with self._lock:
                        self._running.discard(job.id)
        finally:
            if client is not None:
                client.close()

    def _heartbeat(self) -> None:
        # Nothing here waits on anything but the database: the leases must be renewed on time.
        interval = min(self.settings.lease_s / 3, 10.0)
        while not self._stop.wait(interval):
            with self._lock:
                running = list(self._running)
            try:
                jobstore.extend_leases(self.engine, running, self.worker_id, self.settings.lease_s)
                if jobstore.reclaim_expired(self.engine):
                    self._wake.set()
            except Exception:
                logger.exception("heartbeat failed; retrying")

    def _housekeep(self) -> None:
        # The retention sweep deletes from the upload store, which may take minutes to give up
        # (S3 timing out): hence a thread of its own, apart from the heartbeat.
        while True:
            try:
                self.sweep_retention()
                # Not only at start: another process sharing tmp_dir (a worker beside the web
                # service) that died mid-analysis left its copy, and it may never restart.
                self._remove_stale_temp_files()
            except Exception:
                logger.exception("housekeeping failed; retrying")
            if self._stop.wait(RETENTION_SWEEP_S):
                return

    # --- one job -------------------------------------------------------------------------------
    def _run(self, job: jobstore.Job, client: DetectorClient) -> None:
        s = self.settings
        logger.info("job %s: attempt %d, %s", job.id, job.attempts, job.filename)
        if job.attempts > s.max_attempts:
            self._finish_failed(
                job, "gave_up", f"the analysis was interrupted {job.attempts - 1} times"
            )
            return
        if not job.video_path:
            self._finish_failed(job, "video_missing", "the uploaded video is no longer stored")
            return
        try:
            # From S3, a temporary local copy (removed after the analysis).
            with self.store.local_copy(job.video_path) as video:
                verdict, stamps, thumbs, seconds = analyse_job_video(
                    str(video), job.filename, client, s
                )
        except VideoMissingError:
            self._finish_failed(job, "video_missing", "the uploaded video is no longer stored")
            return
        except _JobFailedError as exc:
            self._finish_failed(job, exc.code, exc.message)
            return
        except ServerError as exc:  # only an overload refusal comes this far
            self._retry_later(
                job,
                exc,
                "server_busy",
                gave_up="the analysis server was too busy to answer in time",
                waiting="the analysis server is busy",
            )
            return
        except (ServerUnreachableError, StorageError) as exc:  # Triton or the upload store
            self._retry_later(
                job,
                exc,
                "server_unreachable",
                gave_up="the analysis server did not answer",
                waiting="the analysis server is not answering",
            )
            return
        except Exception as exc:
            logger.exception("job %s: unexpected error", job.id)
            self._finish_failed(
                job,
                "internal",
                f"internal error ({type(exc).__name__}); the operator can "
                "find the details in the service log",
            )
            return
        if not jobstore.complete_job(
            self.engine,
            job.id,
            self.worker_id,
            verdict=verdict,
            timestamps=stamps,
            thumbnails=thumbs,
        ):
            logger.warning("job %s was taken back from this worker; result dropped", job.id)
            return
        self._dispose_video(job)
        if self.metrics is not None:
            self.metrics.analyses.labels("done").inc()
            self.metrics.analysis_seconds.observe(seconds)
        logger.info("job %s: %s in %.2f s", job.id, verdict["label"], seconds)
        self._webhook(job.id)

    def _retry_later(
        self, job: jobstore.Job, exc: Exception, code: str, *, gave_up: str, waiting: str
    ) -> None:
        """Put ``job`` back with exponential backoff; fail it with ``code`` after the last try."""
        s = self.settings
        # The details (addresses) go to the log; the user sees what happened, not where.
        logger.warning("job %s: attempt %d, %s: %s", job.id, job.attempts, code, exc)
        if job.attempts >= s.max_attempts:
            self._finish_failed(
                job, code, f"{gave_up} ({job.attempts} attempts); please try again later"
            )
            return
        wait = min(MAX_BACKOFF_S, s.retry_backoff_s * 2 ** (job.attempts - 1))
        jobstore.requeue_job(
            self.engine,
            job.id,
            self.worker_id,
            not_before=db.now() + wait,
            message=f"{waiting}; retrying in {wait:.0f} s",
        )

    def _finish_failed(self, job: jobstore.Job, code: str, message: str) -> None:
        if jobstore.fail_job(self.engine, job.id, self.worker_id, code=code, message=message):
            self._dispose_video(job)
            logger.warning("job %s failed (%s): %s", job.id, code, message)
            if self.metrics is not None:
                self.metrics.analyses.labels(code).inc()
            self._webhook(job.id)

    def _dispose_video(self, job: jobstore.Job) -> None:
        """Delete the video of a settled job unless kept, then forget its path.

        Only after the outcome is stored: a job whose settling failed (or whose process died
        before it) is analysed again from the video still there. A video whose deletion
        failed stays stored, and said so (``video_stored`` stays true); the retention sweep
        deletes it later.
        """
        if job.keep_video or not job.video_path:
            return
        try:
            self.store.delete(job.video_path)
        except (StorageError, OSError) as exc:
            logger.error("job %s: the video could not be deleted: %s", job.id, exc)
            return
        jobstore.clear_video_path(self.engine, job.id)

    def _webhook(self, job_id: str) -> None:
        job = jobstore.get_job(self.engine, job_id)
        if job is None or not job.webhook_url:
            return
        outcome = send_webhook(
            job.webhook_url,
            webhook_payload(job, self.base_url),
            policy=self.settings.webhook_policy,
            secret=self.settings.webhook_secret,
            timeout_s=self.settings.webhook_timeout_s,
        )
        jobstore.set_webhook_result(self.engine, job_id, outcome)
        if self.metrics is not None:
            self.metrics.webhooks.labels(outcome.split(":")[0].split(" ")[0]).inc()

    # --- housekeeping --------------------------------------------------------------------------
    def sweep_retention(self) -> int:
        """Delete kept videos older than ``video_retention_s``; return how many."""
        cutoff = db.now() - self.settings.video_retention_s
        removed = 0
        for job_id, path in jobstore.kept_videos_older_than(self.engine, cutoff):
            try:
                self.store.delete(path)
            except StorageError as exc:  # tried again at the next sweep
                logger.error("retention: job %s's video could not be deleted: %s", job_id, exc)
                continue
            jobstore.clear_video_path(self.engine, job_id)
            removed += 1
        if removed:
            logger.info("retention: deleted %d kept video(s)", removed)
        return removed

    def _remove_stale_temp_files(self) -> None:
        """Delete uploads (``*.part``) and S3 downloads left behind in ``tmp_dir``.

        Left by a process that died while receiving or analysing them: untouched for
        ``STALE_PART_S``.
        """
        tmp = self.settings.tmp_dir
        if not tmp.is_dir():
            return
        cutoff = time.time() - STALE_PART_S
        for pattern in (f"*{PART_SUFFIX}", DOWNLOAD_GLOB):
            for leftover in tmp.glob(pattern):
                with contextlib.suppress(FileNotFoundError):
                    if leftover.stat().st_mtime < cutoff:
                        leftover.unlink()
