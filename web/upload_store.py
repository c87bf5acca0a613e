"""Where complete uploads wait for their analysis: a local folder, or S3 shared by many machines.

An upload is received into ``tmp_dir`` on the web replica that took it
(:mod:`.uploads`), probed there, then handed to the store, which returns a reference: the file's
path, or the object's ``s3://`` URL. The reference is what the job row keeps (``video_path``),
so a job worker on any machine finds the video: from S3 it downloads it into its own
``tmp_dir`` for decoding (``<random>.download<suffix>``) and removes that copy afterwards (one
left by a process that died meanwhile goes with the job runner's housekeeping). Deleting after
the analysis (or at the end of retention) deletes the reference, object or file.

``FAKESCOPE_WEB_UPLOAD_URL`` chooses: empty (the default) is ``data_dir/uploads`` on this
machine; ``s3://HOST:PORT/BUCKET/PREFIX`` is S3, with the credentials of
:mod:`fakescope.storage`. A reference is read according to its own kind, whatever the store,
so jobs queued before the setting changed are still analysed and deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from fakescope.storage import S3Location, S3Storage, StorageError, is_s3_url, parse_s3_url

from .settings import Settings, SettingsError

__all__ = [
    "DOWNLOAD_GLOB",
    "LocalUploadStore",
    "S3UploadStore",
    "UploadStore",
    "VideoMissingError",
    "upload_store",
]

logger = logging.getLogger(__name__)

#: In the name of every download of an S3 video, before its suffix (which decoders may read).
DOWNLOAD_MARK: Final = ".download"
#: Matches the downloads in ``tmp_dir`` (and nothing else the service puts there).
DOWNLOAD_GLOB: Final = f"*{DOWNLOAD_MARK}*"


class VideoMissingError(LookupError):
    """The video of a reference is no longer stored (deleted, or lost with its machine)."""


class UploadStore:
    """Stores complete uploads and reads, copies and deletes them by reference.

    Subclasses decide where :meth:`put` puts a new upload; every store reads both kinds of
    reference (a local path, an ``s3://`` URL).
    """

    def __init__(self, tmp_dir: Path) -> None:
        """``tmp_dir``: where S3 videos are downloaded for decoding (the uploads' temp folder)."""
        self.tmp_dir = tmp_dir
        self._buckets: dict[tuple[str | None, str], S3Storage] = {}

    def put(self, source: Path, name: str) -> str:
        """Move the complete upload ``source`` into the store as ``name``; return its reference."""
        raise NotImplementedError

    @contextlib.contextmanager
    def local_copy(self, ref: str) -> Iterator[Path]:
        """Yield a local file of the video ``ref`` (an S3 object is downloaded, then removed).

        Raises:
            VideoMissingError: the video is no longer stored.
            StorageError: S3 did not answer or refused.

        """
        if not is_s3_url(ref):
            if not Path(ref).is_file():
                raise VideoMissingError(ref)
            yield Path(ref)
            return
        storage, key = self._object(ref)
        if not storage.exists(key):
            raise VideoMissingError(ref)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        copy = self.tmp_dir / f"{secrets.token_hex(8)}{DOWNLOAD_MARK}{Path(key).suffix}"
        try:
            storage.download(key, copy)
            yield copy
        finally:
            copy.unlink(missing_ok=True)

    def delete(self, ref: str) -> None:
        """Delete the video ``ref`` (already gone is no error).

        Raises:
            StorageError: S3 did not answer or refused.

        """
        if is_s3_url(ref):
            storage, key = self._object(ref)
            storage.delete([key])
            return
        Path(ref).unlink(missing_ok=True)

    def _object(self, ref: str) -> tuple[S3Storage, str]:
        """Return the bucket's storage (one client per bucket) and the object's key."""
        location = parse_s3_url(ref)
        bucket = (location.endpoint, location.bucket)
        if bucket not in self._buckets:
            self._buckets[bucket] = S3Storage(S3Location(location.endpoint, location.bucket))
        return self._buckets[bucket], location.prefix


class LocalUploadStore(UploadStore):
    """Uploads in ``upload_dir`` on this machine (one web service with its workers)."""

    def __init__(self, upload_dir: Path, tmp_dir: Path) -> None:
        """Store into ``upload_dir`` (created)."""
        super().__init__(tmp_dir)
        self.upload_dir = upload_dir
        upload_dir.mkdir(parents=True, exist_ok=True)

    def put(self, source: Path, name: str) -> str:
        """Rename ``source`` into the folder (atomic on one filesystem); return its path."""
        destination = self.upload_dir / name
        os.replace(source, destination)
        return str(destination)


class S3UploadStore(UploadStore):
    """Uploads under an S3 prefix, shared by web replicas and job workers on other machines."""

    def __init__(self, location: S3Location, tmp_dir: Path) -> None:
        """Store under ``location``; its bucket must exist (checked here, at start-up).

        Raises:
            StorageError: no credentials, endpoint unreachable, credentials refused, no bucket.

        """
        super().__init__(tmp_dir)
        self.location = location
        self.storage = S3Storage(location)
        self.storage.check_bucket()
        self._buckets[(location.endpoint, location.bucket)] = S3Storage(
            S3Location(location.endpoint, location.bucket), client=self.storage.client
        )

    def put(self, source: Path, name: str) -> str:
        """Upload ``source`` as ``name`` (visible only once complete), remove it; return the URL."""
        self.storage.upload(source, name)
        source.unlink(missing_ok=True)
        return self.location.child(name).url


def upload_store(settings: Settings) -> UploadStore:
    """Return the store ``settings.upload_url`` names (empty: ``settings.upload_dir``).

    Raises:
        SettingsError: the S3 store cannot be used (the message names the variable and why).

    """
    if not settings.upload_url:
        return LocalUploadStore(settings.upload_dir, settings.tmp_dir)
    try:
        store = S3UploadStore(parse_s3_url(settings.upload_url), settings.tmp_dir)
    except StorageError as exc:
        raise SettingsError(f"FAKESCOPE_WEB_UPLOAD_URL={settings.upload_url}: {exc}") from exc
    logger.info("uploads are stored in %s", store.location)
    return store
