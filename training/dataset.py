"""DFDC-format datasets: validate a folder of videos + ``metadata.json``, and split it.

Format (the DFDC training parts): a folder with video files and ``metadata.json``::

    {"a.mp4": {"label": "FAKE", "original": "b.mp4", "split": "train"},
     "b.mp4": {"label": "REAL"}}

``label`` is ``FAKE`` or ``REAL``; ``original`` (FAKE only) names the real video the fake was
made from — it may be absent from the folder (DFDC parts are cut that way) and is then only a
grouping key; ``split`` is optional and free text (DFDC writes ``"train"`` everywhere).

:func:`load_dataset` validates everything **before any work is done** and raises one
:class:`DatasetError` listing every offender: unreadable or malformed ``metadata.json``,
duplicate keys, unknown labels, names that escape the folder (``../``, absolute paths,
symlinks pointing outside), listed files that are missing, video files that are not listed,
unreadable videos, a REAL video with an ``original``, a fake whose listed original is itself
FAKE, and metadata ``split`` values that put a fake and its original on different sides.

:func:`assign_splits` puts every *group* (a real video together with every fake made from it)
into exactly one of train / val / test, so no face identity leaks across splits; the assignment
is a deterministic function of the seed and the metadata, and is recorded (``Splits.to_json``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final

import numpy as np

__all__ = [
    "LABELS",
    "METADATA_FILE",
    "VIDEO_EXTENSIONS",
    "Dataset",
    "DatasetError",
    "Problem",
    "Splits",
    "VideoEntry",
    "assign_splits",
    "file_sha256",
    "load_dataset",
]

METADATA_FILE: Final = "metadata.json"
LABELS: Final = ("REAL", "FAKE")
#: Files with these suffixes are videos: each must be listed in ``metadata.json``.
VIDEO_EXTENSIONS: Final = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg"})
SPLITS: Final = ("train", "val", "test")


@dataclass(frozen=True)
class Problem:
    """One offender: the entry (or file) and what is wrong with it."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


class DatasetError(ValueError):
    """A dataset failed validation; ``problems`` lists every offender."""

    def __init__(self, root: Path, problems: list[Problem]):
        self.root = root
        self.problems = problems
        if len(problems) == 1:  # one line, as every other CLI error
            super().__init__(f"{root}: invalid DFDC dataset: {problems[0]}")
            return
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{root}: invalid DFDC dataset, {len(problems)} problems:\n{lines}")


@dataclass(frozen=True)
class VideoEntry:
    """One listed video."""

    name: str  #: relative POSIX path inside the dataset folder (the metadata key)
    label: str  #: ``REAL`` or ``FAKE``
    original: str | None = None  #: for fakes: the real video it was made from
    split: str | None = None  #: the metadata's own ``split`` value, if any

    @property
    def is_fake(self) -> bool:
        """Whether the video is labelled FAKE."""
        return self.label == "FAKE"

    @property
    def group(self) -> str:
        """The split group: a fake goes with its original, a real video with itself."""
        return self.original if self.original else self.name


@dataclass(frozen=True)
class Dataset:
    """A validated DFDC-format dataset."""

    root: Path
    entries: tuple[VideoEntry, ...]

    def path(self, entry: VideoEntry) -> Path:
        """Absolute path of ``entry``'s video."""
        return self.root / entry.name

    def by_name(self) -> dict[str, VideoEntry]:
        """Entries keyed by name."""
        return {e.name: e for e in self.entries}

    def counts(self) -> dict[str, int]:
        """How many REAL and FAKE videos."""
        return {label: sum(e.label == label for e in self.entries) for label in LABELS}


