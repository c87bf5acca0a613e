"""Tell what an input file is before FFmpeg sees it, and why it cannot be decoded.

Every failure is a :class:`~fakescope.client.frames.VideoReadError` whose message says what the
file is, when that can be told, instead of FFmpeg's generic refusal.
:func:`inspect_container` sniffs the first :data:`SNIFF_BYTES` of the file and, for ISO-BMFF
files (MP4, MOV, M4A, 3GP), walks the top-level boxes:

* **refused before decoding** (:func:`inspect_container`): HLS playlists and FFmpeg concat
  scripts (FFmpeg's demuxers would follow them to *other* local files — a ``.mp4`` upload that
  is really a playlist could make a server analyse, and thumbnail, any video on its disk),
  PDF/ZIP documents, other text files, and MP4/MOV/M4A files whose complete ``moov`` index lists
  no video track (audio only; FFmpeg would otherwise offer an embedded cover picture as a
  one-frame video);
* **refused when only one frame decodes** (:func:`refuse_single_frame`): still images (JPEG,
  PNG, GIF, BMP, TIFF, WebP) and audio files (MP3, FLAC, WAV) — FFmpeg presents an image, or an
  MP3's cover picture, as a one-frame video; an animated GIF or a raw MJPEG stream has more
  frames and is analysed;
* **explained when FFmpeg fails** (:func:`explain_failure`): for ISO-BMFF files the box walk
  tells truncated (the file ends inside a box), no ``moov`` index, a damaged ``moov``, a video
  track without frames.
"""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from fakescope.client.frames import NOT_A_VIDEO, ReadErrorReason, VideoReadError

__all__ = [
    "MAX_MOOV_BYTES",
    "SNIFF_BYTES",
    "ContainerFacts",
    "Mp4Facts",
    "SniffKind",
    "Sniffed",
    "explain_failure",
    "inspect_container",
    "refuse_single_frame",
    "sniff",
]

#: Bytes read from the start of every file to recognise non-videos before FFmpeg sees them.
SNIFF_BYTES: Final = 4096


@dataclass(frozen=True)
class ContainerFacts:
    """What a file's first bytes and, for ISO-BMFF, its box structure say, before decoding.

    Attributes:
        sniffed: what the first bytes say the file is; ``None`` when it may be a video.
        mp4: the box walk of an ISO-BMFF file; ``None`` for other files or when unreadable.

    """

    sniffed: Sniffed | None
    mp4: Mp4Facts | None


def inspect_container(path: str | os.PathLike[str]) -> ContainerFacts:
    """Check ``path`` is a readable file, sniff it and walk its MP4 boxes; refuse what must.

    Raises:
        VideoReadError: missing path, directory, unreadable or empty file, a playlist, document
            or other text file, or an MP4/MOV/M4A whose index lists no video track.

    """
    size, head = _check_file(path)
    sniffed = _sniff(head, size)
    mp4 = _probe_mp4(path, head, size)
    _refuse_before_decoding(path, sniffed, mp4)
    return ContainerFacts(sniffed, mp4)


def refuse_single_frame(path: str | os.PathLike[str], facts: ContainerFacts) -> None:
    """Raise when a file that decoded as one frame is a still image or an audio file.

    FFmpeg shows a still image, or an audio file's cover picture, as a one-frame video.
    """
    sniffed = facts.sniffed
    if sniffed is not None and sniffed.kind == "image":
        raise VideoReadError(path, "not_video", f"{sniffed.what}, not a video")
    if sniffed is not None and sniffed.kind == "audio":
        raise VideoReadError(
            path, "no_video_stream", f"{sniffed.what}: no video stream (only a cover picture)"
        )


