"""Completion webhooks: where they may go, and sending them.

A webhook URL is checked twice: when the job is submitted (a bad URL is a 422 then, not a
silent no-op later) and again right before sending (the name may resolve elsewhere by then).
Allowed destinations depend on ``Settings.webhook_policy``:

* ``public`` — every address the host resolves to must be globally routable (no loopback,
  private, link-local or reserved ranges: the service cannot be used to reach its own network);
* ``loopback`` — every address must be loopback (127.0.0.0/8, ::1): tests, local integrations;
* ``off`` — webhooks are refused.

The POST carries JSON (``job_id``, ``status``, ``verdict`` or ``error``, ``links``); with a
``webhook_secret`` it is signed: ``X-FakeScope-Signature: sha256=<hex HMAC of the body>``.
Redirects are not followed. Up to three attempts (1 s, 2 s apart) on network errors and 5xx.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import urllib.parse
from typing import Any, Final

import httpx

from .settings import WebhookPolicy

__all__ = ["WebhookURLError", "check_webhook_url", "send_webhook"]

logger = logging.getLogger(__name__)

ATTEMPTS: Final = 3
MAX_URL_LENGTH: Final = 2000


class WebhookURLError(ValueError):
    """The webhook URL is not allowed; the message says why."""


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise WebhookURLError(f"webhook host {host!r} does not resolve: {exc.strerror}") from None
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def check_webhook_url(url: str, policy: WebhookPolicy) -> str:
    """Return ``url`` if a webhook may be sent there under ``policy``.

    Raises:
        WebhookURLError: webhooks are off, the URL is malformed or not http(s), or its host
            resolves to an address the policy forbids.

    """
    if policy == "off":
        raise WebhookURLError("webhooks are disabled on this server")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookURLError(f"webhook URL longer than {MAX_URL_LENGTH} characters")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookURLError(f"webhook URL must be http(s)://host/…, got {url!r}")
    if parts.username or parts.password:
        raise WebhookURLError("webhook URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WebhookURLError(f"webhook URL has a bad port: {exc}") from None
    for address in _addresses(parts.hostname, port):
        if policy == "loopback" and not address.is_loopback:
            raise WebhookURLError(
                f"webhook host {parts.hostname} resolves to {address}: this server only sends "
                "webhooks to loopback addresses"
            )
        if policy == "public" and (not address.is_global or address.is_multicast):
            raise WebhookURLError(
                f"webhook host {parts.hostname} resolves to {address}, which is not a public "
                "address"
            )
    return url


def send_webhook(
    url: str,
    payload: dict[str, Any],
    *,
    policy: WebhookPolicy,
    secret: str | None,
    timeout_s: float,
) -> str:
    """POST ``payload`` as JSON to ``url``; return a one-line outcome (never raises)."""
    try:
        check_webhook_url(url, policy)
    except WebhookURLError as exc:
        logger.warning("webhook not sent: %s", exc)
        return f"refused: {exc}"
    body = json.dumps(payload, allow_nan=False).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "FakeScope-webhook/1"}
    if secret:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-FakeScope-Signature"] = f"sha256={digest}"
    outcome = "not sent"
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = httpx.post(
                url, content=body, headers=headers, timeout=timeout_s, follow_redirects=False
            )
        except httpx.HTTPError as exc:
            outcome = f"failed: {type(exc).__name__}: {exc}"[:280]
        else:
            outcome = f"HTTP {response.status_code}"
            if response.status_code < 500:
                break
        if attempt < ATTEMPTS:
            time.sleep(attempt)
    logger.info("webhook %s: %s", url, outcome)
    return outcome
