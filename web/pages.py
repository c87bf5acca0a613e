"""The HTML pages: upload (``/``), result (``/jobs/{id}``) and admin metrics (``/admin``).

Server-rendered with Jinja2; the only script is ``static/app.js`` (upload with progress,
polling, the time-on-page beacon). Every service-page view gets a ``page_views`` row whose id
the page carries; the beacon reports the page's visible seconds against it.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import or_, select, update

from fakescope.client.content_credentials import JSON_FIELD

from . import db, jobstore
from .credentials_wording import describe_credentials
from .metrics import MAX_PAGE_SECONDS, business_metrics
from .presentation import clock, describe, percent, timeline_svg
from .principals import ADMIN_COOKIE, ApiError, is_admin, set_visitor_cookie, visitor_id
from .state import iso, service

__all__ = ["record_beacon", "router", "templates"]

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.filters["percent"] = percent
templates.env.filters["clock"] = clock
templates.env.filters["iso"] = iso

HISTORY_LENGTH: Final = 20


def _visitor(request: Request) -> tuple[str, bool]:
    existing = visitor_id(request)
    return (existing, False) if existing else (secrets.token_hex(16), True)


def _new_view(request: Request, visitor: str, page: str) -> str:
    view_id = secrets.token_hex(16)
    at = db.now()
    with service(request).engine.begin() as conn:
        conn.execute(
            db.page_views.insert().values(
                id=view_id,
                visitor=visitor,
                page=page,
                day=db.utc_day(at),
                started_at=at,
                seconds=None,
            )
        )
    return view_id


def record_beacon(request: Request, view_id: str, seconds: float) -> None:
    """Store the visible seconds of a view (the largest report wins; capped at 4 h).

    Raises:
        ApiError: 404 when the view is not one of this visitor's.

    """
    visitor = visitor_id(request)
    if visitor is None or not seconds >= 0:
        raise ApiError(404, "no_such_view", "unknown page view")
    seconds = min(seconds, MAX_PAGE_SECONDS)
    views = db.page_views.c
    with service(request).engine.begin() as conn:
        found = conn.execute(
            select(views.id).where(views.id == view_id, views.visitor == visitor)
        ).first()
        if found is None:
            raise ApiError(404, "no_such_view", "unknown page view")
        conn.execute(
            update(db.page_views)
            .where(views.id == view_id, or_(views.seconds.is_(None), views.seconds < seconds))
            .values(seconds=seconds)
        )


def _history(request: Request, visitor: str) -> list[jobstore.Job]:
    return jobstore.list_jobs(service(request).engine, f"visitor:{visitor}", limit=HISTORY_LENGTH)


def _render(
    request: Request,
    name: str,
    context: dict[str, Any],
    visitor: str | None,
    new_visitor: bool,
    status: int = 200,
) -> HTMLResponse:
    s = service(request).settings
    response = templates.TemplateResponse(
        request, name, dict(context, settings=s), status_code=status
    )
    if visitor and new_visitor:
        set_visitor_cookie(response, visitor, s)
    return response


@router.get("/", response_class=HTMLResponse)
def upload_page(request: Request) -> HTMLResponse:
    """Render the upload page: drag-and-drop, progress, and the visitor's past checks."""
    visitor, new = _visitor(request)
    view_id = _new_view(request, visitor, "upload")
    return _render(
        request,
        "index.html",
        {
            "view_id": view_id,
            "history": _history(request, visitor),
            "max_mib": service(request).settings.max_upload_bytes / 2**20,
        },
        visitor,
        new,
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def result_page(request: Request, job_id: str) -> HTMLResponse:
    """Render a check's result: the verdict in words, the timeline, the faces; or its progress."""
    svc = service(request)
    visitor, new = _visitor(request)
    job = jobstore.get_job(svc.engine, job_id)
    if job is None or job.owner != f"visitor:{visitor}":
        return _render(request, "missing.html", {"job_id": job_id}, visitor, new, 404)
    view_id = _new_view(request, visitor, "result")
    context: dict[str, Any] = {
        "job": job,
        "view_id": view_id,
        "history": _history(request, visitor),
    }
    verdict = job.verdict
    if verdict is not None:
        stamps = job.frame_timestamps
        context.update(
            verdict=verdict,
            wording=describe(verdict, stamps),
            timeline=timeline_svg(
                verdict["frame_scores"],
                stamps,
                duration=verdict["duration_seconds"],
                threshold=verdict["threshold"],
            ),
            faces=jobstore.list_faces(svc.engine, job.id),
            credentials=(
                describe_credentials(verdict[JSON_FIELD]) if verdict.get(JSON_FIELD) else None
            ),
        )
    return _render(request, "job.html", context, visitor, new)


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, token: str | None = None) -> Response:
    """Render the business metrics for the operator (admin token, or loopback without one)."""
    s = service(request).settings
    if token is not None and s.admin_token is not None:
        # a wrong token sets nothing: a link with one must not log the operator out
        if not hmac.compare_digest(token.encode(), s.admin_token.encode()):
            return _render(request, "forbidden.html", {}, None, False, 403)
        response = RedirectResponse("/admin", status_code=303)
        response.set_cookie(
            ADMIN_COOKIE, token, httponly=True, samesite="strict", secure=s.secure_cookies, path="/"
        )
        return response
    if not is_admin(request, s):
        return _render(request, "forbidden.html", {}, None, False, 403)
    metrics = business_metrics(service(request).engine, days=30)
    peak = max([n for _, n in metrics.uses_per_day] + [1])
    return _render(request, "admin.html", {"m": metrics, "peak": peak}, None, False)