def explain_failure(facts: ContainerFacts, *, opened: bool) -> tuple[ReadErrorReason, str] | None:
    """Why FFmpeg could not open (``opened=False``) or decode the file, when it can be told.

    Returns ``(reason, detail)``, or ``None`` when nothing more specific than FFmpeg's failure
    is known.
    """
    sniffed, mp4 = facts.sniffed, facts.mp4
    stage: ReadErrorReason = "no_frames" if opened else "not_video"
    if sniffed is not None and sniffed.kind == "image":
        return "not_video", f"{sniffed.what}, not a video"
    if sniffed is not None and sniffed.kind == "audio":
        return "no_video_stream", f"{sniffed.what}: no video stream"
    if mp4 is None:
        return None
    if mp4.truncated is not None:
        name, present, declared = mp4.truncated
        cut = f"truncated: the file ends inside its '{name}' box ({present} of {declared} bytes)"
        if not mp4.has_moov:
            return stage, f"{cut}, before the MP4 index ('moov' box)"
        return stage, f"{cut}; no frame could be decoded" if opened else cut
    if mp4.structure_error is not None:
        return stage, f"damaged MP4 file: {mp4.structure_error}"
    if not mp4.has_moov:
        return stage, "no MP4 index ('moov' box): the recording was not finished or the file is cut"
    if mp4.moov_error is not None:
        return stage, f"damaged MP4 index ('moov' box): {mp4.moov_error}"
    if mp4.moov_parsed and not mp4.tracks:
        return stage, "the MP4 index ('moov' box) lists no tracks"
    videos = [n for handler, n in mp4.tracks if handler in _BMFF_VIDEO_HANDLERS]
    if videos and not mp4.fragmented and all(n == 0 for n in videos):
        return stage, "the video track holds no frames (0 s long)"
    if not opened:
        return stage, "damaged MP4 index ('moov' box): the decoder cannot read it"
    return None


# --- internals -------------------------------------------------------------------------------


def _check_file(path: str | os.PathLike[str]) -> tuple[int, bytes]:
    """Raise :class:`VideoReadError` unless ``path`` is a non-empty readable regular file.

    Returns the file's size and its first :data:`SNIFF_BYTES` bytes.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise VideoReadError(path, "missing", "no such file") from None
    except PermissionError:
        raise VideoReadError(path, "permission", "permission denied") from None
    except OSError as exc:
        raise VideoReadError(path, "unreadable", f"cannot access: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise VideoReadError(path, "directory", "is a directory, not a video file")
    if not stat.S_ISREG(st.st_mode):
        raise VideoReadError(path, "not_file", "not a regular file")
    if st.st_size == 0:
        raise VideoReadError(path, "empty", "empty file (0 bytes)")
    try:
        with p.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except PermissionError:
        raise VideoReadError(path, "permission", "permission denied") from None
    except OSError as exc:
        raise VideoReadError(path, "unreadable", f"cannot read: {exc.strerror}") from None
    return st.st_size, head


# --- what a file is, when it is not a video: one specific line instead of FFmpeg's silence ------

#: What the first bytes say a file is (``None``: probably a media container, let FFmpeg decide).
SniffKind = Literal["image", "audio", "document", "playlist", "text"]


@dataclass(frozen=True)
class Sniffed:
    """What the first bytes say a file is that is not a video (or may not be one)."""

    kind: SniffKind
    what: str  # "a JPEG image", "an HLS playlist", ...


_MAGIC: Final[tuple[tuple[bytes, SniffKind, str], ...]] = (
    (b"\xff\xd8\xff", "image", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "image", "a PNG image"),
    (b"GIF87a", "image", "a GIF image"),
    (b"GIF89a", "image", "a GIF image"),
    (b"II*\x00", "image", "a TIFF image"),
    (b"MM\x00*", "image", "a TIFF image"),
    (b"%PDF-", "document", "a PDF document"),
    (b"PK\x03\x04", "document", "a ZIP archive"),
    (b"ID3", "audio", "an MP3 audio file"),
    (b"fLaC", "audio", "a FLAC audio file"),
)
#: Text formats FFmpeg's demuxers follow to *other* files (local paths, any extension FFmpeg
#: accepts): a ".mp4" that is really a playlist would make the decoder read another video on
#: this machine (e.g. another user's upload) and report on it. Refused before FFmpeg sees them.
_PLAYLISTS: Final[tuple[tuple[bytes, str], ...]] = (
    (b"#EXTM3U", "an HLS playlist"),
    (b"ffconcat version", "an FFmpeg concat script"),
)


def sniff(head: bytes, size: int) -> Sniffed | None:
    """Say what a ``size``-byte file starting with ``head`` is, when it is not a video.

    ``None``: probably a media container. Public for readers that look at a file before (or
    beside) decoding it, such as the Content Credentials reader.
    """
    return _sniff(head, size)


def _sniff(head: bytes, size: int) -> Sniffed | None:
    """Recognise non-video files from their first bytes (``None``: maybe a video)."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    for prefix, what in _PLAYLISTS:
        if text.startswith(prefix):
            return Sniffed("playlist", what)
    for prefix, kind, what in _MAGIC:
        if head.startswith(prefix):
            return Sniffed(kind, what)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed("image", "a WebP image")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Sniffed("audio", "a WAV audio file")
    if head[:2] == b"BM" and len(head) >= 6 and int.from_bytes(head[2:6], "little") == size:
        return Sniffed("image", "a BMP image")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return Sniffed("audio", "an MPEG audio file (MP3/AAC)")
    if not head.startswith(b"YUV4MPEG2") and _is_text(head):
        return Sniffed("text", "a text file")
    return None


