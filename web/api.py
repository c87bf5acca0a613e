"""The REST API (``/api/v1``): submit a video, poll the job, read the verdict, list jobs.

Errors are JSON ``{"error": {"code": "...", "message": "..."}}`` with these statuses:
400 malformed form, 401 unknown/malformed key (or no key while anonymous uploads are off),
403 revoked key or cross-site request, 404 unknown job (or another owner's), 409 verdict asked
before the job finished, 413 video too large or too long, 415 not multipart or not a video, 422
bad field (e.g. a webhook URL that is not allowed), 429 quota or rate limit (with
``Retry-After``), 502 Triton answered a heatmap request with an error, 503 the upload could not
be stored (``storage_unavailable``: disk full, upload store down; send it again), or Triton
unreachable or busy for a heatmap (with ``Retry-After``). A request without a key is an
anonymous visitor's (see :mod:`.principals`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from fakescope import contract
from fakescope.client.triton import DetectorClient, ServerError, ServerUnreachableError
from fakescope.storage import StorageError

from . import db, jobstore, keys
from .heatmaps import HeatmapBusyError, StaleCropError
from .metrics import business_metrics
from .principals import (
    ApiError,
    Principal,
    admit_upload,
    is_admin,
    resolve_principal,
    set_visitor_cookie,
)
from .settings import MAX_FACE_THUMBNAILS
from .state import Service, iso, service
from .uploads import (
    STORAGE_UNAVAILABLE,
    STORAGE_UNAVAILABLE_MESSAGE,
    UploadError,
    probe_video,
    receive_upload,
)
from .webhooks import WebhookURLError, check_webhook_url

__all__ = ["job_path", "job_view", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix=contract.WEB_API_PREFIX, tags=["api"])

MAX_BEACON_BYTES: Final = 1024
#: A face's position in a URL: thumbnails are numbered from 0, never beyond the settings'
#: ceiling (a larger number would reach the database only to overflow its integer).
_FacePosition = Annotated[
    int,
    PathParam(ge=0, lt=MAX_FACE_THUMBNAILS, description="the face's rank, 0 = highest fake score"),
]


def job_path(job_id: str) -> str:
    """Return the path of a job's resource (``/api/v1/jobs/<id>``)."""
    return f"{contract.WEB_API_PREFIX}/jobs/{job_id}"


_VIDEO_SUFFIXES: Final = frozenset(
    {
        ".mp4",
        ".mov",
        ".m4v",
        ".3gp",
        ".mkv",
        ".webm",
        ".avi",
        ".flv",
        ".ts",
        ".mts",
        ".mpg",
        ".mpeg",
        ".ogv",
        ".wmv",
        ".asf",
        ".h264",
        ".264",
        ".hevc",
    }
)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"", "0", "false", "no", "off"})

_ERROR_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
_UPLOAD_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "the video (MP4/MOV, WebM/MKV, AVI, …)",
                        },
                        "keep_video": {
                            "type": "boolean",
                            "default": False,
                            "description": "keep the video after analysis (deleted after "
                            "the retention period)",
                        },
                        "webhook_url": {
                            "type": "string",
                            "format": "uri",
                            "description": "POSTed the result when the job finishes",
                        },
                    },
                }
            }
        },
    },
}


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        s: {"description": "error", "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        for s in statuses
    }


