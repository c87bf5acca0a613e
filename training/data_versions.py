"""Dataset versions: ``v0.1``, ``v0.2``, … with parents, content hashes and ClearML Datasets.

``fakescope dataset version DIR`` hashes every listed video and ``metadata.json`` into a
*manifest*; its ``content_hash`` (SHA-256 over the sorted ``name:sha256`` lines) identifies the
data. A new version is registered only when the content differs from the latest version of the
same dataset name; its parent is that latest version. Manifests are kept locally, always, in
``<registry>/<name>/v0.N.json`` (the registry defaults to ``.fakescope/datasets``), so training
can record which version it saw (:func:`find_version`) with or without a server.

ClearML: each version is also a ``clearml.Dataset`` (project ``FakeScope/datasets``) holding the
files. With a server (standard ``CLEARML_*`` variables) it is uploaded and finalized with its
parent. Offline, ClearML 2.1.12 can create the dataset and record the files' hashes in an
offline session, but it cannot look up a parent (``Dataset.get`` fails offline) and it
**cannot finalize** ("Cannot finalize dataset in offline mode"); the manifest records that
honestly (``clearml.status``) and the parent link lives in the local manifest only.

Offline, ``Dataset.create`` makes its task with ``Task.init``; FakeScope has that task store the
code as a standalone script (no ``git``) and detect it before ``Task.init`` returns
(:func:`fakescope.training.tracking._detect_script_inline`). ClearML's default, a background
thread, left the script section ``None`` when ``add_files`` appended to it, on a busy machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakescope.files import write_text_atomically
from fakescope.training.dataset import METADATA_FILE, Dataset, content_sha256, file_sha256
from fakescope.training.face_crops import METADATA_CSV, FaceCropSet, image_bytes

__all__ = [
    "DEFAULT_REGISTRY",
    "VersionRecord",
    "build_manifest",
    "find_version",
    "register_version",
]

logger = logging.getLogger(__name__)

DEFAULT_REGISTRY = Path(".fakescope") / "datasets"


@dataclass(frozen=True)
class VersionRecord:
    """A registered dataset version."""

    name: str
    version: str  #: ``v0.N``
    parent: str | None
    content_hash: str
    path: Path  #: the local manifest file
    created: bool  #: False when the content matched the latest version (nothing new)
    clearml: dict[str, Any]


def build_manifest(
    dataset: Dataset | FaceCropSet, hashes: dict[str, str] | None = None
) -> dict[str, Any]:
    """Content hashes of every listed video (or face image) and of the metadata file."""
    if isinstance(dataset, FaceCropSet):
        return _face_crop_manifest(dataset)
    files = {}
    for entry in dataset.entries:
        sha = (hashes or {}).get(entry.name) or file_sha256(dataset.path(entry))
        files[entry.name] = {
            "sha256": sha,
            "label": entry.label,
            "original": entry.original,
            "size": dataset.path(entry).stat().st_size,
        }
    files[METADATA_FILE] = {"sha256": file_sha256(dataset.root / METADATA_FILE)}
    return {
        "content_hash": content_sha256({k: v["sha256"] for k, v in files.items()}),
        "counts": dataset.counts(),
        "files": files,
    }


def _face_crop_manifest(dataset: FaceCropSet) -> dict[str, Any]:
    """Build the manifest of a face-crop folder: each face image by its ``videoname``."""
    by_name = dataset.by_name()
    files: dict[str, dict[str, Any]] = {}
    for name, data in image_bytes(dataset, [e.name for e in dataset.entries]):
        entry = by_name[name]
        files[name] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "label": entry.label,
            "original": entry.original,
            "size": len(data),
        }
    files[METADATA_CSV] = {"sha256": file_sha256(dataset.root / METADATA_CSV)}
    return {
        "content_hash": content_sha256({k: v["sha256"] for k, v in files.items()}),
        "counts": dataset.counts(),
        "files": files,
    }


def _stored_files(dataset: Dataset | FaceCropSet) -> list[tuple[Path, str]]:
    """``(file, folder in the ClearML dataset)`` of everything a version stores."""
    if isinstance(dataset, FaceCropSet):
        files = {dataset.root / METADATA_CSV} | {
            ref.shard if ref.shard else dataset.root / ref.name for ref in dataset.images.values()
        }
        return [(path, ".") for path in sorted(files)]
    return [(dataset.root / METADATA_FILE, ".")] + [
        (dataset.path(entry), str(Path(entry.name).parent)) for entry in dataset.entries
    ]


def _versions(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for path in folder.glob("v0.*.json"):
        minor = path.stem.split(".", 1)[1]
        if minor.isdigit():
            found.append((int(minor), path))
    return sorted(found)


def find_version(content_hash: str, registry: Path = DEFAULT_REGISTRY) -> str | None:
    """``name@v0.N`` of the registered version with this content, or ``None``."""
    if not registry.is_dir():
        return None
    for folder in sorted(p for p in registry.iterdir() if p.is_dir()):
        for _, path in _versions(folder):
            if json.loads(path.read_text()).get("content_hash") == content_hash:
                return f"{folder.name}@{path.stem}"
    return None


def _clearml_dataset(
    dataset: Dataset | FaceCropSet, name: str, version: str, parent_id: str | None, offline: bool
) -> dict[str, Any]:
    """Create the ClearML Dataset of this version; say what could and could not be done."""
    from clearml import Dataset as ClearmlDataset
    from clearml import Task

    from fakescope.training.tracking import _detect_script_inline, _stdout_to_stderr

    Task.set_offline(offline)
    with _stdout_to_stderr():
        parents = [parent_id] if (parent_id and not offline) else None
        # Offline, Dataset.create calls Task.init (online: Task.create, which detects nothing).
        # Its script section, which add_files() appends to, must exist when it returns: store
        # the code as a standalone script (no git subprocess) and detect it inline, not in
        # ClearML's background thread (see _detect_script_inline for the race that thread lost).
        if offline:
            Task.force_store_standalone_script()
        with _detect_script_inline() if offline else contextlib.nullcontext():
            ds = ClearmlDataset.create(
                dataset_name=name,
                dataset_project="FakeScope/datasets",
                dataset_version=version.removeprefix("v"),
                parent_datasets=parents,
            )
        for path, folder in _stored_files(dataset):
            ds.add_files(str(path), dataset_path=folder)
        info: dict[str, Any] = {"id": ds.id, "offline": offline}
        if offline:
            folder = Path(Task.current_task().get_offline_mode_folder())
            Task.current_task().close()
            info["status"] = (
                "created offline, NOT finalized: ClearML cannot finalize (or link a parent to) "
                "a dataset in offline mode; the local manifest holds the parent and the hashes"
            )
            info["offline_session"] = str(folder.with_suffix(".zip"))
        else:
            ds.upload()
            ds.finalize()
            info["status"] = "uploaded and finalized"
    return info


def register_version(
    dataset: Dataset | FaceCropSet,
    *,
    name: str | None = None,
    registry: Path = DEFAULT_REGISTRY,
    use_clearml: bool = True,
    offline: bool | None = None,
) -> VersionRecord:
    """Register the dataset's current content as the next version (or return the same one)."""
    from fakescope.training.tracking import clearml_online

    name = name or dataset.root.resolve().name
    folder = registry / name
    manifest = build_manifest(dataset)
    existing = _versions(folder) if folder.is_dir() else []
    if existing:
        latest = json.loads(existing[-1][1].read_text())
        if latest["content_hash"] == manifest["content_hash"]:
            return VersionRecord(
                name,
                latest["version"],
                latest.get("parent"),
                latest["content_hash"],
                existing[-1][1],
                False,
                latest.get("clearml", {}),
            )
        parent: dict[str, Any] | None = latest
    else:
        parent = None
    version = f"v0.{(existing[-1][0] + 1) if existing else 1}"
    offline = (not clearml_online()) if offline is None else offline
    clearml_info: dict[str, Any] = {"status": "not used"}
    if use_clearml:
        parent_id = (parent or {}).get("clearml", {}).get("id")
        clearml_info = _clearml_dataset(dataset, name, version, parent_id, offline)
    record = {
        "name": name,
        "version": version,
        "parent": parent["version"] if parent else None,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": str(dataset.root.resolve()),
        **manifest,
        "clearml": clearml_info,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{version}.json"
    write_text_atomically(path, json.dumps(record, indent=1) + "\n")
    return VersionRecord(
        name, version, record["parent"], manifest["content_hash"], path, True, clearml_info
    )
