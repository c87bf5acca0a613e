"""The FastAPI application factory: :func:`create_app`.

``create_app(settings)`` opens the database (creating tables), builds the Prometheus registry
and — when ``settings.workers > 0`` — a :class:`~.jobs.JobRunner` that starts with the app's
lifespan and stops with it. Routes: the REST API under ``/api/v1`` (OpenAPI at
``/openapi.json``), the pages ``/``, ``/jobs/{id}``, ``/admin``, static files
under ``/static`` and Prometheus metrics at ``/metrics`` (the admin's, as ``/admin``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import api, pages
from .db import open_database
from .jobs import JobRunner
from .metrics import ServiceMetrics
from .principals import ApiError, is_admin
from .settings import Settings
from .state import Service
from .upload_store import upload_store

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

#: No third-party origin anywhere: scripts, styles and images come from this server only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


#: The methods the latency metric is labelled with; any other is counted as ``other``.
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class _ServiceMiddleware:
    """Times every HTTP request into the metrics and adds the security headers."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            # a label per method a client invents would be a series each, kept for ever
            method = scope["method"] if scope["method"] in _HTTP_METHODS else "other"
            self.metrics.http_latency.labels(method, route, str(status)).observe(
                time.perf_counter() - start
            )
            if status >= 500:
                self.metrics.http_errors.labels(route).inc()


def _log_policy(settings: Settings) -> None:
    if settings.admin_token is None and settings.public_url:
        # behind a reverse proxy on this host (or a sidecar) every visitor comes from loopback
        logger.warning(
            "no admin token with a public URL: /admin and /metrics are open to every client "
            "that connects from loopback, a reverse proxy on this host included; set "
            "FAKESCOPE_WEB_ADMIN_TOKEN"
        )
    logger.info(
        "database %s, data %s, Triton %s (%s)",
        settings.database_url.split("@")[-1],
        settings.data_dir,
        settings.triton_url,
        settings.triton_protocol,
    )
    logger.info(
        "anonymous uploads: %s; webhooks: %s; admin: %s; uploads ≤ %d MiB, ≤ %.0f s",
        f"on ({settings.anonymous_daily_quota}/visitor/day)" if settings.allow_anonymous else "off",
        settings.webhook_policy,
        "token" if settings.admin_token else "loopback clients only",
        settings.max_upload_bytes // 2**20,
        settings.max_duration_s,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the web service for ``settings`` (default: :meth:`Settings.from_env`)."""
    settings = settings if settings is not None else Settings.from_env()
    engine = open_database(settings.database_url)
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    store = upload_store(settings)  # checks an S3 bucket now, not at the first upload
    metrics = ServiceMetrics(engine)
    runner = (
        JobRunner(engine, settings, metrics, base_url=settings.public_url)
        if settings.workers > 0
        else None
    )
    _log_policy(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if runner is not None:
            runner.start()
        try:
            yield
        finally:
            if runner is not None:
                runner.stop()
            engine.dispose()

    app = FastAPI(
        # The schema is served (/openapi.json); FastAPI's viewers load their scripts from a CDN,
        # which this service's CSP refuses and an air-gapped network cannot reach.
        docs_url=None,
        redoc_url=None,
        title="FakeScope",
        version="1.0",
        summary="Deepfake-video detection: upload a video, get the probability that its faces "
        "are synthetic, per-frame scores and face thumbnails.",
        lifespan=lifespan,
    )
    app.state.service = Service(settings, engine, metrics, runner, store)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        metrics.rejections.labels(exc.code).inc()
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message}},
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.rejections.labels("bad_request").inc()
        details: list[Any] = list(exc.errors())
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in details
        )
        return JSONResponse({"error": {"code": "bad_request", "message": message}}, status_code=422)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        # The business figures are here too (uses, conversion, page views): the operator's,
        # as on /admin. Prometheus sends the admin token (its scrape's bearer credentials).
        if not is_admin(request, settings):
            return JSONResponse(
                {"error": {"code": "forbidden", "message": "the metrics need the admin token"}},
                status_code=403,
            )
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount(
        "/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static"
    )
    app.add_middleware(_ServiceMiddleware, metrics=metrics)
    return app
