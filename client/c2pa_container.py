"""Where a file keeps its embedded C2PA manifest, and how big it is, before C2PA reads it.

C2PA binds a manifest store to a video in one place per container: a top-level ``uuid`` box
with the C2PA UUID in ISO-BMFF (MP4, MOV, M4V, 3GP), a top-level ``C2PA`` chunk in RIFF (AVI).
The SDK has no binding for the other video containers (Matroska/WebM, MPEG-TS, FLV, …), and an
image or a document is not a video whatever it carries.

:func:`locate_manifest` tells which of these a file is from its first bytes, then walks the
top-level boxes or chunks — headers only, by seeking, never reading a payload — and adds up
the bytes of the C2PA ones. The reader refuses a manifest over its size cap *before* the native
library loads it into memory: a hostile upload can declare a manifest of any size, and the
library reads the whole manifest store in one piece.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Final, Literal

from fakescope.client.containers import SNIFF_BYTES, sniff

__all__ = [
    "C2PA_UUID",
    "MAX_TOP_LEVEL_ENTRIES",
    "TOO_MANY_ENTRIES",
    "ContainerKind",
    "ManifestLocation",
    "locate_manifest",
]

#: The ``uuid`` box user type of a C2PA manifest store in ISO-BMFF (C2PA spec, "BMFF").
C2PA_UUID: Final = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
#: Top-level boxes/chunks walked at most; a file with more is not handed to the C2PA reader,
#: whose time grows with the square of their number, past the read's deadline within a few
#: tens of thousands of empty boxes (a native read that cannot be stopped, and goes on using a
#: core). A fragmented MP4 has a ``moof``/``mdat`` pair per fragment: a 10-minute video in
#: fragments of a quarter second or more stays below.
MAX_TOP_LEVEL_ENTRIES: Final = 10_000

#: :attr:`ManifestLocation.incomplete` of a walk that stopped at :data:`MAX_TOP_LEVEL_ENTRIES`.
TOO_MANY_ENTRIES: Final = f"more than {MAX_TOP_LEVEL_ENTRIES} top-level boxes"

ContainerKind = Literal["bmff", "avi"]

#: ``ftyp`` major brands of ISO-BMFF files that are still images or audio, not video.
_IMAGE_BRANDS: Final = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"avif"})
_AUDIO_BRANDS: Final = frozenset({b"M4A ", b"M4B ", b"M4P "})
#: Top-level box types an ISO-BMFF file can start with (QuickTime files may lack ``ftyp``).
_BMFF_FIRST_BOXES: Final = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"})
#: Video containers without a C2PA binding, by their first bytes.
_OTHER_VIDEO: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
    (b"FLV", "an FLV video"),
    (b"\x00\x00\x01\xba", "an MPEG program stream"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "an ASF/WMV video"),
    (b"OggS", "an Ogg file"),
)


@dataclass(frozen=True)
class ManifestLocation:
    """What kind of file this is for C2PA, and the size of its embedded manifest store.

    Attributes:
        container: ``bmff`` or ``avi`` when C2PA can be embedded in this file as a video;
            ``None`` otherwise (nothing is read).
        mime_type: the media type the C2PA reader is given (``None`` with ``container``).
        what: the file in words ("an MP4/MOV video", "a PNG image", …).
        manifest_bytes: bytes of the top-level C2PA boxes/chunks found (0: none).
        incomplete: why the walk stopped before the end of the file (a broken header, more
            than :data:`MAX_TOP_LEVEL_ENTRIES` entries), ``None`` when it reached the end:
            what it did not walk may hold a manifest of any size, so the file is not read.

    """

    container: ContainerKind | None
    mime_type: str | None
    what: str
    manifest_bytes: int = 0
    incomplete: str | None = None


def locate_manifest(path: str | os.PathLike[str]) -> ManifestLocation:
    """Identify ``path``'s container and sum the bytes of its top-level C2PA manifest store.

    Raises:
        OSError: the file cannot be opened or read.

    """
    size = os.stat(path).st_size
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
        if head[4:8] in _BMFF_FIRST_BOXES:
            return _locate_in_bmff(fh, head, size)
        if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            return _locate_in_avi(fh, size)
    return ManifestLocation(None, None, _describe_other(head, size))


def _locate_in_bmff(fh: BinaryIO, head: bytes, size: int) -> ManifestLocation:
    brand = head[8:12] if head[4:8] == b"ftyp" else b""
    if brand in _IMAGE_BRANDS:
        return ManifestLocation(None, None, "a HEIF/AVIF image, not a video")
    if brand in _AUDIO_BRANDS:
        return ManifestLocation(None, None, "an MP4 audio file, not a video")
    found = 0
    offset = 0
    for _ in range(MAX_TOP_LEVEL_ENTRIES):
        if offset >= size:
            return _located("bmff", found)
        fh.seek(offset)
        header = fh.read(32)  # a 64-bit size, then a uuid box's user type
        if len(header) < 8:
            return _located("bmff", found, f"its top-level boxes break off at byte {offset}")
        box_size = int.from_bytes(header[:4], "big")
        header_len = 8
        if box_size == 1:
            if len(header) < 16:
                return _located("bmff", found, f"its top-level boxes break off at byte {offset}")
            box_size = int.from_bytes(header[8:16], "big")
            header_len = 16
        elif box_size == 0:  # the last box runs to the end of the file
            box_size = size - offset
        if box_size < header_len:
            return _located("bmff", found, f"its top-level boxes break off at byte {offset}")
        user_type = header[header_len : header_len + 16]
        if header[4:8] == b"uuid" and user_type == C2PA_UUID:
            # Count what the header declares, even past the end of a cut file: that is what
            # the library would try to read.
            found += box_size
        offset += box_size
    return _located("bmff", found, TOO_MANY_ENTRIES)


_KINDS: Final[dict[ContainerKind, tuple[str, str]]] = {
    "bmff": ("video/mp4", "an MP4/MOV video"),
    "avi": ("video/x-msvideo", "an AVI video"),
}


def _located(kind: ContainerKind, found: int, incomplete: str | None = None) -> ManifestLocation:
    mime, what = _KINDS[kind]
    return ManifestLocation(kind, mime, what, found, incomplete)


def _locate_in_avi(fh: BinaryIO, size: int) -> ManifestLocation:
    found = 0
    offset = 12  # after "RIFF", the RIFF size and "AVI "
    for _ in range(MAX_TOP_LEVEL_ENTRIES):
        if offset + 8 > size:
            return _located("avi", found)
        fh.seek(offset)
        header = fh.read(8)
        chunk_size = int.from_bytes(header[4:8], "little")
        if header[:4] == b"C2PA":
            found += chunk_size
        offset += 8 + chunk_size + (chunk_size & 1)  # RIFF chunks are padded to even sizes
    return _located("avi", found, TOO_MANY_ENTRIES)


def _describe_other(head: bytes, size: int) -> str:
    """Name a file C2PA cannot be embedded in as a video."""
    for magic, what in _OTHER_VIDEO:
        if head.startswith(magic):
            return what
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "an MPEG transport stream"
    sniffed = sniff(head, size)
    if sniffed is not None:
        return f"{sniffed.what}, not a video"
    return "a file of unknown type"
