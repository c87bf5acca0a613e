"""Run one piece of a test as an unprivileged user, so that "permission denied" really happens.

Not a test module. Root is not denied by file modes (``chmod 000`` still reads), and CI runs
the suite as root, so a permission test run as root checks nothing. :func:`as_unprivileged`
runs the check:

* as it is, when the process is not root (a developer's usual account);
* as root, in a forked child that first drops to the ``nobody`` user (``setgroups([])``,
  ``setgid``, ``setuid``: no way back), and hands its result or its exception back through a
  pipe. The parent process (pytest, the session's servers) keeps its privileges.

The child is a fork, not a new interpreter: it needs no access to the interpreter, the virtual
environment or the checkout (``/root`` is often mode 700), because everything is already
imported. Only the files the check itself touches must be reachable: make them under
:func:`reachable_dir`, whose path every user may traverse (pytest's ``tmp_path`` lives under
``/tmp/pytest-of-root``, mode 700, where ``nobody`` would be stopped at the directory instead
of at the file).
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import pwd
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

__all__ = ["UNPRIVILEGED_USER", "as_unprivileged", "reachable_dir", "runs_privileged"]

T = TypeVar("T")

#: The user the child becomes. Debian and most distributions define it; without an entry the
#: conventional ids 65534/65534 are used (a uid needs no passwd entry to be dropped to).
UNPRIVILEGED_USER = "nobody"
_FALLBACK_IDS = (65534, 65534)
#: How long before the parent kills a hung child the child prints its threads' stacks.
_STACKS_BEFORE_KILL_S = 5.0


def runs_privileged() -> bool:
    """Return whether this process is root, i.e. whether file modes do not deny it."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _unprivileged_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        return _FALLBACK_IDS
    return entry.pw_uid, entry.pw_gid


@contextlib.contextmanager
def reachable_dir() -> Iterator[Path]:
    """Yield a fresh folder in the system temp dir that any user may enter (mode 711).

    Files made in it stay owned by the caller; their own mode decides who may read them.
    """
    folder = Path(tempfile.mkdtemp(prefix="fakescope-unprivileged-"))
    try:
        folder.chmod(0o711)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def as_unprivileged(check: Callable[[], T], *, timeout_s: float = 120.0) -> T:
    """Run ``check`` without root's privileges and return its (picklable) result.

    Not root: ``check()`` runs here. Root: it runs in a forked child as ``nobody``; an
    exception in the child fails the test with the child's traceback. Modules that ``check``
    would import lazily must be imported before: the child may not be able to read them.
    ``check`` must not open a gRPC channel: gRPC core's threads in this process may hold a lock
    at the fork that the child then waits on for good (seen once in CI); HTTP starts no thread.
    Only where root may not change its user (no ``CAP_SETUID``) is the test skipped.

    Raises:
        AssertionError: the child raised, died, or did not finish within ``timeout_s``.

    """
    if not runs_privileged():
        return check()
    uid, gid = _unprivileged_ids()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest, whatever happens in it
        try:
            os.close(read_fd)
            # a child that hangs (a lock some thread of the parent held at the fork, e.g.
            # gRPC's) prints where every thread of it stands before the parent kills it; to
            # the process's own stderr, as pytest may have replaced ``sys.stderr`` by an
            # object without a file descriptor
            faulthandler.dump_traceback_later(
                max(timeout_s - _STACKS_BEFORE_KILL_S, 1.0), file=sys.__stderr__
            )
            _child(check, write_fd, uid, gid)
        except BaseException:  # before _child took over: say why, then exit all the same
            with contextlib.suppress(BaseException):
                os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(1)
    os.close(write_fd)
    data = _read_all(read_fd, pid, timeout_s)
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if code != 0 or not data:
        raise AssertionError(
            f"the child running as {UNPRIVILEGED_USER} (uid {uid}) ended with "
            f"exit code {code} and sent no result"
        )
    kind, value = pickle.loads(data)  # our own child's bytes
    if kind == "cannot_drop":  # root without CAP_SETUID/CAP_SETGID: no unprivileged user here
        pytest.skip(f"cannot drop root privileges to uid {uid} here: {value}")
    if kind == "raised":
        raise AssertionError(f"as {UNPRIVILEGED_USER} (uid {uid}, forked child):\n{value}")
    return value


def _child(check: Callable[[], object], write_fd: int, uid: int, gid: int) -> NoReturn:
    """In the forked child: drop to ``uid``/``gid``, run ``check``, send the outcome, exit."""
    status = 1
    try:
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        except PermissionError as exc:
            payload: tuple[str, object] = ("cannot_drop", str(exc))
        else:
            if os.geteuid() == 0 or os.getegid() == 0:  # pragma: no cover - kernel refused
                raise RuntimeError("still root after setuid")
            try:
                payload = ("ok", check())
                pickle.dumps(payload)  # an unpicklable result is reported as a failure too
            except BaseException:  # every failure goes back to the parent
                payload = ("raised", traceback.format_exc())
        data = pickle.dumps(payload)
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)
        status = 0
    except BaseException:  # report, then exit without running pytest's own exit
        with contextlib.suppress(BaseException):
            os.write(2, traceback.format_exc().encode())
    finally:
        os._exit(status)


def _read_all(fd: int, pid: int, timeout_s: float) -> bytes:
    """Read the child's answer until it closes the pipe; kill it after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    chunks: list[bytes] = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(
                    f"the child running as {UNPRIVILEGED_USER} did not finish "
                    f"within {timeout_s:.0f} s (killed; its threads' stacks, printed "
                    f"{_STACKS_BEFORE_KILL_S:.0f} s before, are in the captured stderr)"
                )
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
    finally:
        os.close(fd)
