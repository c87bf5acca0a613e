"""The per-app objects the routes share (settings, database, metrics, job runner, heatmaps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import Engine
from starlette.requests import Request

from .heatmaps import HeatmapMaker
from .jobs import JobRunner
from .metrics import ServiceMetrics
from .settings import Settings
from .upload_store import UploadStore

__all__ = ["Service", "iso", "service"]


@dataclass
class Service:
    """Everything a request handler needs; stored as ``app.state.service``."""

    settings: Settings
    engine: Engine
    metrics: ServiceMetrics
    runner: JobRunner | None
    store: UploadStore  #: where complete uploads go (a folder, or S3)
    heatmaps: HeatmapMaker = field(default_factory=HeatmapMaker)


def service(request: Request) -> Service:
    """Return the :class:`Service` of the app serving ``request``."""
    return request.app.state.service  # type: ignore[no-any-return]


def iso(at: float | None) -> str | None:
    """Epoch seconds → ISO 8601 UTC (``None`` stays ``None``)."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="seconds")
