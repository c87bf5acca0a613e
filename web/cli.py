"""``fakescope web …``: run the web service, manage subscriber API keys.

Mounted into the top-level CLI with :func:`add_web_parsers` (every leaf parser sets
``func``, returning an int exit code); also runnable alone: ``python -m fakescope.web.cli``.

* ``fakescope web serve [--host 127.0.0.1] [--port 8080] [--start-triton] …``
* ``fakescope web worker [--threads N] [--drain-timeout S] …`` (job runner only, no HTTP)
* ``fakescope web keys create --org NAME [--monthly-quota N] [--rate-per-minute N]``
* ``fakescope web keys revoke KEY_ID``
* ``fakescope web keys list [--json]``

Exit codes: 0 ok, 2 usage error, 3 no such key (revoke), 6 Triton could not start
(``--start-triton``), 7 bad settings or database.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from fakescope import contract
from fakescope.allocator import set_up_memory
from fakescope.arguments import non_negative_number, port, positive_int
from fakescope.client.triton import DEFAULT_URLS, SHARED_MEMORY_CHOICES
from fakescope.paths import MODEL_REPOSITORY
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress, ServerStartError
from fakescope.serving.repository_check import RepositoryError

EXIT_OK: Final = 0
EXIT_NO_SUCH_KEY: Final = 3
EXIT_SERVER_START: Final = 6
EXIT_CONFIG: Final = 7

DEFAULT_REPOSITORY: Final = MODEL_REPOSITORY
DEFAULT_KEY_QUOTA: Final = 1000
DEFAULT_KEY_RATE: Final = 10

logger = logging.getLogger(__name__)

__all__ = ["add_web_parsers", "main"]


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        metavar="URL",
        default=None,
        help="SQLAlchemy URL (default: $FAKESCOPE_WEB_DATABASE_URL or "
        "sqlite:///.fakescope/web.db; PostgreSQL: postgresql+psycopg2://user@host/db)",
    )


def _shared_memory_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--triton-shared-memory",
        choices=tuple(SHARED_MEMORY_CHOICES),
        default=None,
        help="send the frames to Triton through system shared memory (default: "
        "$FAKESCOPE_WEB_TRITON_SHARED_MEMORY or auto, when the Triton URL is on loopback)",
    )


def _settings(args: argparse.Namespace, **overrides: Any) -> Any:
    from .settings import Settings

    return Settings.from_env(database_url=args.database, **overrides)


class _ConfigError(Exception):
    """Settings or database unusable; the message is printed and the exit code is 7."""


def _engine(args: argparse.Namespace) -> Any:
    from sqlalchemy.exc import SQLAlchemyError

    from .db import DatabaseError, open_database

    try:
        return open_database(_settings(args).database_url)
    except (ValueError, DatabaseError, SQLAlchemyError) as exc:
        raise _ConfigError(" ".join(str(exc).split())[:500]) from exc


def _config_errors(func: Any) -> Any:
    """Turn :class:`_ConfigError` into a one-line message and exit code 7."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except _ConfigError as exc:
            print(f"fakescope: error: {exc}", file=sys.stderr)
            return EXIT_CONFIG

    wrapper.__doc__ = func.__doc__
    return wrapper


def _when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(at))


