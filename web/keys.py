"""API keys per organisation: creation, revocation, verification, quotas and rate limits.

A key reads ``fsk_<id>_<secret>``: ``id`` (12 hex characters) is public (it names the key in
listings and logs); ``secret`` is 32 random bytes, URL-safe base64. Only a salted SHA-256 of the
secret is stored. A fast hash is the right tool here: the secret has 256 bits of entropy, so
nobody can guess it, hashed slowly or not, and every API call verifies it (a slow hash such as
scrypt protects low-entropy *passwords*; here it would only cost CPU per request).

Limits, both counted from the ``uses`` table (so they hold across restarts and processes):

* ``monthly_quota`` — accepted uploads per calendar month (UTC); the 429 says when it resets;
* ``rate_per_minute`` — accepted uploads in any 60 s window.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, Engine, func, select, update

from . import db

__all__ = [
    "MAX_ORGANISATION_CHARS",
    "ApiKey",
    "ApiKeyError",
    "LimitExceededError",
    "check_limits",
    "count_anonymous_uses",
    "count_uses",
    "create_key",
    "current_key",
    "list_keys",
    "month_start",
    "revoke_key",
    "usage",
    "verify_key",
]

KEY_PREFIX: Final = "fsk"
_KEY_RE: Final = re.compile(r"^fsk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
RATE_WINDOW_S: Final = 60.0
#: ``jobs.owner`` of a key's jobs: this prefix, then the key's organisation.
OWNER_PREFIX: Final = "org:"
#: Longest organisation name: one that ``api_keys.organisation`` holds and that, with the prefix,
#: ``jobs.owner`` holds too (PostgreSQL refuses a longer value: such a key could never upload).
#: Derived from the columns' lengths, so that the schema stays the one place that sets it.
MAX_ORGANISATION_CHARS: Final = min(db.ORGANISATION_CHARS, db.OWNER_CHARS - len(OWNER_PREFIX))


class ApiKeyError(Exception):
    """An API key is unknown, malformed or revoked.

    Attributes:
        status: 401 (missing, malformed, unknown) or 403 (revoked).

    """

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class LimitExceededError(Exception):
    """A quota or rate limit is exhausted; ``retry_after_s`` says when to try again.

    Attributes:
        code: ``quota_exceeded`` (the monthly quota) or ``rate_limited`` (the rate limit).

    """

    def __init__(self, message: str, retry_after_s: float, code: str):
        super().__init__(message)
        self.retry_after_s = max(1.0, retry_after_s)
        self.code = code


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""

    id: str
    organisation: str
    monthly_quota: int
    rate_per_minute: int
    created_at: float
    revoked_at: float | None
    note: str | None = None

    @property
    def subject(self) -> str:
        """The ``uses.subject`` of this key."""
        return f"key:{self.id}"

    @property
    def owner(self) -> str:
        """The ``jobs.owner`` of this key's jobs: its organisation (keys of one org share)."""
        return f"{OWNER_PREFIX}{self.organisation}"


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def _row_to_key(row: object) -> ApiKey:
    m = row._mapping  # type: ignore[attr-defined]
    return ApiKey(
        id=m["id"],
        organisation=m["organisation"],
        monthly_quota=m["monthly_quota"],
        rate_per_minute=m["rate_per_minute"],
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
        note=m["note"],
    )