@dataclass(frozen=True)
class Splits:
    """A recorded, deterministic train/val/test assignment of a dataset's videos."""

    seed: int
    val_fraction: float
    test_fraction: float
    assignment: Mapping[str, str] = field(default_factory=dict)  #: video name -> split

    def names(self, split: str) -> list[str]:
        """Sorted names of the videos in ``split``."""
        return sorted(n for n, s in self.assignment.items() if s == split)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-serialisable record of the assignment."""
        return {
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "splits": {s: self.names(s) for s in SPLITS},
        }


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --- validation -----------------------------------------------------------------------------


def content_sha256(file_hashes: Mapping[str, str]) -> str:
    """Return the content hash of a dataset: SHA-256 of its sorted ``name:sha256`` lines.

    ``file_hashes`` maps each listed item (a video, a face image by its ``videoname``, the
    metadata file) to the SHA-256 of its bytes; the dataset versions and the training runs
    both identify data by this one hash.
    """
    lines = "\n".join(f"{name}:{sha}" for name, sha in sorted(file_hashes.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def _pairs_keeping_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that records duplicate keys instead of silently keeping the last."""
    out: dict[str, Any] = {}
    duplicates: list[str] = []
    for key, value in pairs:
        if key in out:
            duplicates.append(key)
        out[key] = value
    if duplicates:
        out["\0duplicates"] = duplicates
    return out


def _unsafe_name(root: Path, name: str) -> str | None:
    """Why ``name`` may not be used as a path inside ``root`` (``None`` when it is safe)."""
    if not name or "\0" in name:
        return "empty or invalid file name"
    pure = PurePosixPath(name)
    if pure.is_absolute() or Path(name).is_absolute() or name.startswith("\\"):
        return "absolute path (names must be relative to the dataset folder)"
    if ".." in pure.parts or "\\" in name:
        return "path escapes the dataset folder ('..' or backslash)"
    resolved = (root / name).resolve()
    if not resolved.is_relative_to(root.resolve()):
        return f"symlink points outside the dataset folder (to {resolved})"
    return None


def _video_readable(path: Path) -> str | None:
    """Why ``path`` is not a readable video (``None`` when one frame decodes)."""
    import cv2

    if path.stat().st_size == 0:
        return "unreadable video: empty file (0 bytes)"
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except OSError as exc:
        return f"unreadable video: {exc.strerror}"
    previous = cv2.setLogLevel(0)
    try:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        try:
            if not cap.isOpened():
                return "unreadable video: not a video, unsupported codec or truncated file"
            ok, _ = cap.read()
            if not ok:
                return "unreadable video: no frame decodes"
        finally:
            cap.release()
    finally:
        cv2.setLogLevel(previous)
    return None