# --- keys ------------------------------------------------------------------------------------
@_config_errors
def run_keys_create(args: argparse.Namespace) -> int:
    """Create a key and print it once (it cannot be shown again)."""
    from .keys import create_key

    try:
        engine = _engine(args)
        key, secret = create_key(
            engine,
            args.org,
            monthly_quota=args.monthly_quota,
            rate_per_minute=args.rate_per_minute,
            note=args.note,
        )
    except ValueError as exc:
        print(f"fakescope: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.json:
        print(
            json.dumps(
                {
                    "key": secret,
                    "key_id": key.id,
                    "organisation": key.organisation,
                    "monthly_quota": key.monthly_quota,
                    "rate_per_minute": key.rate_per_minute,
                }
            )
        )
    else:
        print(secret)
        print(
            f"key {key.id} for {key.organisation}: {key.monthly_quota} analyses/month, "
            f"{key.rate_per_minute}/minute. Store it now: it is not kept and cannot be shown "
            "again.",
            file=sys.stderr,
        )
    return EXIT_OK


@_config_errors
def run_keys_revoke(args: argparse.Namespace) -> int:
    """Revoke a key by id."""
    from .keys import revoke_key

    try:
        key = revoke_key(_engine(args), args.key_id)
    except LookupError as exc:
        print(f"fakescope: error: {exc}", file=sys.stderr)
        return EXIT_NO_SUCH_KEY
    print(f"revoked {key.id} ({key.organisation}) at {_when(key.revoked_at)} UTC")
    return EXIT_OK


@_config_errors
def run_keys_list(args: argparse.Namespace) -> int:
    """List keys with their usage."""
    from .keys import list_keys, usage

    engine = _engine(args)
    rows = [
        usage(engine, k) | {"created_at": k.created_at, "revoked_at": k.revoked_at}
        for k in list_keys(engine)
    ]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return EXIT_OK
    print(
        f"{'KEY_ID':<13} {'ORGANISATION':<24} {'MONTH':>7} {'QUOTA':>7} {'RATE/MIN':>8} "
        f"{'TOTAL':>7}  CREATED           REVOKED"
    )
    for r in rows:
        print(
            f"{r['key_id']:<13} {r['organisation'][:24]:<24} {r['used_this_month']:>7} "
            f"{r['monthly_quota']:>7} {r['rate_per_minute']:>8} {r['used_total']:>7}  "
            f"{_when(r['created_at']):<17} {_when(r['revoked_at'])}"
        )
    return EXIT_OK


# --- serve -----------------------------------------------------------------------------------
def _embedded_address(args: argparse.Namespace) -> ServerAddress | None:
    """Return the address of the Triton ``--start-triton`` starts here (``None`` without it)."""
    if not args.start_triton:
        return None
    return ServerAddress(
        "127.0.0.1", args.triton_http_port, args.triton_grpc_port, args.triton_metrics_port
    )


@contextlib.contextmanager
def _maybe_triton(args: argparse.Namespace) -> Iterator[None]:
    """Start the embedded Triton when asked, for the block's duration."""
    address = _embedded_address(args)
    if address is None:
        yield
        return
    server = EmbeddedTriton(args.repository, address)
    server.start()
    try:
        yield
    finally:
        server.stop()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_web_serve(args: argparse.Namespace) -> int:
    """Run the web service (and, with ``--start-triton``, the embedded Triton) until Ctrl-C."""
    import uvicorn

    from .app import create_app
    from .db import DatabaseError
    from .settings import SettingsError

    # Every upload is decoded into a new array (44 MB for 16 frames of 720p): kept for the next
    # upload rather than mapped afresh each time, and faulted in with small pages
    # (fakescope/allocator.py).
    set_up_memory()

    try:
        if ipaddress.ip_address(args.host).is_loopback is False:
            logger.warning("binding %s exposes the web service beyond this machine", args.host)
    except ValueError:
        logger.warning("binding %s (not an IP address) may expose the web service", args.host)
    embedded = _embedded_address(args)
    overrides: dict[str, Any] = {
        "data_dir": args.data_dir,
        "workers": args.workers,
        "triton_url": embedded.grpc_url if embedded else args.triton_url,
        "triton_protocol": "grpc" if embedded else args.triton_protocol,
        "triton_shared_memory": args.triton_shared_memory,
        "public_url": args.public_url,
    }
    try:  # before Triton starts: a bad setting is refused at once
        settings = _settings(args, **overrides)
        app = create_app(settings)
    except (SettingsError, DatabaseError) as exc:
        print(f"fakescope: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        with _maybe_triton(args):
            print(
                f"FakeScope web on http://{args.host}:{args.port}/ (API schema /openapi.json, "
                f"metrics /metrics, admin /admin); Triton {settings.triton_url} (Ctrl-C stops)",
                flush=True,
            )
            # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal: turn
            # both into KeyboardInterrupt so the embedded Triton is stopped on the way out.
            signal.signal(signal.SIGTERM, _interrupt)
            logging.getLogger("uvicorn.access").addFilter(_redact_admin_token)
            with contextlib.suppress(KeyboardInterrupt):
                uvicorn.run(
                    app, host=args.host, port=args.port, log_level="info", proxy_headers=False
                )
    except Exception as exc:
        if isinstance(exc, (ServerStartError, RepositoryError)):
            print(f"fakescope: error: {exc}", file=sys.stderr)
            return EXIT_SERVER_START
        raise
    return EXIT_OK


#: The admin token in a logged request line (``/admin?token=…``): its value is not logged.
_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s]*")


def _redact_admin_token(record: logging.LogRecord) -> bool:
    """Blank the admin token out of an access-log line (uvicorn's args: client, method, path)."""
    args = record.args
    if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
        record.args = (*args[:2], _TOKEN_IN_QUERY.sub(r"\1<redacted>", args[2]), *args[3:])
    return True


# --- worker ----------------------------------------------------------------------------------
def run_web_worker(args: argparse.Namespace) -> int:
    """Run the job runner alone (no HTTP front end) until SIGTERM/SIGINT, then drain."""
    import threading

    from .db import DatabaseError
    from .settings import SettingsError
    from .worker import install_stop_signals, run_worker

    set_up_memory()  # it decodes every upload, as the front end's runner does (run_web_serve)
    stop = threading.Event()
    install_stop_signals(stop)
    overrides = {
        "data_dir": args.data_dir,
        "workers": args.threads,
        "triton_url": args.triton_url,
        "triton_protocol": args.triton_protocol,
        "triton_shared_memory": args.triton_shared_memory,
        "public_url": args.public_url,
    }
    try:
        settings = _settings(args, **overrides)
        print(
            f"FakeScope worker: {settings.workers} analysis thread(s), Triton "
            f"{settings.triton_url} (SIGTERM/Ctrl-C stops)",
            flush=True,
        )
        run_worker(settings, stop, drain_s=args.drain_timeout)
    except (SettingsError, DatabaseError) as exc:
        print(f"fakescope: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def add_web_parsers(subparsers: Any) -> None:
    """Add ``web serve``, ``web worker`` and ``web keys create|revoke|list`` to ``subparsers``."""
    web = subparsers.add_parser("web", help="the web service: upload page, REST API, keys")
    web_sub = web.add_subparsers(dest="web_command", required=True)

    serve = web_sub.add_parser("serve", help="run the web service")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default loopback; anything else: a warning)",
    )
    serve.add_argument("--port", type=port, default=contract.WEB_PORT)
    _database_option(serve)
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="uploads and temp files (default .fakescope/web)",
    )
    serve.add_argument(
        "--workers", type=int, default=None, help="analysis threads (default 2; 0: queue only)"
    )
    serve.add_argument(
        "--triton-url",
        default=None,
        help=f"Triton host:port (default {DEFAULT_URLS['grpc']} for grpc, "
        f"{DEFAULT_URLS['http']} for http)",
    )
    serve.add_argument("--triton-protocol", choices=("grpc", "http"), default=None)
    _shared_memory_option(serve)
    serve.add_argument(
        "--public-url",
        default=None,
        help="external base URL for webhook links, e.g. https://fakescope.example",
    )
    serve.add_argument(
        "--start-triton",
        action="store_true",
        help="also start the embedded Triton (server extra) on loopback",
    )
    serve.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    serve.add_argument("--triton-http-port", type=port, default=contract.HTTP_PORT)
    serve.add_argument("--triton-grpc-port", type=port, default=contract.GRPC_PORT)
    serve.add_argument("--triton-metrics-port", type=port, default=contract.METRICS_PORT)
    serve.set_defaults(func=run_web_serve)

    worker = web_sub.add_parser("worker", help="run the job runner alone (no HTTP front end)")
    _database_option(worker)
    worker.add_argument("--data-dir", type=Path, default=None, help="as for serve")
    worker.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="analysis threads (default $FAKESCOPE_WEB_WORKERS or 2)",
    )
    worker.add_argument("--triton-url", default=None, help="as for serve")
    worker.add_argument("--triton-protocol", choices=("grpc", "http"), default=None)
    _shared_memory_option(worker)
    worker.add_argument("--public-url", default=None, help="as for serve (webhook links)")
    worker.add_argument(
        "--drain-timeout",
        type=non_negative_number,
        default=30.0,
        metavar="S",
        help="on SIGTERM, wait this long for the jobs in hand (default 30)",
    )
    worker.set_defaults(func=run_web_worker)

    keys = web_sub.add_parser("keys", help="subscriber API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--org", required=True, help="the organisation the key belongs to")
    create.add_argument(
        "--monthly-quota",
        type=positive_int,
        default=DEFAULT_KEY_QUOTA,
        help=f"analyses per calendar month (default {DEFAULT_KEY_QUOTA})",
    )
    create.add_argument(
        "--rate-per-minute",
        type=positive_int,
        default=DEFAULT_KEY_RATE,
        help=f"analyses per minute (default {DEFAULT_KEY_RATE})",
    )
    create.add_argument("--note", default=None)
    create.add_argument("--json", action="store_true")
    _database_option(create)
    create.set_defaults(func=run_keys_create)

    revoke = keys_sub.add_parser("revoke", help="revoke a key (its calls then get 403)")
    revoke.add_argument("key_id")
    _database_option(revoke)
    revoke.set_defaults(func=run_keys_revoke)

    listing = keys_sub.add_parser("list", help="keys and their usage")
    listing.add_argument("--json", action="store_true")
    _database_option(listing)
    listing.set_defaults(func=run_keys_list)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m fakescope.web.cli web …``)."""
    parser = argparse.ArgumentParser(prog="fakescope")
    parser.add_argument("-v", "--verbose", action="store_true")
    add_web_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
