"""Files written whole (``fakescope.files``), on the real filesystem."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fakescope.files import copy_file_atomically, write_text_atomically

#: In a child process (the limit and the signal are per process): the file-size limit makes the
#: write fail half-way through, as a full disk would.
_WRITE_PAST_THE_SIZE_LIMIT = """
import resource, signal, sys
from fakescope.files import write_text_atomically
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    write_text_atomically(sys.argv[1], "new " * 10_000)
except OSError as exc:
    print(exc.errno)
"""


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_text_atomically_replaces_the_file_with_the_umasks_mode_when_it_existed(
    tmp_path: Path,
) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old\n")
    write_text_atomically(target, "néw\n")
    assert target.read_text(encoding="utf-8") == "néw\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # as a plain open() makes it
    assert _leftovers(tmp_path) == []


def test_write_text_atomically_keeps_the_old_file_when_the_write_fails_half_way(
    tmp_path: Path,
) -> None:
    target = tmp_path / "config.pbtxt"
    target.write_text("old\n")
    done = subprocess.run(
        [sys.executable, "-c", _WRITE_PAST_THE_SIZE_LIMIT, str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == str(errno.EFBIG)  # the failure came from the write itself
    assert target.read_text() == "old\n"
    assert _leftovers(tmp_path) == []


def test_copy_file_atomically_keeps_the_destination_when_the_source_fails_to_read(
    tmp_path: Path,
) -> None:
    target = tmp_path / "MODEL_CARD.md"
    target.write_text("old\n")
    # opens, then fails on the first read (EIO): the copy has begun when it fails
    with pytest.raises(OSError):
        copy_file_atomically(Path("/proc/self/mem"), target)
    assert target.read_text() == "old\n"
    assert _leftovers(tmp_path) == []


def test_copy_file_atomically_copies_every_byte_when_the_source_reads(tmp_path: Path) -> None:
    source = tmp_path / "card.md"
    source.write_bytes(bytes(range(256)) * 1000)
    copy_file_atomically(source, tmp_path / "copy.md")
    assert (tmp_path / "copy.md").read_bytes() == source.read_bytes()