def _video_files(root: Path) -> list[str]:
    """Relative POSIX names of the video files under ``root`` (hidden folders skipped)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                found.append((Path(folder) / name).relative_to(root).as_posix())
    return sorted(found)


def _parse_entry(name: str, raw: Any, problems: list[Problem]) -> VideoEntry | None:
    if not isinstance(raw, dict):
        problems.append(Problem(name, f"entry must be an object, got {type(raw).__name__}"))
        return None
    label = raw.get("label")
    if label not in LABELS:
        problems.append(Problem(name, f"unknown label {label!r} (expected FAKE or REAL)"))
        return None
    original = raw.get("original")
    if original is not None and not isinstance(original, str):
        problems.append(Problem(name, f"'original' must be a file name, got {original!r}"))
        return None
    split = raw.get("split")
    if split is not None and not isinstance(split, str):
        problems.append(Problem(name, f"'split' must be a string, got {split!r}"))
        return None
    if label == "REAL" and original:
        problems.append(Problem(name, f"REAL video names an original ({original!r})"))
        return None
    return VideoEntry(name, label, original or None, split)


def load_dataset(root: Path, *, check_videos: bool = True) -> Dataset:
    """Validate the DFDC-format dataset in ``root`` and return it.

    Reads nothing but ``metadata.json`` and (when ``check_videos``) the first frame of each
    listed video; writes nothing.

    Raises:
        DatasetError: listing every offender (see the module docstring).

    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, [Problem(str(root), "not a directory")])
    meta_path = root / METADATA_FILE
    if not meta_path.is_file():
        raise DatasetError(root, [Problem(METADATA_FILE, "missing (every DFDC folder has one)")])
    try:
        raw = json.loads(meta_path.read_text(), object_pairs_hook=_pairs_keeping_duplicates)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(root, [Problem(METADATA_FILE, f"not valid JSON: {exc}")]) from exc
    if not isinstance(raw, dict):
        raise DatasetError(root, [Problem(METADATA_FILE, "must be a JSON object {name: entry}")])

    problems: list[Problem] = []
    for name in raw.pop("\0duplicates", []):
        problems.append(Problem(name, "duplicate key in metadata.json"))
    entries: list[VideoEntry] = []
    for name, value in raw.items():
        if isinstance(value, dict):
            value.pop("\0duplicates", None)
        why = _unsafe_name(root, name)
        if why:
            problems.append(Problem(name, why))
            continue
        entry = _parse_entry(name, value, problems)
        if entry is None:
            continue
        if entry.original is not None:
            why = _unsafe_name(root, entry.original)
            if why:
                problems.append(Problem(name, f"original {entry.original!r}: {why}"))
                continue
        path = root / name
        if not path.is_file():
            problems.append(Problem(name, "listed in metadata.json but the file is missing"))
            continue
        if check_videos:
            why = _video_readable(path)
            if why:
                problems.append(Problem(name, why))
                continue
        entries.append(entry)

    listed = set(raw)
    for name in _video_files(root):
        if name not in listed:
            problems.append(Problem(name, "video file not listed in metadata.json"))

    by_name = {e.name: e for e in entries}
    for entry in entries:
        original = by_name.get(entry.original) if entry.original else None
        if original is None:
            continue
        if original.is_fake:
            problems.append(Problem(entry.name, f"original {original.name!r} is labelled FAKE"))
        elif entry.split and original.split and entry.split != original.split:
            problems.append(
                Problem(
                    entry.name,
                    f"split leak: metadata puts it in {entry.split!r} but its original "
                    f"{original.name!r} in {original.split!r}",
                )
            )
    if problems:
        raise DatasetError(root, problems)
    return Dataset(root, tuple(sorted(entries, key=lambda e: e.name)))


# --- splits ---------------------------------------------------------------------------------


def _allocate(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """How many of ``n`` groups go to val and test (at least one each when ``n >= 3``)."""
    val = round(n * val_fraction)
    test = round(n * test_fraction)
    if n >= 3:
        val = max(val, 1) if val_fraction > 0 else 0
        test = max(test, 1) if test_fraction > 0 else 0
    while val + test >= n and (val or test):  # keep at least one group for training
        if test >= val and test:
            test -= 1
        else:
            val -= 1
    return val, test


def assign_splits(
    entries: Iterable[VideoEntry],
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
) -> Splits:
    """Assign every video to ``train``, ``val`` or ``test`` by group, deterministically.

    A group is a real video and every fake made from it (fakes whose original is not in the
    folder form a group with their siblings). Groups with a REAL video and fake-only groups are
    shuffled separately (``numpy`` PCG64 seeded with ``seed``, over the sorted group keys) so
    that each split gets both kinds when there are enough; the result depends only on the
    seed, the fractions and the metadata, never on file-system order.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val_fraction and test_fraction must be in [0, 1) with a sum below 1")
    groups: dict[str, list[VideoEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.group, []).append(entry)
    with_real = sorted(k for k, members in groups.items() if any(not m.is_fake for m in members))
    fake_only = sorted(k for k in groups if k not in set(with_real))
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for keys in (with_real, fake_only):
        order = [keys[i] for i in rng.permutation(len(keys))]
        n_val, n_test = _allocate(len(order), val_fraction, test_fraction)
        for i, key in enumerate(order):
            split = "val" if i < n_val else "test" if i < n_val + n_test else "train"
            for member in groups[key]:
                assignment[member.name] = split
    return Splits(seed, val_fraction, test_fraction, dict(sorted(assignment.items())))
