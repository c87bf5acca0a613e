"""Business metrics (from the database) and service metrics (Prometheus).

Business metrics — computed from ``uses`` and ``page_views``, so they survive restarts and are
the same whichever process serves them:

* **uses per day** — accepted uploads per UTC day;
* **1st → 2nd use conversion** — of the visitors/keys that used the service at least once,
  the share that used it at least twice (overall, and for visitors and keys separately);
* **average time on the service page** — mean of the visible seconds reported by the pages'
  beacon, over the views that reported (a view that never reported is not counted as 0).

Service metrics — a per-app :class:`prometheus_client.CollectorRegistry` (several apps in one
process, as in the tests, do not collide): HTTP latency histogram and request counter by
method, route template and status; analyses by outcome and their duration; webhook outcomes;
plus the business metrics above as gauges, read from the database at scrape time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, case, func, select

from . import db
from .jobstore import count_by_status

__all__ = [
    "BusinessMetrics",
    "ServiceMetrics",
    "business_metrics",
]

logger = logging.getLogger(__name__)

MAX_PAGE_SECONDS: Final = 4 * 3600.0
DAY_S: Final = 86400.0


@dataclass(frozen=True)
class Conversion:
    """Subjects with at least one use, those with at least two, and the ratio."""

    first_use: int
    second_use: int

    @property
    def rate(self) -> float | None:
        """``second_use / first_use``; ``None`` before anyone used the service."""
        return self.second_use / self.first_use if self.first_use else None


@dataclass(frozen=True)
class BusinessMetrics:
    """A snapshot of the business metrics (see the module docstring)."""

    uses_per_day: list[tuple[str, int]]
    uses_today: int
    uses_total: int
    conversion: Conversion
    conversion_visitors: Conversion
    conversion_keys: Conversion
    page_views: int
    timed_page_views: int
    average_page_seconds: float | None
    per_key: list[dict[str, Any]] = field(default_factory=list)
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    failures_by_code: dict[str, int] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready form (conversion rates included)."""
        out = asdict(self)
        out["uses_per_day"] = [{"day": d, "uses": n} for d, n in self.uses_per_day]
        for name in ("conversion", "conversion_visitors", "conversion_keys"):
            out[name]["rate"] = getattr(self, name).rate
        return out


def _conversion(engine: Engine, prefix: str | None) -> Conversion:
    per_subject = select(db.uses.c.subject, func.count().label("n")).group_by(db.uses.c.subject)
    if prefix is not None:
        per_subject = per_subject.where(db.uses.c.subject.like(f"{prefix}%"))
    sub = per_subject.subquery()
    query = select(func.count(), func.coalesce(func.sum(case((sub.c.n >= 2, 1), else_=0)), 0))
    with engine.connect() as conn:
        first, second = conn.execute(query.select_from(sub)).one()
    return Conversion(int(first), int(second))


def business_metrics(engine: Engine, *, days: int = 30, at: float | None = None) -> BusinessMetrics:
    """Compute the business metrics; ``uses_per_day`` covers the last ``days`` days (UTC)."""
    at = db.now() if at is None else at
    day_list = [db.utc_day(at - i * DAY_S) for i in range(days - 1, -1, -1)]
    with engine.connect() as conn:
        per_day = dict(
            conn.execute(
                select(db.uses.c.day, func.count())
                .where(db.uses.c.day >= day_list[0])
                .group_by(db.uses.c.day)
            ).all()
        )
        total = conn.execute(select(func.count()).select_from(db.uses)).scalar_one()
        views, timed, average = conn.execute(
            select(
                func.count(),
                func.count(db.page_views.c.seconds),
                func.avg(db.page_views.c.seconds),
            )
        ).one()
        key_rows = conn.execute(
            select(
                db.api_keys.c.id,
                db.api_keys.c.organisation,
                db.api_keys.c.monthly_quota,
                db.api_keys.c.revoked_at,
                func.count(db.uses.c.id),
                func.max(db.uses.c.at),
            )
            .select_from(db.api_keys.outerjoin(db.uses, db.uses.c.key_id == db.api_keys.c.id))
            .group_by(
                db.api_keys.c.id,
                db.api_keys.c.organisation,
                db.api_keys.c.monthly_quota,
                db.api_keys.c.revoked_at,
            )
            .order_by(db.api_keys.c.organisation, db.api_keys.c.id)
        ).all()
        failures = dict(
            conn.execute(
                select(db.jobs.c.error_code, func.count())
                .where(db.jobs.c.status == "failed")
                .group_by(db.jobs.c.error_code)
            ).all()
        )
    return BusinessMetrics(
        uses_per_day=[(d, int(per_day.get(d, 0))) for d in day_list],
        uses_today=int(per_day.get(day_list[-1], 0)),
        uses_total=int(total),
        conversion=_conversion(engine, None),
        conversion_visitors=_conversion(engine, "visitor:"),
        conversion_keys=_conversion(engine, "key:"),
        page_views=int(views),
        timed_page_views=int(timed),
        average_page_seconds=None if average is None else float(average),
        per_key=[
            {
                "key_id": r[0],
                "organisation": r[1],
                "monthly_quota": r[2],
                "revoked": r[3] is not None,
                "uses": int(r[4]),
                "last_use_at": r[5],
            }
            for r in key_rows
        ],
        jobs_by_status=count_by_status(engine),
        failures_by_code={str(k): int(v) for k, v in failures.items()},
    )


