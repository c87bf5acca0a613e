"""Receiving an upload: stream the multipart body to a temp file, enforcing limits as it comes.

Order of checks (each one as early as it can be made):

1. ``Content-Length`` (when sent) larger than the size limit plus the form's overhead → 413
   before one byte of the body is read (a client sending ``Expect: 100-continue`` never
   sends the body at all).
2. While streaming: the file part crossing ``max_bytes`` → 413 at once; the server stops
   reading (the connection is then closed, since the rest of the body is never read). A part
   whose name is not ``file`` or one of :data:`TEXT_FIELDS`, or a name sent twice → 422
   ``bad_field`` as soon as that part's headers arrive, so the text fields held in memory are
   at most one of each (:data:`MAX_FIELD_BYTES` each, else 422 ``field_too_long``).
3. The file's first bytes must be a video container's signature (MP4/MOV/3GP, Matroska/WebM,
   AVI, FLV, MPEG-TS/PS, H.264/H.265/MPEG elementary stream, Ogg, ASF/WMV) → else 415 as soon
   as those bytes arrive.
4. After the body: :func:`probe_video` opens the file with OpenCV (FFmpeg), decodes the first
   frame and reads the duration → 415 if it is not a decodable video, 413 if it is longer than
   the duration limit.

The body goes to ``tmp_dir/<random>.part``; on any failure that file is deleted, so ``tmp_dir``
only ever holds uploads in flight. A failure to write it (disk full, I/O error) is the server's,
not the upload's: 503 ``storage_unavailable``, which the client may retry; the cause goes to the
log only. The caller moves a complete, probed file into place with
``os.replace`` (atomic on one filesystem).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import cv2
from python_multipart.multipart import MultipartParser, parse_options_header

__all__ = [
    "FORM_OVERHEAD_BYTES",
    "PART_SUFFIX",
    "STORAGE_UNAVAILABLE",
    "STORAGE_UNAVAILABLE_MESSAGE",
    "TEXT_FIELDS",
    "ReceivedUpload",
    "UploadError",
    "VideoProbe",
    "looks_like_video",
    "probe_video",
    "receive_upload",
]

logger = logging.getLogger(__name__)

#: Bytes allowed on top of the size limit for multipart boundaries, part headers and fields.
FORM_OVERHEAD_BYTES: Final = 64 * 1024
#: Longest text field accepted (e.g. a webhook URL).
MAX_FIELD_BYTES: Final = 2048
#: Bytes needed to recognise a container signature (MPEG-TS: sync bytes at 0 and 188).
SNIFF_BYTES: Final = 189
FILE_FIELD: Final = "file"
#: Suffix of an upload being received in ``tmp_dir``.
PART_SUFFIX: Final = ".part"
#: The form's text fields besides the file (the API reads them; any other name is refused).
TEXT_FIELDS: Final = frozenset({"keep_video", "webhook_url"})
#: The code and message of a 503 for an upload the server could not keep (its temp file could
#: not be written, or the upload store refused it): the client may send it again.
STORAGE_UNAVAILABLE: Final = "storage_unavailable"
STORAGE_UNAVAILABLE_MESSAGE: Final = "the video could not be stored; try again shortly"


class UploadError(Exception):
    """The upload is refused; ``status`` is the HTTP code, ``code`` a stable short reason."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class ReceivedUpload:
    """A complete upload in the temp folder, with the form's other fields."""

    path: Path
    filename: str
    size: int
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VideoProbe:
    """What :func:`probe_video` learned: frame size and duration (``None`` if unknown)."""

    width: int
    height: int
    duration_s: float | None


