"""Classifier versions in a model repository on S3: ``fakescope export`` and ``rollback`` there.

Both run the local code of :mod:`fakescope.export.versions` on a small local copy of the
repository, then write the changes back in an order that keeps every reader consistent. A
reader is a Triton replica starting up (it reads ``face_classifier/config.pbtxt`` and the
version folders) or ``face_detector`` on it (which reads the version the config pins).

What makes a version served is one object: ``face_classifier/config.pbtxt``, whose
``version_policy`` pins it (:func:`fakescope.export.repository.classifier_config`). S3 has no
rename, but a single PUT is atomic: a reader sees the old object or the new one. So:

* **export** uploads the new version's folder completely (``N/model.onnx``, ``N/MODEL_CARD.md``;
  checked by listing: every file there, every size right) while the config still pins the old
  version, and only then the config that pins ``N`` (then the served card). A replica starting
  at any moment loads the old version with its config, or the new one with its config. When
  publishing fails before the config pins ``N``, the objects of ``N/`` uploaded so far are
  deleted again: nothing of an unpublished version stays.
* **rollback** starts from the version the config pins (the served one, found by the one
  resolver, :func:`~fakescope.serving.model_config.served_version_dir`, on a local stand-in of
  the listing), first uploads the config that pins the highest earlier version with a
  ``model.onnx`` (the switch), then moves the served version's objects to the retired prefix
  (copy, then delete). A replica that read the old config an instant before the move may find
  its files gone and fail to load; it exits and, restarted, reads the new config.

One publisher at a time: two exports at once would both number their version ``N``; the second
is refused if it finds ``N`` already on S3 when it starts uploading.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from fakescope import contract
from fakescope.export.versions import (
    CARD,
    export_new_version,
    rollback_target,
    write_served_files,
)
from fakescope.serving.model_config import parse_pinned_version, served_version_dir
from fakescope.storage import S3Location, S3Storage, StorageError

__all__ = ["export_to_s3", "rollback_on_s3", "s3_versions"]

logger = logging.getLogger(__name__)

CONFIG = "config.pbtxt"
MODEL_FILE = "model.onnx"
#: Where retired versions go when no place is given: beside the repository, like the local
#: default (``<repository>/../.fakescope/retired``).
RETIRED = ".fakescope/retired"


def s3_versions(listing: dict[str, int]) -> list[int]:
    """Numbered ``face_classifier`` versions in a repository listing, ascending."""
    prefix = contract.CLASSIFIER_MODEL + "/"
    found = set()
    for key in listing:
        if key.startswith(prefix):
            part = key[len(prefix) :].split("/", 1)
            if len(part) == 2 and part[0].isdigit():
                found.add(int(part[0]))
    return sorted(found)


def _mirror_for_export(storage: S3Storage, listing: dict[str, int], local: Path) -> None:
    """Copy what the export reads: everything but the ONNX files of existing classifier versions.

    The framing calibration runs the detector's models; the classifier's old versions are
    only listed (their folders are created, with their cards).
    """
    prefix = contract.CLASSIFIER_MODEL + "/"
    for key in sorted(listing):
        parts = key.split("/")
        old_weights = key.startswith(prefix) and len(parts) == 3 and parts[1].isdigit()
        if old_weights and parts[2] == MODEL_FILE:
            (local / parts[0] / parts[1]).mkdir(parents=True, exist_ok=True)
            continue
        storage.download(key, local / key)


def _files_under(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()
    }


def export_to_s3(
    location: S3Location, checkpoint_path: Path, framing_videos: Sequence[Path] = ()
) -> int:
    """Export a checkpoint as the next ``face_classifier`` version of the repository on S3.

    Returns the new version. Raises what :func:`export_new_version` raises (nothing is
    uploaded then), and :class:`StorageError` for S3 problems or a version that appeared on
    S3 meanwhile (what was uploaded of the version is deleted again unless the config came to
    pin it; the message says so if that fails too).
    """
    storage = S3Storage(location)
    storage.check_bucket()
    listing = storage.listing()
    if not any(k.startswith(contract.CLASSIFIER_MODEL + "/") for k in listing):
        raise StorageError(f"no {contract.CLASSIFIER_MODEL} in the model repository {location}")
    with tempfile.TemporaryDirectory(prefix="fakescope-export-") as tmp:
        local = Path(tmp) / "repository"
        _mirror_for_export(storage, listing, local)
        before = _files_under(local / contract.CLASSIFIER_MODEL)
        version = export_new_version(local, checkpoint_path, framing_videos)
        after = _files_under(local / contract.CLASSIFIER_MODEL)
        _publish(storage, local / contract.CLASSIFIER_MODEL, version, before, after)
    logger.info("published %s version %d to %s", contract.CLASSIFIER_MODEL, version, location)
    return version


def _publish(
    storage: S3Storage,
    folder: Path,
    version: int,
    before: dict[str, int],
    after: dict[str, int],
) -> None:
    """Upload a new version: its folder (checked), kept cards, then the config, then the card.

    When anything fails before the config pins ``version``, its objects are deleted again.
    """
    classifier = storage.at(contract.CLASSIFIER_MODEL)
    new_folder = f"{version}/"
    if any(k.startswith(new_folder) for k in classifier.listing()):
        raise StorageError(
            f"{contract.CLASSIFIER_MODEL} version {version} appeared in {storage.location} "
            "meanwhile (another export?); nothing was published"
        )
    version_files = sorted(k for k in after if k.startswith(new_folder))
    try:
        for relative in version_files:
            classifier.upload(folder / relative, relative)
        uploaded = classifier.at(str(version)).listing()
        expected = {k[len(new_folder) :]: after[k] for k in version_files}
        if uploaded != expected:
            raise StorageError(
                f"version {version} in {classifier.location} is not what was uploaded "
                f"({sorted(uploaded.items())} != {sorted(expected.items())}); the served config "
                "was left as it was"
            )
        # A card kept in the previously served version's folder (for its rollback); not served.
        for relative in sorted(set(after) - set(before) - set(version_files) - {CONFIG, CARD}):
            classifier.upload(folder / relative, relative)
        classifier.upload(folder / CONFIG, CONFIG)  # the switch: one PUT
    except BaseException as failure:
        _unpublish(classifier, version, version_files, failure)
        raise
    classifier.upload(folder / CARD, CARD)


def _unpublish(
    classifier: S3Storage, version: int, files: list[str], failure: BaseException
) -> None:
    """Delete the uploaded ``files`` of ``version`` after ``failure``, unless it is served.

    A failed config PUT may still have been applied (the answer lost, not the request), so the
    config is read back first: a version it pins stays. Raises :class:`StorageError` saying
    what is left when the config cannot be read or the files cannot be deleted.
    """
    try:
        if parse_pinned_version(classifier.read_bytes(CONFIG).decode()) == version:
            return  # the switch went through: the version is published, complete
        classifier.delete(files)
    except (StorageError, ValueError, UnicodeDecodeError) as cleanup:
        raise StorageError(
            f"{failure}; and what was uploaded of version {version} could not be checked or "
            f"deleted ({cleanup}): delete {classifier.location.child(str(version))}/ unless "
            f"{CONFIG} pins it"
        ) from failure
    logger.info("publishing version %d failed; its uploaded files were deleted", version)


def rollback_on_s3(location: S3Location, retired: S3Location | None = None) -> int:
    """Retire the served classifier version of the repository on S3; return the one now served.

    The config then pins the highest earlier version that has a ``model.onnx``
    (:func:`~fakescope.export.versions.rollback_target`); versions above the served one are left
    alone. ``retired`` defaults to ``.fakescope/retired`` beside the repository.

    Raises:
        ValueError: no earlier version to roll back to, or a config that pins several.
        FileNotFoundError: the config pins a version that has no objects.
        StorageError: S3 problems.

    """
    storage = S3Storage(location)
    storage.check_bucket()
    classifier = storage.at(contract.CLASSIFIER_MODEL)
    listing = classifier.listing()
    versions = s3_versions({f"{contract.CLASSIFIER_MODEL}/{k}": v for k, v in listing.items()})
    if len(versions) < 2:
        raise ValueError(
            f"cannot roll back: {contract.CLASSIFIER_MODEL} has {len(versions)} version(s) in "
            f"{location}"
        )
    with tempfile.TemporaryDirectory(prefix="fakescope-rollback-") as tmp:
        folder = Path(tmp) / contract.CLASSIFIER_MODEL
        served = _served_on_s3(classifier, listing, versions, folder)
        previous = rollback_target(
            versions, served, lambda v: f"{v}/{MODEL_FILE}" in listing, location
        )
        for name in (MODEL_FILE, CARD):
            if f"{previous}/{name}" in listing:
                classifier.download(f"{previous}/{name}", folder / str(previous) / name)
        write_served_files(folder, previous)
        classifier.upload(folder / CONFIG, CONFIG)  # the switch: one PUT
        if (folder / CARD).is_file():
            classifier.upload(folder / CARD, CARD)
    place = retired or location.parent.child(RETIRED)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = S3Storage(
        place.child(f"{contract.CLASSIFIER_MODEL}/{served}-{stamp}"), client=storage.client
    )
    moved = sorted(k for k in listing if k.startswith(f"{served}/"))
    for relative in moved:
        classifier.copy(relative, target, relative[len(f"{served}/") :])
    classifier.delete(moved)
    logger.info(
        "rolled back %s from %d to %d on %s (version %d moved to %s)",
        contract.CLASSIFIER_MODEL,
        served,
        previous,
        location,
        served,
        target.location,
    )
    return previous


def _served_on_s3(
    classifier: S3Storage, listing: dict[str, int], versions: list[int], folder: Path
) -> int:
    """Return the version served on S3, by the local resolver on a stand-in of ``listing``.

    ``folder`` receives an empty folder per version and the config: all that
    :func:`~fakescope.serving.model_config.served_version_dir` reads.
    """
    for version in versions:
        (folder / str(version)).mkdir(parents=True)
    if CONFIG in listing:
        classifier.download(CONFIG, folder / CONFIG)
    try:
        return int(served_version_dir(folder).name)
    except (FileNotFoundError, ValueError) as exc:
        # the resolver names the stand-in's paths: name the objects on S3 instead
        text = str(exc).replace(str(folder), classifier.location.url)
        raise type(exc)(text) from exc
