"""Settings of the web service: one frozen dataclass, read from ``FAKESCOPE_WEB_*`` variables.

Every value has a documented default; :meth:`Settings.from_env` reads overrides from the
environment and refuses malformed ones with a message naming the variable (never a silent
fallback). The CLI (``fakescope web serve``) overrides the environment with its options.

Paths: ``data_dir`` holds ``uploads/`` (videos waiting for or kept after analysis) and ``tmp/``
(uploads being received; a file there is either complete and moved to ``uploads/`` or deleted).
The default database is SQLite at ``.fakescope/web.db`` (relative to the working directory).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES
from fakescope.client.content_credentials import TrustAnchorsError, load_trust_anchors
from fakescope.client.triton import CALL_TIMEOUT_S, DEFAULT_URLS, SHARED_MEMORY_CHOICES
from fakescope.contract import MAX_FRAMES_PER_REQUEST, MIN_FRAME_SIDE
from fakescope.storage import StorageError, parse_s3_url

__all__ = [
    "DEFAULT_DATABASE_URL",
    "ENV_PREFIX",
    "MAX_FACE_THUMBNAILS",
    "Settings",
    "SettingsError",
    "WebhookPolicy",
]

logger = logging.getLogger(__name__)

ENV_PREFIX: Final = "FAKESCOPE_WEB_"
DEFAULT_DATA_DIR: Final = Path(".fakescope") / "web"
DEFAULT_DATABASE_URL: Final = "sqlite:///.fakescope/web.db"

#: Where completion webhooks may go: ``public`` (global unicast addresses only; the production
#: default, no server-side request forgery into the private network), ``loopback`` (127.0.0.0/8
#: and ::1 only; for tests and a local integration), ``off`` (no webhooks accepted).
WebhookPolicy = Literal["public", "loopback", "off"]
_WEBHOOK_POLICIES: Final = ("public", "loopback", "off")
#: Ceiling of ``max_face_thumbnails``: a face's position in a URL beyond it is refused (422)
#: before the database is asked, whatever the setting was when older jobs were analysed.
MAX_FACE_THUMBNAILS: Final = 1000


class SettingsError(ValueError):
    """A setting has an invalid value; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Configuration of one web-service process.

    Attributes:
        database_url: SQLAlchemy URL; ``sqlite:///PATH`` (default) or
            ``postgresql+psycopg2://user:pass@host/db``.
        data_dir: folder for ``uploads/`` and ``tmp/``.
        triton_url: ``host:port`` of Triton; empty (the default): the protocol's default
            address on this machine (``DEFAULT_URLS``: the gRPC or the HTTP port).
        triton_protocol: ``grpc`` or ``http``.
        triton_timeout_s: per-call timeout to Triton.
        triton_shared_memory: how the analysis sends a video's frames to Triton (44 MB for 16
            frames of 720p): ``auto`` (the default) through system shared memory when
            ``triton_url`` is a loopback address, else in the request body; ``on`` through
            shared memory to any address, for a Triton that shares this process's ``/dev/shm``
            (the Compose file's ``ipc``); ``off`` always in the body. A Triton that cannot open
            the region gets the frames in the body, with a warning in the log.
        num_frames: frames sampled per video (1…64).
        max_side: long side frames are downscaled to before sending (``None``: never).
        max_upload_bytes: uploads larger than this are refused (413) as soon as the limit is
            crossed while streaming.
        max_duration_s: videos longer than this are refused (413) before they are queued.
        workers: analysis threads in this process; 0 runs no analysis here (another process
            does, or none: jobs wait in the database).
        poll_interval_s: how often idle workers look for pending jobs in the database.
        lease_s: a running job not heartbeated for this long is taken back (its worker died).
        max_attempts: analysis attempts of one job while Triton is unreachable or refuses it
            as overloaded, then it fails.
        retry_backoff_s: first wait before retrying a job whose Triton was unreachable or
            busy (doubles per attempt, capped at 60 s).
        allow_anonymous: uploads without an API key (the web page's visitors) are accepted.
        anonymous_daily_quota: uploads per anonymous visitor per UTC day.
        anonymous_rate_per_minute: uploads per minute from all anonymous visitors together.
        admin_token: bearer token for the admin page/API; ``None`` allows admin requests from
            loopback clients only.
        webhook_policy: see :data:`WebhookPolicy`.
        webhook_secret: when set, webhooks carry ``X-FakeScope-Signature: sha256=<hmac>``.
        webhook_timeout_s: per-attempt timeout of a webhook POST.
        video_retention_s: videos the user asked to keep are deleted this long after upload.
        max_face_thumbnails: face thumbnails stored per job (highest fake score first), at
            most :data:`MAX_FACE_THUMBNAILS`.
        secure_cookies: mark the visitor cookie ``Secure`` (set behind HTTPS).
        public_url: the service's external base URL (``https://host``), used for the absolute
            links in webhooks; empty: links are relative paths.
        trust_anchors_path: PEM file of the root certificates whose Content Credentials
            (C2PA) signers are trusted; ``None`` (the default): an empty trust list, so a valid
            signature is reported as "signed, signer not on your trust list". Checked at start;
            read again for every job, so a replaced file takes effect without a restart.
        upload_url: where complete uploads wait for analysis: empty, ``data_dir/uploads`` on
            this machine; ``s3://HOST:PORT/BUCKET/PREFIX``, S3 shared by every web replica and
            job worker (credentials ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``; see
            :mod:`.upload_store`).

    """

    database_url: str = DEFAULT_DATABASE_URL
    data_dir: Path = DEFAULT_DATA_DIR
    triton_url: str = ""
    triton_protocol: Literal["grpc", "http"] = "grpc"
    triton_timeout_s: float = CALL_TIMEOUT_S
    triton_shared_memory: str = "auto"
    num_frames: int = DEFAULT_NUM_FRAMES
    max_side: int | None = DEFAULT_MAX_SIDE
    max_upload_bytes: int = 200 * 1024 * 1024
    max_duration_s: float = 600.0
    workers: int = 2
    poll_interval_s: float = 0.5
    lease_s: float = 120.0
    max_attempts: int = 5
    retry_backoff_s: float = 2.0
    allow_anonymous: bool = True
    anonymous_daily_quota: int = 20
    anonymous_rate_per_minute: int = 30
    admin_token: str | None = field(default=None, repr=False)
    webhook_policy: WebhookPolicy = "public"
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_timeout_s: float = 5.0
    video_retention_s: float = 7 * 24 * 3600.0
    max_face_thumbnails: int = 48
    secure_cookies: bool = False
    public_url: str = ""
    trust_anchors_path: Path | None = None
    upload_url: str = ""

    def __post_init__(self) -> None:
        """Validate ranges; raise :class:`SettingsError` naming the first bad field."""
        positive = (
            "triton_timeout_s",
            "poll_interval_s",
            "lease_s",
            "retry_backoff_s",
            "webhook_timeout_s",
            "max_duration_s",
            "video_retention_s",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 1 <= self.num_frames <= MAX_FRAMES_PER_REQUEST:
            raise SettingsError(
                f"num_frames must be 1..{MAX_FRAMES_PER_REQUEST}, got {self.num_frames}"
            )
        if self.max_side is not None and self.max_side < MIN_FRAME_SIDE:
            raise SettingsError(
                f"max_side must be >= {MIN_FRAME_SIDE} or None, got {self.max_side}"
            )
        for name in ("max_upload_bytes", "max_attempts"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("workers", "anonymous_daily_quota", "anonymous_rate_per_minute"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.max_face_thumbnails <= MAX_FACE_THUMBNAILS:
            raise SettingsError(
                f"max_face_thumbnails must be 0..{MAX_FACE_THUMBNAILS}, got "
                f"{self.max_face_thumbnails}"
            )
        if self.triton_protocol not in DEFAULT_URLS:
            raise SettingsError(
                f"triton_protocol must be grpc or http, got {self.triton_protocol!r}"
            )
        if not self.triton_url:  # the port of the protocol spoken, not the gRPC one for both
            object.__setattr__(self, "triton_url", DEFAULT_URLS[self.triton_protocol])
        if self.triton_shared_memory not in SHARED_MEMORY_CHOICES:
            raise SettingsError(
                f"triton_shared_memory must be one of {tuple(SHARED_MEMORY_CHOICES)}, got "
                f"{self.triton_shared_memory!r}"
            )
        if self.webhook_policy not in _WEBHOOK_POLICIES:
            raise SettingsError(
                f"webhook_policy must be one of {_WEBHOOK_POLICIES}, got {self.webhook_policy!r}"
            )
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise SettingsError("admin_token must be at least 16 characters")
        if self.upload_url:
            try:
                parse_s3_url(self.upload_url)
            except StorageError as exc:
                raise SettingsError(f"upload_url: {exc}") from None
        if self.trust_anchors_path is not None:
            try:
                load_trust_anchors(self.trust_anchors_path)
            except TrustAnchorsError as exc:
                raise SettingsError(f"trust_anchors_path: {exc}") from None

    @property
    def upload_dir(self) -> Path:
        """Complete uploads: videos waiting for analysis, or kept on request."""
        return Path(self.data_dir) / "uploads"

    @property
    def tmp_dir(self) -> Path:
        """Uploads being received (``*.part``); empty when no upload is in flight."""
        return Path(self.data_dir) / "tmp"

    @property
    def triton_shared_memory_flag(self) -> bool | None:
        """``triton_shared_memory`` as :class:`~fakescope.client.triton.DetectorClient` takes it."""
        return SHARED_MEMORY_CHOICES[self.triton_shared_memory]

    def replace(self, **changes: object) -> Settings:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``FAKESCOPE_WEB_<FIELD>`` variables, then ``overrides``.

        Booleans accept ``1/0/true/false/yes/no``; ``max_side``, ``admin_token``,
        ``webhook_secret`` and ``trust_anchors_path`` accept an empty value for ``None``.

        Raises:
            SettingsError: a variable cannot be parsed or is out of range.

        """
        env = os.environ if environ is None else environ
        names = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in names)
        if unknown:  # most likely a misspelt setting, which would otherwise do nothing
            logger.warning("ignoring unknown settings: %s", ", ".join(unknown))
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f.name, str(f.type), raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _parse(name: str, type_name: str, raw: str) -> object:
    """Parse one environment value according to the field's annotation."""
    var = ENV_PREFIX + name.upper()
    text = raw.strip()
    try:
        if type_name == "bool":
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if type_name == "int":
            return int(text)
        if type_name == "int | None":
            return int(text) if text else None
        if type_name == "float":
            return float(text)
        if type_name == "Path":
            if not text:  # Path("") is the working directory: say so instead
                raise ValueError("expected a folder, got an empty value")
            return Path(text)
        if type_name == "Path | None":
            return Path(text) if text else None
        if type_name == "str | None":
            return text or None
    except ValueError as exc:
        raise SettingsError(f"{var}={raw!r}: {exc}") from None
    return text