def looks_like_video(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts like a known video container."""
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return True
    signatures = (
        b"\x1a\x45\xdf\xa3",  # Matroska / WebM (EBML)
        b"FLV",
        b"OggS",
        b"\x00\x00\x01\xba",  # MPEG program stream
        b"\x00\x00\x01\xb3",  # MPEG-1/2 video sequence header
        b"\x00\x00\x00\x01",  # H.264/H.265 Annex B
        b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",  # ASF / WMV
    )
    if head.startswith(signatures):
        return True
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return True
    return len(head) > 188 and head[0] == head[188] == 0x47  # MPEG-TS: 188-byte packets


def _safe_filename(raw: str) -> str:
    name = os.path.basename(raw.replace("\\", "/")).strip()
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or "video"


class _FormCollector:
    """Callbacks for python-multipart's push parser: one file part to disk, small text parts."""

    def __init__(self, tmp_dir: Path, max_bytes: int):
        self.tmp_dir = tmp_dir
        self.max_bytes = max_bytes
        self.fields: dict[str, str] = {}
        self.file_path: Path | None = None
        self.filename = ""
        self.file_size = 0
        self.error: UploadError | None = None
        self._headers: dict[str, str] = {}
        self._field_name = b""
        self._header_field = b""
        self._header_value = b""
        self._part_name: str | None = None
        self._names_seen: set[str] = set()
        self._is_file = False
        self._handle: object | None = None
        self._text = bytearray()
        self._head = bytearray()
        self._sniffed = False

    # --- parser callbacks ----------------------------------------------------------------------
    def on_part_begin(self) -> None:
        self._headers = {}
        self._part_name = None
        self._is_file = False
        self._text = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = self._header_value.decode(
            "latin-1"
        )
        self._header_field = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        if self.error is not None:
            return
        _, params = parse_options_header(self._headers.get("content-disposition", ""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        self._part_name = name
        if name != FILE_FIELD:
            self._check_text_field(name)
            return
        if self.file_path is not None:
            self._fail(UploadError(422, "several_files", "send exactly one file"))
            return
        self._is_file = True
        self.filename = _safe_filename(params.get(b"filename", b"").decode("utf-8", "replace"))
        path = self.tmp_dir / f"{secrets.token_hex(16)}{PART_SUFFIX}"
        try:
            self._handle = open(path, "xb")  # noqa: SIM115 (closed in on_part_end/close)
        except OSError as exc:
            self._storage_failed(exc)
            return
        self.file_path = path

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        chunk = data[start:end]
        if self._is_file:
            self.file_size += len(chunk)
            if self.file_size > self.max_bytes:
                self._fail(
                    UploadError(
                        413,
                        "too_large",
                        f"the video is larger than the limit of {_mib(self.max_bytes)}",
                    )
                )
                return
            if not self._sniffed:
                self._head += chunk[: SNIFF_BYTES - len(self._head)]
                if len(self._head) >= SNIFF_BYTES:
                    self._sniff()
            try:
                self._handle.write(chunk)  # type: ignore[union-attr]
            except OSError as exc:
                self._storage_failed(exc)
        else:
            self._text += chunk
            if len(self._text) > MAX_FIELD_BYTES:
                self._fail(
                    UploadError(
                        422,
                        "field_too_long",
                        f"form field {self._part_name!r} is longer than {MAX_FIELD_BYTES} bytes",
                    )
                )

    def on_part_end(self) -> None:
        if self.error is not None:
            return
        if self._is_file:
            if not self._sniffed:
                self._sniff()
            try:  # buffered bytes reach the disk here: a full disk may only show now
                self._close_file()
            except OSError as exc:
                self._storage_failed(exc)
        elif self._part_name:
            self.fields[self._part_name] = self._text.decode("utf-8", "replace")

    # --- helpers -------------------------------------------------------------------------------
    def _check_text_field(self, name: str) -> None:
        # Refused as soon as the part's headers arrive, not at the end of the body: a text part
        # waits in memory until then, so only one of each known field may ever be kept.
        if name not in TEXT_FIELDS:
            allowed = ", ".join(sorted({FILE_FIELD, *TEXT_FIELDS}))
            message = f"unknown form field {name[:100]!r} (this form takes {allowed})"
            self._fail(UploadError(422, "bad_field", message))
        elif name in self._names_seen:
            self._fail(UploadError(422, "bad_field", f"form field {name!r} sent twice"))
        self._names_seen.add(name)

    def _sniff(self) -> None:
        self._sniffed = True
        if not looks_like_video(bytes(self._head)):
            self._fail(
                UploadError(
                    415,
                    "not_a_video",
                    f"{self.filename!r} is not a video (its first bytes match no video container: "
                    "MP4/MOV, WebM/MKV, AVI, FLV, MPEG-TS/PS, Ogg, ASF/WMV)",
                )
            )

    def _fail(self, error: UploadError) -> None:
        if self.error is None:
            self.error = error

    def _storage_failed(self, exc: OSError) -> UploadError:
        # Disk full, a quota, an I/O error: the operator's to fix, so the detail (which says
        # where the server keeps its files) goes to the log, and the client is told to retry.
        logger.error("upload %r could not be written to %s: %s", self.filename, self.tmp_dir, exc)
        error = UploadError(503, STORAGE_UNAVAILABLE, STORAGE_UNAVAILABLE_MESSAGE)
        self._fail(error)
        return error

    def _close_file(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()  # type: ignore[attr-defined]

    def discard(self) -> None:
        """Close and delete the partial file (idempotent)."""
        with contextlib.suppress(OSError):  # a close that fails to flush: deleted all the same
            self._close_file()
        if self.file_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.file_path.unlink()


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


async def receive_upload(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    *,
    tmp_dir: Path,
    max_bytes: int,
) -> ReceivedUpload:
    """Stream a ``multipart/form-data`` body to ``tmp_dir``; return the complete upload.

    Args:
        content_type: the request's ``Content-Type`` header.
        content_length: the request's ``Content-Length`` header (``None`` when chunked).
        body: the request body's chunks (``Request.stream()``), consumed only as far as needed.
        tmp_dir: where the ``.part`` file goes (created if missing).
        max_bytes: size limit of the video file.

    Raises:
        UploadError: 400 malformed form, 411/413 size, 415 not multipart or not a video,
            422 missing or duplicate file, 503 the file could not be written (disk full).
            Nothing is left in ``tmp_dir`` then.

    """
    mime, params = parse_options_header(content_type or "")
    if mime != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError(
            415,
            "not_multipart",
            "send the video as multipart/form-data with the file in a field named 'file'",
        )
    body_limit = max_bytes + FORM_OVERHEAD_BYTES
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise UploadError(400, "bad_length", "Content-Length is not a number") from None
        if declared > body_limit:
            raise UploadError(
                413,
                "too_large",
                f"the upload ({_mib(declared)}) is larger than the limit of {_mib(max_bytes)}",
            )
    collector = _FormCollector(tmp_dir, max_bytes)
    try:
        tmp_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise collector._storage_failed(exc) from None
    parser = MultipartParser(
        params[b"boundary"],
        {  # type: ignore[arg-type]
            "on_part_begin": collector.on_part_begin,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
        },
    )
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > body_limit:
                collector._fail(
                    UploadError(
                        413,
                        "too_large",
                        f"the upload is larger than the limit of {_mib(max_bytes)}",
                    )
                )
            else:
                try:
                    parser.write(chunk)
                except Exception as exc:  # python-multipart raises its own error types
                    raise UploadError(400, "bad_form", f"malformed multipart body: {exc}") from None
            if collector.error is not None:
                raise collector.error
        try:
            parser.finalize()
        except Exception as exc:
            raise UploadError(400, "bad_form", f"malformed multipart body: {exc}") from None
        if collector.error is not None:
            raise collector.error
        if collector.file_path is None or collector._handle is not None:
            raise UploadError(
                422, "no_file", "the form has no complete file in a field named 'file'"
            )
        if collector.file_size == 0:
            raise UploadError(415, "not_a_video", "the uploaded file is empty")
    except BaseException:
        collector.discard()
        raise
    logger.info("received %s (%d bytes)", collector.filename, collector.file_size)
    return ReceivedUpload(
        collector.file_path, collector.filename, collector.file_size, collector.fields
    )


@contextlib.contextmanager
def _capture(path: Path) -> Iterator[cv2.VideoCapture]:
    cap = cv2.VideoCapture(str(path))
    try:
        yield cap
    finally:
        cap.release()


def probe_video(path: Path, filename: str, max_duration_s: float) -> VideoProbe:
    """Check that ``path`` decodes as a video no longer than ``max_duration_s``.

    The duration comes from the container (frame count / frame rate); when the container does
    not say, it is ``None`` here and the analysis checks it again on the decoded frames.

    Raises:
        UploadError: 415 when no frame decodes, 413 when the video is too long.

    """
    with _capture(path) as cap:
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok or frame is None:
            raise UploadError(
                415,
                "not_a_video",
                f"{filename!r} is not a video that can be decoded",
            )
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        fps = cap.get(cv2.CAP_PROP_FPS)
    duration = count / fps if 0 < count < 1e8 and 0 < fps < 1000 else None
    if duration is not None and math.isfinite(duration) and duration > max_duration_s:
        raise UploadError(
            413,
            "too_long",
            f"the video lasts {duration:.0f} s; the limit is {max_duration_s:.0f} s",
        )
    return VideoProbe(int(frame.shape[1]), int(frame.shape[0]), duration)
