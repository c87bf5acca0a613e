"""S3-compatible object storage: addresses, credentials and the few operations FakeScope needs.

One module for every S3 user in the project (the model repository, ``fakescope export`` and
``rollback``, the web service's uploads), so that an address means the same thing everywhere:

* ``s3://HOST:PORT/BUCKET/PREFIX`` — an S3-compatible server over HTTP (SeaweedFS, MinIO,
  Ceph…), path-style requests. ``s3://https://HOST:PORT/BUCKET/PREFIX`` uses HTTPS.
* ``s3://BUCKET/PREFIX`` — Amazon S3 itself (its endpoint for the region).

These are the forms ``tritonserver --model-repository`` accepts, so one URL serves Triton and
the Python side alike. Credentials come from the environment only, as for Triton:
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN`` if set); the
seed's ``SERVICE_ACCOUNT_KEY_ID`` / ``SERVICE_ACCOUNT_SECRET`` are read when the ``AWS_*`` pair
is absent. The region is ``AWS_DEFAULT_REGION`` (or ``AWS_REGION``), else ``us-east-1``: a
request must be signed for some region, an S3-compatible server accepts any, and us-east-1 is
AWS's own default. :func:`s3_environment` hands the same values to a child process
(tritonserver), so both sides always use the same credentials.

boto3 is imported only when a client is made: a local-only install (e.g. the GPU image without
the ``server`` extra) imports this module without it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

__all__ = [
    "S3Credentials",
    "S3Location",
    "S3Storage",
    "StorageError",
    "is_s3_url",
    "parse_s3_url",
    "s3_credentials",
    "s3_environment",
]

logger = logging.getLogger(__name__)

SCHEME: Final = "s3://"
DEFAULT_REGION: Final = "us-east-1"
#: Credential variables, in order of preference: the AWS names, then the seed's aliases.
KEY_ID_VARIABLES: Final = ("AWS_ACCESS_KEY_ID", "SERVICE_ACCOUNT_KEY_ID")
SECRET_VARIABLES: Final = ("AWS_SECRET_ACCESS_KEY", "SERVICE_ACCOUNT_SECRET")
#: Bucket names as S3 accepts them (3-63 lowercase letters, digits, dots, hyphens).
_BUCKET: Final = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ENDPOINT: Final = re.compile(r"^(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")


class StorageError(RuntimeError):
    """An S3 address, credential or request problem; the message says which and what to do."""


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix on one S3 endpoint.

    Attributes:
        endpoint: ``http://host:port`` or ``https://host:port`` of an S3-compatible server;
            ``None`` for Amazon S3.
        bucket: the bucket name.
        prefix: the key prefix, without leading or trailing ``/`` (``""``: the bucket's root).

    """

    endpoint: str | None
    bucket: str
    prefix: str = ""

    @property
    def url(self) -> str:
        """The ``s3://`` URL of this location (the form tritonserver takes)."""
        if self.endpoint is None:
            host = ""
        elif self.endpoint.startswith("http://"):
            host = self.endpoint[len("http://") :] + "/"
        else:  # tritonserver's form for HTTPS: s3://https://host:port/bucket/path
            host = self.endpoint + "/"
        path = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        return f"{SCHEME}{host}{path}"

    def key(self, relative: str = "") -> str:
        """Return the object key of ``relative`` (a ``/``-separated path) under the prefix."""
        relative = relative.strip("/")
        if not self.prefix:
            return relative
        return f"{self.prefix}/{relative}" if relative else self.prefix

    def child(self, relative: str) -> S3Location:
        """Return the location of ``relative`` under this one."""
        return S3Location(self.endpoint, self.bucket, self.key(relative))

    @property
    def parent(self) -> S3Location:
        """The location one path component up (the bucket's root stays the root)."""
        parent = str(PurePosixPath(self.prefix).parent) if self.prefix else ""
        return S3Location(self.endpoint, self.bucket, "" if parent == "." else parent)

    def __str__(self) -> str:
        """Return the URL."""
        return self.url


def is_s3_url(text: str) -> bool:
    """Return True when ``text`` is meant as an S3 address (starts with ``s3://``)."""
    return text.strip().lower().startswith(SCHEME)