def _is_text(head: bytes) -> bool:
    """Whether ``head`` looks like the start of a text file (UTF-8, no NUL byte)."""
    if b"\x00" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


#: Top-level box types an ISO-BMFF (MP4/MOV/3GP/M4A) file can start with.
_BMFF_FIRST_BOXES: Final = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"})
#: ``hdlr`` handler types that carry pictures.
_BMFF_VIDEO_HANDLERS: Final = frozenset({"vide", "pict", "auxv"})
#: A ``moov`` bigger than this is not read here (FFmpeg still gets the file).
MAX_MOOV_BYTES: Final = 64 * 1024 * 1024
#: Top-level boxes walked at most (a corrupt file cannot make the walk long).
_MAX_BMFF_BOXES: Final = 10_000


@dataclass
class Mp4Facts:
    """What the box structure of an ISO-BMFF file says (only what could be read)."""

    has_moov: bool = False
    #: the whole ``moov`` was read and its tracks listed in ``tracks``
    moov_parsed: bool = False
    #: the ``moov`` exists but its box structure is broken
    moov_error: str | None = None
    #: the top-level box structure is broken (before any ``moov``)
    structure_error: str | None = None
    #: ``(handler type, sample count)`` per track; count ``None`` when not stated
    tracks: list[tuple[str, int | None]] = field(default_factory=list)
    fragmented: bool = False
    #: ``(box type, bytes present, bytes declared)`` of the box the file ends inside
    truncated: tuple[str, int, int] | None = None


def _box_name(raw: bytes) -> str:
    return raw.decode("latin-1") if all(32 <= b < 127 for b in raw) else raw.hex()


def _iter_boxes(data: bytes, start: int, end: int) -> Iterator[tuple[str, int, int]]:
    """Yield ``(type, payload_start, box_end)`` of the boxes in ``data[start:end]``.

    Raises ``ValueError`` naming the first box whose header or size is inconsistent.
    """
    offset = start
    while offset < end:
        if end - offset < 8:
            if not any(data[offset:end]):  # QuickTime's optional zero terminator
                return
            raise ValueError(f"{end - offset} stray bytes where a box header should be")
        size = int.from_bytes(data[offset : offset + 4], "big")
        name = _box_name(data[offset + 4 : offset + 8])
        header = 8
        if size == 1:
            if end - offset < 16:
                raise ValueError(f"box '{name}' has a cut 64-bit size")
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
            header = 16
        if size < header or offset + size > end:
            raise ValueError(f"box '{name}' claims {size} bytes, {end - offset} are left")
        yield name, offset + header, offset + size
        offset += size