def job_view(job: jobstore.Job, faces: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return the API's JSON form of a job (the verdict has the client's ``--json`` fields)."""
    base = job_path(job.id)
    return {
        "id": job.id,
        "status": job.status,
        "filename": job.filename,
        "size_bytes": job.size_bytes,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "attempts": job.attempts,
        "keep_video": job.keep_video,
        "video_stored": job.video_path is not None,
        "message": job.error_message if job.status in ("pending", "running") else None,
        "error": (
            {"code": job.error_code, "message": job.error_message}
            if job.status == jobstore.FAILED
            else None
        ),
        "webhook": (
            {"url": job.webhook_url, "result": job.webhook_result} if job.webhook_url else None
        ),
        "verdict": job.verdict,
        "frame_timestamps": job.frame_timestamps or None,
        "faces": [
            dict(
                f,
                url=f"{base}/faces/{f['position']}.jpg",
                heatmap_url=f"{base}/faces/{f['position']}/heatmap",
            )
            for f in (faces or [])
        ],
        "links": {"self": base, "verdict": f"{base}/verdict", "page": f"/jobs/{job.id}"},
    }


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ApiError(422, "bad_field", f"{name} must be true or false, got {value!r}")


def _owned_job(svc: Service, principal: Principal, job_id: str) -> jobstore.Job:
    job = jobstore.get_job(svc.engine, job_id)
    if job is None or job.owner != principal.owner:
        raise ApiError(404, "no_such_job", f"no job {job_id!r} for this caller")
    return job


def _json(
    content: Any,
    status: int = 200,
    principal: Principal | None = None,
    headers: dict[str, str] | None = None,
    svc: Service | None = None,
) -> JSONResponse:
    response = JSONResponse(content, status_code=status, headers=headers)
    if principal is not None and principal.new_visitor and svc is not None:
        set_visitor_cookie(response, principal.visitor or "", svc.settings)
    return response


@router.post(
    "/jobs",
    status_code=202,
    summary="Upload a video for analysis",
    openapi_extra=_UPLOAD_BODY,
    responses=_error_responses(400, 401, 403, 413, 415, 422, 429, 503),
)
async def submit_job(request: Request) -> JSONResponse:
    """Stream the video to disk (size limit enforced while streaming), check it, queue a job.

    Answers 202 with the job (``status: pending``) and ``Location`` of the job resource.
    Without a key the caller is an anonymous visitor (the ``fakescope_visitor`` cookie, set on
    the first answer) within the anonymous daily quota; a presented key is always checked (401
    unknown or malformed, 403 revoked). With anonymous uploads off
    (``FAKESCOPE_WEB_ALLOW_ANONYMOUS=false``) a request without a key gets 401. Revocation,
    quota and rate limit are checked before the body is read and again when the job is
    recorded (403/429 then too, and the upload is deleted).
    """
    svc = service(request)
    s = svc.settings
    principal = await run_in_threadpool(resolve_principal, request, svc.engine, s)
    # Before the body is read (a refused caller does not send it for nothing), and again where
    # the job is recorded: the key may be revoked, or other uploads counted, while it streams.
    await run_in_threadpool(admit_upload, svc.engine, s, principal)
    try:
        upload = await receive_upload(
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            request.stream(),
            tmp_dir=s.tmp_dir,
            max_bytes=s.max_upload_bytes,
        )
    except UploadError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    stored: str | None = None
    try:
        keep = _parse_bool("keep_video", upload.fields.get("keep_video", ""))
        webhook = upload.fields.get("webhook_url", "").strip() or None
        if webhook is not None:
            try:
                await run_in_threadpool(check_webhook_url, webhook, s.webhook_policy)
            except WebhookURLError as exc:
                raise ApiError(422, "bad_webhook", str(exc)) from None
        try:
            await run_in_threadpool(probe_video, upload.path, upload.filename, s.max_duration_s)
        except UploadError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        job_id = secrets.token_hex(16)
        suffix = Path(upload.filename).suffix.lower()
        name = f"{job_id}{suffix if suffix in _VIDEO_SUFFIXES else ''}"
        try:  # into the upload store: a folder here, or S3 shared with other machines
            stored = await run_in_threadpool(svc.store.put, upload.path, name)
        except StorageError as exc:
            logger.error("upload %s not stored: %s", name, exc)
            raise ApiError(503, STORAGE_UNAVAILABLE, STORAGE_UNAVAILABLE_MESSAGE) from None
        job = await run_in_threadpool(
            lambda: jobstore.create_job(
                svc.engine,
                job_id=job_id,
                owner=principal.owner,
                subject=principal.subject,
                key_id=principal.key.id if principal.key else None,
                filename=upload.filename,
                size_bytes=upload.size,
                video_path=stored,
                keep_video=keep,
                webhook_url=webhook,
                admit=lambda conn: admit_upload(conn, s, principal),
            )
        )
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            upload.path.unlink()
        if stored is not None:
            with contextlib.suppress(StorageError):
                svc.store.delete(stored)
        raise
    if svc.runner is not None:
        svc.runner.notify()
    logger.info(
        "job %s queued for %s (%s, %d bytes)",
        job.id,
        principal.subject,
        job.filename,
        job.size_bytes,
    )
    return _json(
        job_view(job), 202, principal, {"Location": f"{contract.WEB_API_PREFIX}/jobs/{job.id}"}, svc
    )


@router.get("/jobs", summary="List your past jobs", responses=_error_responses(401, 403))
def list_jobs(
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    before: float | None = Query(None, description="created_at (epoch s) to page from"),
) -> JSONResponse:
    """List the caller's jobs, newest first; ``next_before`` pages further back."""
    svc = service(request)
    principal = resolve_principal(request, svc.engine, svc.settings)
    found = jobstore.list_jobs(svc.engine, principal.owner, limit=limit, before=before)
    return _json(
        {
            "jobs": [job_view(j) for j in found],
            "next_before": found[-1].created_at if len(found) == limit else None,
        },
        principal=principal,
        svc=svc,
    )


