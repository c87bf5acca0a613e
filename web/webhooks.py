"""Completion webhooks: where they may go, and sending them.

A webhook URL is checked twice: when the job is submitted (a bad URL is a 422 then, not a
silent no-op later) and again right before sending (the name may resolve elsewhere by then).
Allowed destinations depend on ``Settings.webhook_policy``:

* ``public`` — every address the host resolves to must be globally routable (no loopback,
  private, link-local or reserved ranges, nor an IPv6 address that carries such an IPv4 one,
  6to4 or NAT64: the service cannot be used to reach its own network);
* ``loopback`` — every address must be loopback (127.0.0.0/8, ::1): tests, local integrations;
* ``off`` — webhooks are refused.

Sending connects to the very addresses that the check before it approved, never to a second
resolution of the name (which a DNS server answering with a zero TTL could point at this
service's own network: DNS rebinding); the ``Host`` header and, over HTTPS, the TLS server name
and certificate check stay the URL's host. One deadline, ``timeout_s``, bounds each attempt
from the connection to the response's status line, however slowly the receiver trickles its
bytes, and the response body is never read: its status is all that counts.

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
import ssl
import time
import urllib.parse
from collections.abc import Iterable
from typing import Any, Final

import httpcore
import httpx

from .settings import WebhookPolicy

__all__ = ["WebhookURLError", "check_webhook_url", "send_webhook"]

logger = logging.getLogger(__name__)

ATTEMPTS: Final = 3
MAX_URL_LENGTH: Final = 2000

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: What a failed attempt raises: httpcore's errors (the connection, TLS, the deadline, HTTP),
#: and OSError from setting up TLS (a CA file named by SSL_CERT_FILE that cannot be read).
_SEND_ERRORS: Final = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    OSError,
)


class WebhookURLError(ValueError):
    """The webhook URL is not allowed; the message says why."""


def _addresses(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise WebhookURLError(f"webhook host {host!r} does not resolve: {exc.strerror}") from None
    except UnicodeError:  # the IDNA codec refuses an empty label or one over 63 characters
        raise WebhookURLError(
            f"webhook host {host!r} is not a valid host name (a dot-separated part of it is "
            "empty or longer than 63 characters)"
        ) from None
    found = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    return list(dict.fromkeys(found))  # once each, in the resolver's order of preference


#: NAT64 prefixes (RFC 6052's well-known one, RFC 8215's local-use one): a gateway translates an
#: address in them to the IPv4 address in its last 32 bits, which may be a private one.
_NAT64: Final = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _is_public(address: Address) -> bool:
    """Whether ``address`` is globally routable, and so is any IPv4 address it carries.

    An IPv6 address may stand for an IPv4 one (6to4 ``2002::/16``, NAT64): Python counts
    ``2002:a00:1::1`` as global, though it reaches 10.0.0.1 through a relay.
    """
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.sixtofour is not None:
            return _is_public(address.sixtofour)
        if any(address in network for network in _NAT64):
            return _is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return True


def _checked_addresses(url: str, policy: WebhookPolicy) -> list[Address]:
    """Return the addresses a webhook to ``url`` may connect to (see :func:`check_webhook_url`)."""
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
        httpx.URL(url)  # what sending parses: refused now, not when the job is done
    except (ValueError, httpx.InvalidURL) as exc:
        raise WebhookURLError(f"webhook URL is malformed: {exc}") from None
    addresses = _addresses(parts.hostname, port)
    for address in addresses:
        if policy == "loopback" and not address.is_loopback:
            raise WebhookURLError(
                f"webhook host {parts.hostname} resolves to {address}: this server only sends "
                "webhooks to loopback addresses"
            )
        if policy == "public" and not _is_public(address):
            raise WebhookURLError(
                f"webhook host {parts.hostname} resolves to {address}, which is not a public "
                "address"
            )
    return addresses


def check_webhook_url(url: str, policy: WebhookPolicy) -> str:
    """Return ``url`` if a webhook may be sent there under ``policy``.

    Raises:
        WebhookURLError: webhooks are off, the URL is malformed or not http(s), or its host
            resolves to an address the policy forbids.

    """
    _checked_addresses(url, policy)
    return url


class _Deadline:
    """The moment an attempt gives up; each network operation may take what is left of it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self, timeout: type[httpcore.TimeoutException]) -> float:
        remaining = self._end - time.monotonic()
        if remaining <= 0:
            raise timeout(f"no answer within {self.seconds:g} s")
        return remaining


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the attempt's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline):
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.left(httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.left(httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # server_hostname is the URL's host (SNI and the certificate check), not the address.
        tls = self._inner.start_tls(
            ssl_context, server_hostname, self._deadline.left(httpcore.ConnectTimeout)
        )
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the checked addresses, whatever host name it is asked for."""

    def __init__(self, addresses: list[Address], deadline: _Deadline):
        self._addresses = addresses
        self._deadline = deadline
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        error: httpcore.ConnectError | None = None
        for address in self._addresses:  # as socket.create_connection: the first that answers
            try:
                stream = self._sockets.connect_tcp(
                    str(address),
                    port,
                    self._deadline.left(httpcore.ConnectTimeout),
                    local_address,
                    socket_options,
                )
            except httpcore.ConnectError as exc:
                error = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise error or httpcore.ConnectError(f"{host} has no address to connect to")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are sent over TCP only")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _post(
    url: str, body: bytes, headers: dict[str, str], addresses: list[Address], timeout_s: float
) -> int:
    """POST ``body`` to ``url`` at one of ``addresses``; return the response's status."""
    parsed = httpx.URL(url)  # IDNA host, percent-encoded path: as httpx would send it
    target = httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )
    # netloc, not host: an IPv6 literal keeps its brackets, a port other than the default stays
    raw_headers = [(b"Host", parsed.netloc)]
    raw_headers += [(name.encode(), value.encode()) for name, value in headers.items()]
    backend = _PinnedBackend(addresses, _Deadline(timeout_s))
    # httpx's trust store (certifi, or SSL_CERT_FILE), as before; only HTTPS needs one.
    tls = httpx.create_ssl_context() if parsed.scheme == "https" else None
    with (
        httpcore.ConnectionPool(ssl_context=tls, network_backend=backend, retries=0) as pool,
        pool.stream("POST", target, headers=raw_headers, content=body) as response,
    ):
        return response.status  # the body is left unread, and the connection closed


def send_webhook(
    url: str,
    payload: dict[str, Any],
    *,
    policy: WebhookPolicy,
    secret: str | None,
    timeout_s: float,
) -> str:
    """POST ``payload`` as JSON to ``url``; return a one-line outcome (never raises).

    Each attempt ends within ``timeout_s`` (connection to status line), at the addresses the
    check of ``url`` just approved.
    """
    try:
        addresses = _checked_addresses(url, policy)
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
            status = _post(url, body, headers, addresses, timeout_s)
        except _SEND_ERRORS as exc:
            outcome = f"failed: {type(exc).__name__}: {exc}"[:280]
        else:
            outcome = f"HTTP {status}"
            if status < 500:
                break
        if attempt < ATTEMPTS:
            time.sleep(attempt)
    logger.info("webhook %s: %s", url, outcome)
    return outcome