def parse_s3_url(text: str) -> S3Location:
    """Parse an ``s3://`` URL (the forms in the module docstring).

    Raises:
        StorageError: not an ``s3://`` URL, no bucket, a malformed ``host:port`` or a bucket
            name S3 would refuse (the message shows the accepted forms).

    """
    forms = (
        "s3://HOST:PORT/BUCKET/PREFIX, s3://https://HOST:PORT/BUCKET/PREFIX or s3://BUCKET/PREFIX"
    )
    raw = text.strip()
    if not is_s3_url(raw):
        raise StorageError(f"not an S3 URL: {text!r} (expected {forms})")
    rest = raw[len(SCHEME) :]
    scheme, explicit = "http", False
    for given in ("https://", "http://"):
        if rest.lower().startswith(given):
            scheme, rest, explicit = given[:-3], rest[len(given) :], True
            break
    parts = [p for p in rest.split("/") if p]
    endpoint: str | None = None
    if parts and ":" in parts[0]:
        match = _ENDPOINT.match(parts[0])
        if match is None or not 0 < int(match["port"]) < 65536:
            raise StorageError(f"bad host:port {parts[0]!r} in {text!r} (expected {forms})")
        endpoint = f"{scheme}://{parts.pop(0)}"
    elif explicit:
        raise StorageError(f"{text!r}: a {scheme}:// endpoint needs HOST:PORT (expected {forms})")
    if not parts:
        raise StorageError(f"no bucket in {text!r} (expected {forms})")
    bucket, prefix = parts[0], "/".join(parts[1:])
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise StorageError(
            f"bad bucket name {bucket!r} in {text!r}: S3 bucket names are 3-63 lowercase "
            "letters, digits, dots and hyphens"
        )
    return S3Location(endpoint, bucket, prefix)


@dataclass(frozen=True)
class S3Credentials:
    """Access key, secret, optional session token, and the region requests are signed for."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None
    region: str

    def __repr__(self) -> str:
        """Never show the secret."""
        return f"S3Credentials(access_key_id={self.access_key_id!r}, region={self.region!r})"


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def s3_credentials(environ: Mapping[str, str] | None = None) -> S3Credentials:
    """Read the S3 credentials from the environment (see the module docstring).

    Raises:
        StorageError: no access key or no secret (the message names the variables).

    """
    env = os.environ if environ is None else environ
    key = _first(env, KEY_ID_VARIABLES)
    secret = _first(env, SECRET_VARIABLES)
    if key is None or secret is None:
        missing = KEY_ID_VARIABLES if key is None else SECRET_VARIABLES
        raise StorageError(
            f"no S3 credentials: set {missing[0]} (or {missing[1]}) and its pair "
            f"({KEY_ID_VARIABLES[0]} + {SECRET_VARIABLES[0]})"
        )
    region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or DEFAULT_REGION
    token = env.get("AWS_SESSION_TOKEN") or None
    return S3Credentials(key[1], secret[1], token, region)


def s3_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the ``AWS_*`` variables a child process (tritonserver) needs for S3.

    The seed's aliases become the ``AWS_*`` names Triton reads, and the region is always set.

    Raises:
        StorageError: as :func:`s3_credentials`.

    """
    creds = s3_credentials(environ)
    env = {
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
        "AWS_DEFAULT_REGION": creds.region,
        "AWS_REGION": creds.region,
    }
    if creds.session_token:
        env["AWS_SESSION_TOKEN"] = creds.session_token
    return env


