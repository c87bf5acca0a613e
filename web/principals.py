"""Who is calling: an API key (subscriber), an anonymous visitor (cookie), or the admin.

* A key comes as ``Authorization: Bearer fsk_…`` or ``X-API-Key: fsk_…``. A key that is
  presented is always checked: malformed/unknown → 401, revoked → 403 (never a silent fall
  back to anonymous use).
* Without a key, the caller is an anonymous visitor identified by the ``fakescope_visitor``
  cookie (random, HttpOnly, SameSite=Lax) — if ``allow_anonymous``; otherwise 401.
  A cookie-identified POST whose ``Origin`` is another site is refused (403): a third-party
  page cannot spend a visitor's quota.
* Admin: ``Authorization: Bearer <admin_token>`` or the ``fakescope_admin`` cookie set by
  ``/admin?token=…``; without a configured token, loopback clients only.

An upload is admitted (:func:`admit_upload`: key not revoked, quota and rate limit not reached)
twice: before its body is read, so that a refused caller does not send it for nothing, and
again inside the transaction that records the job and its use, since the key may be revoked,
or other uploads counted, while the body streams.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, Engine
from starlette.requests import Request
from starlette.responses import Response

from . import keys
from .keys import ApiKey
from .settings import Settings

__all__ = [
    "ADMIN_COOKIE",
    "VISITOR_COOKIE",
    "ApiError",
    "Principal",
    "admit_upload",
    "check_anonymous_limits",
    "is_admin",
    "resolve_principal",
    "set_visitor_cookie",
    "visitor_id",
]

VISITOR_COOKIE: Final = "fakescope_visitor"
ADMIN_COOKIE: Final = "fakescope_admin"
_VISITOR_RE: Final = re.compile(r"^[0-9a-f]{32}$")
VISITOR_COOKIE_AGE_S: Final = 365 * 86400


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class Principal:
    """The caller: exactly one of ``key`` and ``visitor`` is set."""

    key: ApiKey | None = None
    visitor: str | None = None
    new_visitor: bool = False

    @property
    def subject(self) -> str:
        """``uses.subject``: ``key:<id>`` or ``visitor:<id>``."""
        return self.key.subject if self.key else f"visitor:{self.visitor}"

    @property
    def owner(self) -> str:
        """``jobs.owner``: ``org:<organisation>`` or ``visitor:<id>``."""
        return self.key.owner if self.key else f"visitor:{self.visitor}"


def presented_key(request: Request) -> str | None:
    """Return the API key in the request's headers, if any."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        token = auth[7:].strip()
        if token.startswith(keys.KEY_PREFIX + "_"):
            return token
        raise ApiError(401, "bad_key", "the bearer token is not a FakeScope API key")
    return request.headers.get("x-api-key")


def visitor_id(request: Request) -> str | None:
    """Return the visitor id from the cookie, if well-formed."""
    value = request.cookies.get(VISITOR_COOKIE, "")
    return value if _VISITOR_RE.match(value) else None


def set_visitor_cookie(response: Response, visitor: str, settings: Settings) -> None:
    """Attach the visitor cookie to ``response``."""
    response.set_cookie(
        VISITOR_COOKIE,
        visitor,
        max_age=VISITOR_COOKIE_AGE_S,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )


def _same_origin(request: Request, settings: Settings) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parsed = urllib.parse.urlsplit(origin)
    if settings.public_url:
        # the service's own pages come from its public address; a proxy in front may have
        # rewritten Host to the address it forwards to
        public = urllib.parse.urlsplit(settings.public_url)
        if (parsed.scheme, parsed.netloc.lower()) == (public.scheme, public.netloc.lower()):
            return True
    return parsed.netloc.lower() == request.headers.get("host", "").lower()


def resolve_principal(request: Request, engine: Engine, settings: Settings) -> Principal:
    """Identify the caller (see the module docstring).

    Raises:
        ApiError: 401 bad/missing key, 403 revoked key or cross-site POST.

    """
    presented = presented_key(request)
    if presented is not None:
        try:
            return Principal(key=keys.verify_key(engine, presented))
        except keys.ApiKeyError as exc:
            raise ApiError(
                exc.status, "revoked_key" if exc.status == 403 else "bad_key", str(exc)
            ) from None
    if not settings.allow_anonymous:
        raise ApiError(
            401,
            "key_required",
            "this server requires an API key (Authorization: Bearer fsk_… or X-API-Key)",
            {"WWW-Authenticate": "Bearer"},
        )
    if request.method not in ("GET", "HEAD") and not _same_origin(request, settings):
        raise ApiError(403, "cross_site", "cross-site requests are refused")
    existing = visitor_id(request)
    if existing is not None:
        return Principal(visitor=existing)
    return Principal(visitor=secrets.token_hex(16), new_visitor=True)


def check_anonymous_limits(
    bind: Engine | Connection, settings: Settings, principal: Principal
) -> None:
    """Raise a 429 :class:`ApiError` when an anonymous visitor may not upload now."""
    at = time.time()
    day_start = at - at % 86400
    used, _ = keys.count_uses(bind, principal.subject, day_start)
    if used >= settings.anonymous_daily_quota:
        raise ApiError(
            429,
            "quota_exceeded",
            f"free checks are limited to {settings.anonymous_daily_quota} a day; try again "
            "tomorrow or ask for an API key",
            {"Retry-After": str(int(day_start + 86400 - at) + 1)},
        )
    recent = keys.count_anonymous_uses(bind, at - keys.RATE_WINDOW_S)
    if recent >= settings.anonymous_rate_per_minute:
        raise ApiError(
            429,
            "rate_limited",
            "too many free checks right now; try again in a minute",
            {"Retry-After": "60"},
        )


def admit_upload(bind: Engine | Connection, settings: Settings, principal: Principal) -> None:
    """Raise an :class:`ApiError` unless ``principal`` may start another analysis now.

    ``bind`` may be the connection of the transaction that records the upload
    (:func:`~.jobstore.create_job`): the key is then read again and the uses counted there.

    Raises:
        ApiError: 403 ``revoked_key``; 429 ``quota_exceeded`` or ``rate_limited`` (with
            ``Retry-After``).

    """
    if principal.key is None:
        check_anonymous_limits(bind, settings, principal)
        return
    try:
        key = keys.current_key(bind, principal.key.id)
        keys.check_limits(bind, key)
    except keys.ApiKeyError as exc:
        raise ApiError(
            exc.status, "revoked_key" if exc.status == 403 else "bad_key", str(exc)
        ) from None
    except keys.LimitExceededError as exc:
        raise ApiError(
            429, exc.code, str(exc), {"Retry-After": str(int(exc.retry_after_s))}
        ) from None


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_admin(request: Request, settings: Settings) -> bool:
    """Whether the request carries admin rights (see the module docstring)."""
    if settings.admin_token is None:
        return _is_loopback(request.client.host if request.client else None)
    expected = settings.admin_token.encode()
    auth = request.headers.get("authorization", "")
    candidates = [request.cookies.get(ADMIN_COOKIE, "")]
    if auth.lower().startswith("bearer "):
        candidates.append(auth[7:].strip())
    return any(hmac.compare_digest(c.encode(), expected) for c in candidates if c)
