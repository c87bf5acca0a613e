"""Where a model came from: the code's git commit and the command that was run.

The commit is read from the ``.git`` folder's files (``HEAD``, the ref it names, or
``packed-refs``); no ``git`` process is started, so this works where git is not installed.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from fakescope.paths import PROJECT_ROOT

__all__ = ["command_line", "git_commit"]


def git_commit(start: Path = PROJECT_ROOT) -> str:
    """Return the commit checked out in the repository holding ``start``, or ``"unknown"``.

    ``"unknown"`` is returned (not raised) because provenance is informational: a package
    installed from a wheel has no ``.git`` folder.
    """
    for folder in [start, *start.parents]:
        git = folder / ".git"
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = git.read_text().strip()
            if text.startswith("gitdir:"):
                git = (folder / text.split(":", 1)[1].strip()).resolve()
        if (git / "HEAD").is_file():
            return _resolve_head(git)
    return "unknown"


def _resolve_head(git: Path) -> str:
    head = (git / "HEAD").read_text().strip()
    if not head.startswith("ref:"):
        return head
    ref = head.split(":", 1)[1].strip()
    ref_file = git / ref
    if ref_file.is_file():
        return ref_file.read_text().strip()
    packed = git / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    return "unknown"


def command_line(argv: list[str] | None = None, prog: str = "fakescope") -> str:
    """Return the command as a shell line (``prog`` + ``argv``; default: this process's)."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join([prog, *args])