class S3Storage:
    """One boto3 client bound to one :class:`S3Location`; paths are relative to its prefix.

    Every botocore error becomes a :class:`StorageError` naming the location and the cause
    (unreachable endpoint, refused credentials, missing bucket, missing object).
    """

    def __init__(
        self, location: S3Location, environ: Mapping[str, str] | None = None, *, client: Any = None
    ) -> None:
        """Make the client (credentials from ``environ``, default the process environment)."""
        self.location = location
        self._client = client if client is not None else _make_client(location, environ)

    @property
    def client(self) -> Any:
        """The boto3 S3 client (shared, thread-safe for the calls made here)."""
        return self._client

    def at(self, relative: str) -> S3Storage:
        """Return a storage for ``relative`` under this location, sharing the client."""
        return S3Storage(self.location.child(relative), client=self._client)

    def check_bucket(self) -> None:
        """Raise :class:`StorageError` unless the bucket exists and the credentials may use it."""
        self._call("check the bucket", lambda c: c.head_bucket(Bucket=self.location.bucket))

    def listing(self) -> dict[str, int]:
        """Return ``{relative path: size}`` of every object under the location (recursive)."""
        prefix = self.location.key()
        prefix = prefix + "/" if prefix else ""

        def run(client: Any) -> dict[str, int]:
            found: dict[str, int] = {}
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    found[obj["Key"][len(prefix) :]] = int(obj["Size"])
            return found

        return self._call("list", run)  # type: ignore[no-any-return]

    def exists(self, relative: str) -> bool:
        """Return True when the object ``relative`` exists."""
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.location.bucket, Key=self.location.key(relative))
        except ClientError as exc:
            if _status(exc) == 404:
                return False
            raise self._error("look up", relative, exc) from exc
        except Exception as exc:
            raise self._error("look up", relative, exc) from exc
        return True

    def read_bytes(self, relative: str) -> bytes:
        """Return the content of the object ``relative``."""

        def run(client: Any) -> bytes:
            answer = client.get_object(Bucket=self.location.bucket, Key=self.location.key(relative))
            return bytes(answer["Body"].read())

        return self._call("read", run, relative)  # type: ignore[no-any-return]

    def download(self, relative: str, destination: Path) -> Path:
        """Download the object ``relative`` to ``destination`` (folders created); return it.

        The file is written beside ``destination`` and renamed into place, so a reader never
        sees a partial file.
        """
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".part")
        key = self.location.key(relative)
        try:
            self._call(
                "download",
                lambda c: c.download_file(self.location.bucket, key, str(partial)),
                relative,
            )
            partial.replace(destination)
        finally:
            partial.unlink(missing_ok=True)
        return destination

    def upload(self, source: Path, relative: str) -> None:
        """Upload the file ``source`` as the object ``relative``.

        An S3 object becomes visible only once complete (multipart uploads too), so readers
        see the old object or the new one, never a part.
        """
        key = self.location.key(relative)
        self._call(
            "upload", lambda c: c.upload_file(str(source), self.location.bucket, key), relative
        )

    def delete(self, relatives: list[str]) -> None:
        """Delete the objects ``relatives`` (missing ones are no error)."""
        for start in range(0, len(relatives), 1000):  # DeleteObjects takes at most 1000 keys
            chunk = [{"Key": self.location.key(r)} for r in relatives[start : start + 1000]]

            def run(client: Any, objects: list[dict[str, str]] = chunk) -> None:
                answer = client.delete_objects(
                    Bucket=self.location.bucket, Delete={"Objects": objects, "Quiet": True}
                )
                if answer.get("Errors"):
                    first = answer["Errors"][0]
                    raise StorageError(
                        f"S3 refused to delete {first.get('Key')} in {self.location}: "
                        f"{first.get('Code')} {first.get('Message', '')}"
                    )

            self._call("delete", run)

    def copy(self, relative: str, target: S3Storage, target_relative: str) -> None:
        """Copy the object ``relative`` to ``target_relative`` under ``target`` (server-side)."""
        source = {"Bucket": self.location.bucket, "Key": self.location.key(relative)}
        key = target.location.key(target_relative)
        self._call(
            "copy",
            lambda c: c.copy(source, target.location.bucket, key),
            relative,
        )

    # --- errors ------------------------------------------------------------------------------
    def _call(self, what: str, fn: Any, relative: str = "") -> Any:
        try:
            return fn(self._client)
        except StorageError:
            raise
        except Exception as exc:
            raise self._error(what, relative, exc) from exc

    def _error(self, what: str, relative: str, exc: Exception) -> StorageError:
        where = self.location.child(relative).url if relative else self.location.url
        return StorageError(f"cannot {what} {where}: {_explain(exc, self.location)}")


def _status(exc: Any) -> int | None:
    status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _explain(exc: Exception, location: S3Location) -> str:
    """One line saying what went wrong, in the user's terms."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )

    if isinstance(exc, EndpointConnectionError):
        return f"the S3 endpoint {location.endpoint or 'of AWS'} does not answer"
    if isinstance(exc, NoCredentialsError):
        return "no credentials"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = _status(exc)
        if code == "NoSuchBucket" or (status == 404 and exc.operation_name == "HeadBucket"):
            return f"bucket {location.bucket!r} does not exist"
        if code == "NoSuchKey" or status == 404:
            return "no such object"
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
            return f"the credentials were refused ({code or status})"
        return f"{code or status}: {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _make_client(location: S3Location, environ: Mapping[str, str] | None) -> Any:
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError
    except ModuleNotFoundError as exc:
        raise StorageError(
            "S3 storage needs boto3: install the server extra (pip install 'fakescope[server]')"
        ) from exc
    creds = s3_credentials(environ)
    # Path-style requests: S3-compatible servers on HOST:PORT have no per-bucket host names.
    # Short connect timeout and few retries: an unreachable endpoint fails in seconds.
    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path" if location.endpoint else "auto"},
    )
    try:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=location.endpoint,
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            aws_session_token=creds.session_token,
            region_name=creds.region,
            config=config,
        )
    except (BotoCoreError, ValueError) as exc:
        # The environment's own settings: AWS_PROFILE naming no profile, a malformed region
        raise StorageError(
            f"cannot set up an S3 client for {location.url}: {_explain(exc, location)}"
        ) from None
