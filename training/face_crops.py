"""Face-crop datasets: ``metadata.csv`` plus ``faces-*.tar`` shards or plain image files.

The format of ``../shared/data/dfdc_faces`` (one face crop per video, already cut by another
detector): ``metadata.csv`` with at least the columns ``videoname,label,original`` and, for
each row, an image named ``<videoname without its suffix>.jpg`` (or ``.jpeg``/``.png``) either
inside a tar shard (``*.tar``, flat member names, WebDataset style) or as a plain file in the
folder. A fake and the REAL video it was made from (``original``) form one split group, as in
the DFDC video format of :mod:`.dataset`, whose :class:`~.dataset.VideoEntry` and
:func:`~.dataset.assign_splits` are reused as they are.

Validation happens in two passes and writes nothing: :func:`load_face_crop_set` checks the
table and the files (labels, duplicates, missing and unlisted images, tar members with absolute
paths, ``..`` or links, an empty set, one class only); :func:`read_face_crops` decodes every
image and names each one that does not decode. Both raise :class:`~.dataset.DatasetError`
listing every offender.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Final

import cv2
import numpy as np

from fakescope.training.dataset import LABELS, DatasetError, Problem, VideoEntry

__all__ = [
    "FaceCropSet",
    "FaceCrops",
    "decode_face",
    "image_bytes",
    "is_face_crop_set",
    "load_face_crop_set",
    "read_face_crops",
]

logger = logging.getLogger(__name__)

METADATA_CSV: Final = "metadata.csv"
REQUIRED_COLUMNS: Final = ("videoname", "label", "original")
IMAGE_SUFFIXES: Final = (".jpg", ".jpeg", ".png")
SHARD_GLOB: Final = "*.tar"


def is_face_crop_set(root: Path) -> bool:
    """Whether ``root`` is a face-crop folder (it has ``metadata.csv``)."""
    return (Path(root) / METADATA_CSV).is_file()


@dataclass(frozen=True)
class ImageRef:
    """Where one entry's image is: a member of a tar shard, or a plain file."""

    shard: Path | None  #: the tar file, or ``None`` for a plain file
    name: str  #: member name inside ``shard``, or the file's path relative to the root


@dataclass(frozen=True)
class FaceCropSet:
    """A validated face-crop dataset (table and files; images not decoded yet)."""

    root: Path
    entries: tuple[VideoEntry, ...]
    images: dict[str, ImageRef] = field(default_factory=dict)  #: videoname -> its image

    def by_name(self) -> dict[str, VideoEntry]:
        """Entries keyed by name."""
        return {e.name: e for e in self.entries}

    def counts(self) -> dict[str, int]:
        """How many REAL and FAKE faces."""
        return {label: sum(e.label == label for e in self.entries) for label in LABELS}


@dataclass(frozen=True)
class FaceCrops:
    """Decoded crops of some entries of a :class:`FaceCropSet`, in the order asked for."""

    names: list[str]
    crops: np.ndarray  #: UINT8 ``[N, S, S, 3]`` RGB
    image_sha256: dict[str, str]  #: videoname -> SHA-256 of its image bytes


def _image_stem(videoname: str) -> str:
    return PurePosixPath(videoname).stem