def create_key(
    engine: Engine,
    organisation: str,
    *,
    monthly_quota: int,
    rate_per_minute: int,
    note: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; return it and the full key string (shown once, never stored).

    Raises:
        ValueError: empty organisation or one longer than :data:`MAX_ORGANISATION_CHARS`, or a
            quota/rate below 1.

    """
    organisation = organisation.strip()
    if not 1 <= len(organisation) <= MAX_ORGANISATION_CHARS:
        raise ValueError(
            f"organisation must be 1..{MAX_ORGANISATION_CHARS} characters, got {len(organisation)}"
        )
    if monthly_quota < 1 or rate_per_minute < 1:
        raise ValueError("monthly_quota and rate_per_minute must be >= 1")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    created = db.now()
    with engine.begin() as conn:
        conn.execute(
            db.api_keys.insert().values(
                id=key_id,
                organisation=organisation,
                salt=salt,
                secret_hash=_hash(salt, secret),
                monthly_quota=monthly_quota,
                rate_per_minute=rate_per_minute,
                created_at=created,
                revoked_at=None,
                note=note,
            )
        )
    key = ApiKey(key_id, organisation, monthly_quota, rate_per_minute, created, None, note)
    return key, f"{KEY_PREFIX}_{key_id}_{secret}"


def revoke_key(engine: Engine, key_id: str) -> ApiKey:
    """Revoke a key (idempotent: the first revocation time is kept).

    Raises:
        LookupError: no key has this id.

    """
    with engine.begin() as conn:
        conn.execute(
            update(db.api_keys)
            .where(db.api_keys.c.id == key_id, db.api_keys.c.revoked_at.is_(None))
            .values(revoked_at=db.now())
        )
        row = conn.execute(select(db.api_keys).where(db.api_keys.c.id == key_id)).first()
    if row is None:
        raise LookupError(f"no API key with id {key_id!r}")
    return _row_to_key(row)


def list_keys(engine: Engine) -> list[ApiKey]:
    """All keys, oldest first (revoked ones included)."""
    with engine.connect() as conn:
        rows = conn.execute(select(db.api_keys).order_by(db.api_keys.c.created_at)).all()
    return [_row_to_key(r) for r in rows]


def verify_key(engine: Engine, presented: str) -> ApiKey:
    """Return the key that ``presented`` is, if it is valid and not revoked.

    Raises:
        ApiKeyError: malformed or unknown (status 401), or revoked (status 403).

    """
    match = _KEY_RE.match(presented.strip())
    if match is None:
        raise ApiKeyError("malformed API key (expected fsk_<id>_<secret>)", 401)
    key_id, secret = match.groups()
    with engine.connect() as conn:
        row = conn.execute(select(db.api_keys).where(db.api_keys.c.id == key_id)).first()
    if row is None or not hmac.compare_digest(
        _hash(row._mapping["salt"], secret), row._mapping["secret_hash"]
    ):
        raise ApiKeyError("unknown API key", 401)
    return _unrevoked(_row_to_key(row))


def current_key(bind: Engine | Connection, key_id: str) -> ApiKey:
    """Read the key ``key_id`` again (its secret already verified); raise if it is revoked now.

    With a connection, inside its transaction: an upload admitted there is admitted only while
    its key stands.

    Raises:
        ApiKeyError: the key was revoked (status 403) or is gone (status 401).

    """
    with db.connection(bind) as conn:
        row = conn.execute(select(db.api_keys).where(db.api_keys.c.id == key_id)).first()
    if row is None:
        raise ApiKeyError("unknown API key", 401)
    return _unrevoked(_row_to_key(row))


def _unrevoked(key: ApiKey) -> ApiKey:
    if key.revoked_at is not None:
        raise ApiKeyError(
            f"API key {key.id} was revoked on "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(key.revoked_at))}",
            403,
        )
    return key


def month_start(at: float) -> float:
    """Epoch seconds of the first instant of ``at``'s calendar month (UTC)."""
    t = time.gmtime(at)
    return float(calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0)))


def _next_month_start(at: float) -> float:
    t = time.gmtime(at)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


def count_uses(bind: Engine | Connection, subject: str, since: float) -> tuple[int, float | None]:
    """Count the uses of ``subject`` since ``since``: (count, time of the oldest one)."""
    with db.connection(bind) as conn:
        row = conn.execute(
            select(func.count(), func.min(db.uses.c.at)).where(
                db.uses.c.subject == subject, db.uses.c.at >= since
            )
        ).one()
    return int(row[0]), row[1]


def count_anonymous_uses(bind: Engine | Connection, since: float) -> int:
    """Count the uses by all anonymous visitors together since ``since``."""
    with db.connection(bind) as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    db.uses.c.subject.like("visitor:%"), db.uses.c.at >= since
                )
            ).scalar_one()
        )


def check_limits(bind: Engine | Connection, key: ApiKey, at: float | None = None) -> None:
    """Raise :class:`LimitExceededError` when ``key`` may not start another analysis now.

    ``bind`` may be a connection: the uses are then counted inside its transaction.
    """
    at = db.now() if at is None else at
    used, _ = count_uses(bind, key.subject, month_start(at))
    if used >= key.monthly_quota:
        reset = _next_month_start(at)
        raise LimitExceededError(
            f"monthly quota of {key.monthly_quota} analyses used up for key {key.id}; it resets "
            f"on {time.strftime('%Y-%m-%d', time.gmtime(reset))} (UTC)",
            reset - at,
            "quota_exceeded",
        )
    recent, oldest = count_uses(bind, key.subject, at - RATE_WINDOW_S)
    if recent >= key.rate_per_minute:
        wait = (oldest or at) + RATE_WINDOW_S - at
        raise LimitExceededError(
            f"rate limit of {key.rate_per_minute} analyses per minute reached for key {key.id}",
            wait,
            "rate_limited",
        )


def usage(engine: Engine, key: ApiKey, at: float | None = None) -> dict[str, object]:
    """Usage of one key: this month, in total, its limits and its last use."""
    at = db.now() if at is None else at
    month, _ = count_uses(engine, key.subject, month_start(at))
    with engine.connect() as conn:
        total, last = conn.execute(
            select(func.count(), func.max(db.uses.c.at)).where(db.uses.c.subject == key.subject)
        ).one()
    return {
        "key_id": key.id,
        "organisation": key.organisation,
        "monthly_quota": key.monthly_quota,
        "rate_per_minute": key.rate_per_minute,
        "used_this_month": month,
        "remaining_this_month": max(0, key.monthly_quota - month),
        "used_total": int(total),
        "last_use_at": last,
        "revoked": key.revoked_at is not None,
    }