@router.get("/jobs/{job_id}", summary="Poll a job", responses=_error_responses(401, 403, 404))
def get_job(request: Request, job_id: str) -> JSONResponse:
    """Return the job: status, and once done its verdict and faces."""
    svc = service(request)
    principal = resolve_principal(request, svc.engine, svc.settings)
    job = _owned_job(svc, principal, job_id)
    faces = jobstore.list_faces(svc.engine, job.id) if job.status == jobstore.DONE else []
    return _json(job_view(job, faces))


@router.get(
    "/jobs/{job_id}/verdict",
    summary="The verdict (the client's --json fields)",
    responses=_error_responses(401, 403, 404, 409),
)
def get_verdict(request: Request, job_id: str) -> JSONResponse:
    """Return the verdict once the job is done; 409 (with its status) before, or if it failed.

    The fields are the CLI's ``--json`` ones: the classifier's, and beside them the
    ``content_credentials`` object (the video's C2PA manifest: status, signer, declared digital
    source type, actions), which never changes the fake probability.
    """
    svc = service(request)
    principal = resolve_principal(request, svc.engine, svc.settings)
    job = _owned_job(svc, principal, job_id)
    if job.status != jobstore.DONE:
        message = (
            f"job failed ({job.error_code}): {job.error_message}"
            if job.status == jobstore.FAILED
            else f"job is {job.status}"
        )
        raise ApiError(409, f"job_{job.status}", message)
    return _json(job.verdict)


@router.get(
    "/jobs/{job_id}/faces/{position}.jpg",
    summary="A face thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def get_face(request: Request, job_id: str, position: _FacePosition) -> Response:
    """Return the JPEG of the job's face ``position`` (highest fake score first)."""
    svc = service(request)
    principal = resolve_principal(request, svc.engine, svc.settings)
    job = _owned_job(svc, principal, job_id)
    jpeg = jobstore.get_face_jpeg(svc.engine, job.id, position)
    if jpeg is None:
        raise ApiError(404, "no_such_face", f"job {job_id} has no face {position}")
    return Response(
        jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"}
    )


_HEATMAP_JSON: Final = {
    "type": "object",
    "properties": {
        "job_id": {"type": "string"},
        "position": {"type": "integer"},
        "verdict_score": {"type": "number", "description": "the face's score in the verdict"},
        "base_score": {"type": "number", "description": "its score now, nothing hidden"},
        "drops": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "number"}},
            "description": "grid rows (top first) of base_score minus the score with that "
            "cell's patch hidden: > 0 hiding it lowered the fake score",
        },
        "grid": {"type": "integer"},
        "patch_pixels": {"type": "integer"},
        "input_size": {"type": "integer"},
        "resized_from": {"type": ["integer", "null"]},
        "masking": {"type": "string"},
        "model_version": {"type": "string", "description": "the classifier that scored now"},
        "crop_model_version": {"type": "string", "description": "the one the crop was cut for"},
        "seconds": {"type": "number", "description": "time the map took to compute"},
        "png_url": {"type": "string"},
    },
}


def _wants_json(output: str | None, accept: str) -> bool:
    if output is not None:
        return output == "json"
    accept = accept.lower()
    return "application/json" in accept and "image/" not in accept


