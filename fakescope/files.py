"""Files written whole: a reader, or a run that is interrupted, finds the old file or the new one.

Result files, served model configurations, training records and model cards are read by other
processes (Triton, a later ``evaluate``, the README's figures) and stand alone as the record of
a measurement. Writing one in place leaves half of it behind when the writer is killed, and a
reader at the wrong moment sees a part of it. Here the text goes to a temporary file beside the
target, is flushed to disk, and is renamed over the target (``os.replace``: atomic within one
filesystem, which a file beside the target is on).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["copy_file_atomically", "write_text_atomically"]


def _temporary_beside(path: Path) -> Path:
    # opened with "x" like any new file, so it gets the umask's mode, not mkstemp's 0600
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _replace_with(path: Path, write: Callable[[BinaryIO], object]) -> None:
    tmp = _temporary_beside(path)
    try:
        with tmp.open("xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` as a whole: the old content stays until it is done.

    Raises:
        OSError: the folder is missing or not writable, or the disk is full; ``path`` is then
            as it was and no temporary file is left.

    """
    data = text.encode("utf-8")
    _replace_with(Path(path), lambda handle: handle.write(data))


def copy_file_atomically(source: Path, destination: Path) -> None:
    """Copy ``source``'s bytes to ``destination`` as a whole (see :func:`write_text_atomically`).

    Raises:
        OSError: ``source`` cannot be read or ``destination`` cannot be written; ``destination``
            is then as it was.

    """
    with Path(source).open("rb") as original:
        _replace_with(Path(destination), lambda handle: shutil.copyfileobj(original, handle))