def _unsafe_member(member: tarfile.TarInfo) -> str | None:
    """Why a tar member may not be read (absolute path, ``..``, link, not a file)."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith("/"):
        return "absolute path in the tar"
    if ".." in path.parts:
        return "'..' in its path"
    if member.issym() or member.islnk():
        return "a link, not an image"
    if not member.isfile():
        return "not a regular file"
    return None


def _read_table(root: Path, problems: list[Problem]) -> list[VideoEntry]:
    path = root / METADATA_CSV
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            problems.append(Problem(METADATA_CSV, f"missing column(s) {', '.join(missing)}"))
            return []
        entries: list[VideoEntry] = []
        seen: dict[str, int] = {}
        for row_number, row in enumerate(reader, start=2):  # line 1 is the header
            name = (row["videoname"] or "").strip()
            label = (row["label"] or "").strip()
            original = (row["original"] or "").strip() or None
            where = f"{METADATA_CSV} line {row_number} ({name or 'no videoname'})"
            if not name:
                problems.append(Problem(where, "empty videoname"))
                continue
            if name in seen:
                problems.append(Problem(where, f"duplicate videoname (first on line {seen[name]})"))
                continue
            seen[name] = row_number
            if label not in LABELS:
                problems.append(Problem(where, f"unknown label {label!r} (expected REAL or FAKE)"))
                continue
            if label == "REAL" and original:
                problems.append(Problem(where, "a REAL face has an 'original'"))
                continue
            entries.append(VideoEntry(name, label, original))
    labels = {e.name: e.label for e in entries}
    for entry in entries:
        if entry.original and labels.get(entry.original) == "FAKE":
            problems.append(Problem(entry.name, f"its original {entry.original} is labelled FAKE"))
    return entries


def _find_images(root: Path, problems: list[Problem]) -> dict[str, ImageRef]:
    """Every image of the folder by stem: tar members first, then plain files."""
    found: dict[str, ImageRef] = {}

    def add(stem: str, ref: ImageRef, where: str) -> None:
        if stem in found:
            first = found[stem]
            origin = f"{first.shard.name}:{first.name}" if first.shard else first.name
            problems.append(Problem(where, f"a second image for {stem} (first: {origin})"))
        else:
            found[stem] = ref

    for shard in sorted(root.glob(SHARD_GLOB)):
        try:
            with tarfile.open(shard) as tar:
                for member in tar.getmembers():
                    where = f"{shard.name}:{member.name}"
                    reason = _unsafe_member(member)
                    if reason:
                        problems.append(Problem(where, reason))
                        continue
                    path = PurePosixPath(member.name)
                    if path.suffix.lower() not in IMAGE_SUFFIXES:
                        problems.append(Problem(where, "not an image (.jpg, .jpeg, .png)"))
                        continue
                    add(path.stem, ImageRef(shard, member.name), where)
        except (tarfile.TarError, OSError) as exc:
            problems.append(Problem(shard.name, f"unreadable tar shard: {exc}"))
    for path in sorted(root.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.is_symlink():
            problems.append(Problem(path.name, "a symbolic link, not an image"))
            continue
        add(path.stem, ImageRef(None, path.name), path.name)
    return found


def load_face_crop_set(root: Path) -> FaceCropSet:
    """Validate the table and files of a face-crop folder (images are decoded later).

    Raises:
        DatasetError: listing every offender; nothing is written.

    """
    root = Path(root)
    problems: list[Problem] = []
    if not is_face_crop_set(root):
        raise DatasetError(root, [Problem(METADATA_CSV, "not found")])
    entries = _read_table(root, problems)
    images = _find_images(root, problems)
    refs: dict[str, ImageRef] = {}
    listed = set()
    for entry in entries:
        stem = _image_stem(entry.name)
        listed.add(stem)
        if stem not in images:
            problems.append(Problem(entry.name, f"image {stem}.jpg not found"))
        else:
            refs[entry.name] = images[stem]
    for stem, ref in sorted(images.items()):
        if stem not in listed:
            where = f"{ref.shard.name}:{ref.name}" if ref.shard else ref.name
            problems.append(Problem(where, "image not listed in metadata.csv"))
    if not entries and not problems:
        problems.append(Problem(METADATA_CSV, "lists no face"))
    labels = {e.label for e in entries}
    if entries and len(labels) == 1:
        problems.append(
            Problem(METADATA_CSV, f"one class only ({labels.pop()}): need REAL and FAKE faces")
        )
    if problems:
        raise DatasetError(root, problems)
    return FaceCropSet(root, tuple(entries), refs)


def image_bytes(dataset: FaceCropSet, names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    """Yield ``(videoname, bytes)`` for ``names``, reading each shard once, in shard order."""
    wanted = set(names)
    by_shard: dict[Path | None, dict[str, str]] = {}
    for name in wanted:
        ref = dataset.images[name]
        by_shard.setdefault(ref.shard, {})[ref.name] = name
    for shard, members in sorted(by_shard.items(), key=lambda kv: str(kv[0] or "")):
        if shard is None:
            for member, name in sorted(members.items()):
                yield name, (dataset.root / member).read_bytes()
            continue
        with tarfile.open(shard) as tar:
            for member in tar:
                name = members.get(member.name)
                if name is None:
                    continue
                handle = tar.extractfile(member)
                if handle is None:  # validated as a regular file; defensive only
                    raise DatasetError(dataset.root, [Problem(member.name, "unreadable")])
                yield name, handle.read()


def decode_face(data: bytes, size: int | None) -> np.ndarray | None:
    """Decode image bytes to UINT8 RGB, resized to ``[size, size, 3]`` unless ``size`` is None.

    Returns ``None`` when the bytes are not a decodable image of at least 8 px.
    """
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3 or min(image.shape[:2]) < 8:
        return None
    if size is not None and image.shape[:2] != (size, size):
        shrink = image.shape[0] > size
        image = cv2.resize(
            image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_face_crops(
    dataset: FaceCropSet,
    names: Sequence[str],
    size: int,
    *,
    on_image: Callable[[], None] | None = None,
) -> FaceCrops:
    """Decode the images of ``names`` at ``size`` px (square; the data's crops are square).

    Raises:
        DatasetError: naming every image that does not decode (corrupt JPEG, not an image).

    """
    position = {name: i for i, name in enumerate(names)}
    crops = np.zeros((len(names), size, size, 3), np.uint8)
    hashes: dict[str, str] = {}
    problems: list[Problem] = []
    for name, data in image_bytes(dataset, names):
        hashes[name] = hashlib.sha256(data).hexdigest()
        image = decode_face(data, size)
        if image is None:
            ref = dataset.images[name]
            where = f"{ref.shard.name}:{ref.name}" if ref.shard else ref.name
            problems.append(Problem(where, f"image of {name} does not decode (corrupt?)"))
        else:
            crops[position[name]] = image
        if on_image is not None:
            on_image()
    if problems:
        raise DatasetError(dataset.root, problems)
    return FaceCrops(list(names), crops, hashes)