@router.get(
    "/jobs/{job_id}/faces/{position}/heatmap",
    summary="Where the classifier looked: an occlusion heatmap of one face",
    response_class=Response,
    responses={
        200: {
            "description": "PNG by default: the face as the classifier saw it, red where "
            "hiding a region lowered the fake score, blue where it raised it. JSON with "
            "`?format=json`, or with `Accept: application/json` (and no image type).",
            "content": {"image/png": {}, "application/json": {"schema": _HEATMAP_JSON}},
        },
        **_error_responses(401, 403, 404, 422, 502, 503),
    },
)
def get_face_heatmap(
    request: Request,
    job_id: str,
    position: _FacePosition,
    output: Literal["png", "json"] | None = Query(
        None, alias="format", description="png or json; default: by the Accept header, else png"
    ),
) -> Response:
    """Compute (on request, never during the analysis) the occlusion map of face ``position``.

    The served classifier scores the face's crop — the very input the verdict scored, kept
    with the face — once as it is and once per cell of an 8×8 grid with a patch around the
    cell blurred away, through Triton in batches. 404 for an unknown job or face, or a face
    analysed before crops were kept (or whose crop no longer reads); 409 for a face framed for
    another classifier version than the one served now; 503 when Triton is unreachable or
    busy; 502 when it answers with an error.
    """
    svc = service(request)
    s = svc.settings
    principal = resolve_principal(request, svc.engine, s)
    job = _owned_job(svc, principal, job_id)
    faces = {f["position"]: f for f in jobstore.list_faces(svc.engine, job.id)}
    if position not in faces:
        raise ApiError(404, "no_such_face", f"job {job_id} has no face {position}")
    crop = jobstore.get_face_crop(svc.engine, job.id, position)
    if crop is None:
        raise ApiError(
            404,
            "no_heatmap",
            f"face {position} was analysed without keeping the classifier's crop (before "
            "heatmaps existed, or the classifier stated no framing); check the video again",
        )
    retry = {"Retry-After": "30"}
    try:
        with DetectorClient(s.triton_url, s.triton_protocol, timeout_s=s.triton_timeout_s) as c:
            heatmap = svc.heatmaps.heatmap(c, job.id, position, crop)
    except ServerUnreachableError as exc:
        logger.warning("heatmap of job %s face %d: Triton unreachable: %s", job.id, position, exc)
        raise ApiError(
            503,
            "classifier_unreachable",
            "the analysis server is not answering, so the heatmap cannot be computed now; "
            "please try again later",
            retry,
        ) from None
    except HeatmapBusyError as exc:
        raise ApiError(503, "heatmaps_busy", f"{exc}; please try again", retry) from None
    except StaleCropError as exc:
        raise ApiError(409, "stale_crop", f"{exc}: check the video again") from None
    except ValueError as exc:  # the stored crop does not decode
        raise ApiError(404, "no_heatmap", f"{exc}; check the video again") from None
    except ServerError as exc:
        if exc.overloaded:
            raise ApiError(
                503, "classifier_busy", "the analysis server is overloaded; try again", retry
            ) from None
        raise ApiError(
            502, "classifier_error", f"the analysis server answered with an error: {exc}"
        ) from None
    if _wants_json(output, request.headers.get("accept", "")):
        made = heatmap.occlusion
        return _json(
            {
                "job_id": job.id,
                "position": position,
                "verdict_score": faces[position]["fake_score"],
                **made.to_json_dict(),
                "crop_model_version": crop.model_version,
                "png_url": f"{job_path(job.id)}/faces/{position}/heatmap?format=png",
            },
            headers={"Vary": "Accept"},
        )
    return Response(
        heatmap.png,
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=3600", "Vary": "Accept"},
    )


@router.get(
    "/usage", summary="Usage and limits of your API key", responses=_error_responses(401, 403)
)
def get_usage(request: Request) -> JSONResponse:
    """Report this month's and total uses of the calling key, its quota and rate limit."""
    svc = service(request)
    principal = resolve_principal(request, svc.engine, svc.settings)
    if principal.key is None:
        raise ApiError(401, "key_required", "usage is reported per API key")
    return _json(keys.usage(svc.engine, principal.key))


@router.post("/beacon", status_code=204, summary="Time-on-page beacon (sent by the web page)")
async def beacon(request: Request) -> Response:
    """Record the visible seconds of a page view: ``{"view_id": "...", "seconds": 12.5}``."""
    from .pages import record_beacon  # one definition of the page-view bookkeeping

    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BEACON_BYTES:
            raise ApiError(413, "too_large", "beacon body too large")
    try:
        data = json.loads(body or b"{}")
        view_id, seconds = str(data["view_id"]), float(data["seconds"])
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "bad_beacon", 'expected {"view_id": str, "seconds": number}') from None
    await run_in_threadpool(record_beacon, request, view_id, seconds)
    return Response(status_code=204)


@router.get("/admin/metrics", summary="Business metrics (admin)", responses=_error_responses(403))
def admin_metrics(request: Request, days: int = Query(30, ge=1, le=366)) -> JSONResponse:
    """Report uses per day, 1st→2nd use conversion, average time on page, usage per key, jobs."""
    svc = service(request)
    if not is_admin(request, svc.settings):
        raise ApiError(403, "admin_only", "admin token required")
    return _json(business_metrics(svc.engine, days=days).to_json_dict())


@router.get(
    contract.WEB_HEALTH_PATH.removeprefix(router.prefix),
    summary="Liveness of the database and of Triton",
)
def health(request: Request) -> JSONResponse:
    """200 when the database answers (Triton's state is reported, not required); else 503."""
    from sqlalchemy import text

    svc = service(request)
    s = svc.settings
    try:
        with svc.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:  # reported, not raised: this is the health endpoint
        database = f"error: {type(exc).__name__}"
    with DetectorClient(s.triton_url, s.triton_protocol, timeout_s=2.0) as client:
        triton = "live" if client.is_live() else "unreachable"
    body = {
        "database": database,
        "triton": triton,
        "time": iso(db.now()),
        "jobs": jobstore.count_by_status(svc.engine) if database == "ok" else None,
    }
    return _json(body, 200 if database == "ok" else 503)