def _find_box(data: bytes, start: int, end: int, name: str) -> tuple[int, int] | None:
    for child, payload, box_end in _iter_boxes(data, start, end):
        if child == name:
            return payload, box_end
    return None


def _parse_moov(moov: bytes, facts: Mp4Facts) -> None:
    """Fill ``facts.tracks``/``fragmented`` from a complete ``moov`` payload."""
    for name, payload, end in _iter_boxes(moov, 0, len(moov)):
        if name == "mvex":
            facts.fragmented = True
        if name != "trak":
            continue
        mdia = _find_box(moov, payload, end, "mdia")
        if mdia is None:
            continue
        hdlr = _find_box(moov, *mdia, "hdlr")
        handler = _box_name(moov[hdlr[0] + 8 : hdlr[0] + 12]) if hdlr else "?"
        samples: int | None = None
        minf = _find_box(moov, *mdia, "minf")
        stbl = _find_box(moov, *minf, "stbl") if minf else None
        if stbl is not None:
            sizes = _find_box(moov, *stbl, "stsz") or _find_box(moov, *stbl, "stz2")
            if sizes is not None and sizes[1] - sizes[0] >= 12:
                samples = int.from_bytes(moov[sizes[0] + 8 : sizes[0] + 12], "big")
        facts.tracks.append((handler, samples))


def _probe_mp4(path: str | os.PathLike[str], head: bytes, size: int) -> Mp4Facts | None:
    """Walk the top-level boxes of an ISO-BMFF file (``None``: not one, or unreadable)."""
    if head[4:8] not in _BMFF_FIRST_BOXES:
        return None
    facts = Mp4Facts()
    try:
        with open(path, "rb") as fh:
            offset = 0
            for _ in range(_MAX_BMFF_BOXES):
                if offset + 8 > size:
                    break
                fh.seek(offset)
                header = fh.read(16)
                box_size = int.from_bytes(header[:4], "big")
                name = _box_name(header[4:8])
                header_len = 8
                if box_size == 1 and len(header) >= 16:
                    box_size = int.from_bytes(header[8:16], "big")
                    header_len = 16
                elif box_size == 0:
                    box_size = size - offset
                if box_size < header_len:
                    facts.structure_error = f"box '{name}' at byte {offset} has size {box_size}"
                    break
                if offset + box_size > size:
                    facts.truncated = (name, size - offset, box_size)
                if name == "moof":
                    facts.fragmented = True
                if name == "moov" and not facts.has_moov:
                    facts.has_moov = True
                    if facts.truncated is None and box_size <= MAX_MOOV_BYTES:
                        fh.seek(offset + header_len)
                        try:
                            _parse_moov(fh.read(box_size - header_len), facts)
                        except ValueError as exc:
                            facts.moov_error = str(exc)
                        else:
                            facts.moov_parsed = True
                if facts.truncated is not None:
                    break
                offset += box_size
    except OSError:
        return None
    return facts


def _refuse_before_decoding(
    path: str | os.PathLike[str], sniffed: Sniffed | None, mp4: Mp4Facts | None
) -> None:
    """Raise for what must never reach FFmpeg, or plainly has no video stream."""
    if sniffed is not None and sniffed.kind == "playlist":
        raise VideoReadError(
            path,
            "not_video",
            f"{sniffed.what}, not a video file (refused: it would make the decoder open "
            "other files)",
        )
    if sniffed is not None and sniffed.kind == "document":
        raise VideoReadError(path, "not_video", f"{sniffed.what}, not a video")
    if sniffed is not None and sniffed.kind == "text":
        raise VideoReadError(path, "not_video", NOT_A_VIDEO)
    if mp4 is not None and mp4.moov_parsed and mp4.tracks:
        handlers = sorted({handler for handler, _ in mp4.tracks})
        if not _BMFF_VIDEO_HANDLERS.intersection(handlers):
            only = "audio only" if handlers == ["soun"] else f"tracks: {', '.join(handlers)}"
            raise VideoReadError(path, "no_video_stream", f"no video stream ({only})")