class _BusinessCollector(Collector):
    """Reads the business metrics from the database at every scrape."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        try:
            m = business_metrics(self.engine, days=1)
        except Exception:  # a scrape must not crash on a database hiccup; it is logged
            logger.exception("cannot read business metrics for /metrics")
            return
        uses = CounterMetricFamily("fakescope_web_uses", "Accepted uploads (analyses) ever")
        uses.add_metric([], m.uses_total)
        yield uses
        today = GaugeMetricFamily("fakescope_web_uses_today", "Accepted uploads today (UTC)")
        today.add_metric([], m.uses_today)
        yield today
        subjects = GaugeMetricFamily(
            "fakescope_web_subjects",
            "Visitors/keys by number of uses (first: >=1, second: >=2)",
            labels=["kind", "uses"],
        )
        rate = GaugeMetricFamily(
            "fakescope_web_first_to_second_use_conversion_ratio",
            "Share of visitors/keys with a first use that came back for a second",
            labels=["kind"],
        )
        for kind, conv in (
            ("all", m.conversion),
            ("visitor", m.conversion_visitors),
            ("key", m.conversion_keys),
        ):
            subjects.add_metric([kind, "first"], conv.first_use)
            subjects.add_metric([kind, "second"], conv.second_use)
            if conv.rate is not None:
                rate.add_metric([kind], conv.rate)
        yield subjects
        yield rate
        views = GaugeMetricFamily(
            "fakescope_web_page_views", "Service page views", labels=["timed"]
        )
        views.add_metric(["all"], m.page_views)
        views.add_metric(["with_beacon"], m.timed_page_views)
        yield views
        if m.average_page_seconds is not None:
            avg = GaugeMetricFamily(
                "fakescope_web_page_time_seconds_average",
                "Average visible time on the service page",
            )
            avg.add_metric([], m.average_page_seconds)
            yield avg
        jobs = GaugeMetricFamily("fakescope_web_jobs", "Jobs by status", labels=["status"])
        for status, n in m.jobs_by_status.items():
            jobs.add_metric([status], n)
        yield jobs


class ServiceMetrics:
    """The app's Prometheus registry and instruments."""

    def __init__(self, engine: Engine):
        """Create a fresh registry with the service instruments and the business collector."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_latency = Histogram(
            "fakescope_web_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.http_errors = Counter(
            "fakescope_web_http_errors",
            "HTTP responses with status >= 500 (server errors)",
            ["route"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "fakescope_web_rejections",
            "Refused requests by reason (4xx with a stable code)",
            ["code"],
            registry=self.registry,
        )
        self.analyses = Counter(
            "fakescope_web_analyses",
            "Finished analyses by outcome (done, or the failure code)",
            ["outcome"],
            registry=self.registry,
        )
        self.analysis_seconds = Histogram(
            "fakescope_web_analysis_duration_seconds",
            "Decode + inference time of one job",
            registry=self.registry,
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.webhooks = Counter(
            "fakescope_web_webhooks",
            "Webhook deliveries by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.registry.register(_BusinessCollector(engine))
