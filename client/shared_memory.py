"""System shared memory for the frames, when client and server share a host.

Frames are the bulk of a request (16 frames of 720p = 44 MB). Over loopback, writing them into
a ``/dev/shm`` region that the server registered once, instead of serialising them into every
gRPC/HTTP message, saves a copy and the protocol encoding on both sides.

A client holds at most :data:`MAX_REGIONS` regions (:class:`FrameRegions`). A video can be
decoded straight into one (:meth:`FrameRegions.lend`): its frames are then sent without being
copied at all, which spares the client one pass over 44 MB per video. A lent region is the
frames array's memory for as long as that array (or any view of it) lives, and no other request
is written into it meanwhile; frames from anywhere else are copied into a region that is free.
Each region is registered with the server on its first use (in the calling thread, never in the
one that decodes), grown when a bigger request comes, and unregistered and removed on
:meth:`FrameRegions.close`.
"""

from __future__ import annotations

import itertools
import logging
import mmap
import os
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from multiprocessing import resource_tracker
from typing import Final

import numpy as np
from numpy.typing import NDArray

from fakescope.client.native_threads import os_lock
from fakescope.paths import SHM_DIR

logger = logging.getLogger(__name__)

_COUNTER = itertools.count()
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
#: Where POSIX shared-memory objects live on Linux (``shm_open``'s namespace), as Triton maps them.
#: Regions one client holds at most. One is all a client uses while each video's frames are
#: dropped before the next is decoded (the CLI, the web service, the load generator); the second
#: lets a caller keep one video's frames while the next is decoded and sent without a copy.
MAX_REGIONS: Final = 2
#: The prefix of every region's name (the server lists them by it).
REGION_PREFIX: Final = "fakescope_client_"


#: Held around every call to the resource tracker: its own lock is ``threading``'s, gevent's
#: where gevent patched it, and then must never be contended by two native threads.
_TRACKER_LOCK = os_lock()


def is_loopback(url: str) -> bool:
    """Return True when ``host:port`` names this machine."""
    host = url.rsplit(":", 1)[0] if url.count(":") == 1 or url.startswith("[") else url
    return host in LOOPBACK_HOSTS


class _Region:
    """One ``/dev/shm`` object mapped into this process; registered with the server or not."""

    def __init__(self, size: int) -> None:
        self.name = f"{REGION_PREFIX}{os.getpid()}_{next(_COUNTER)}"
        self.size = size
        self.registered = False
        self.in_flight = False  # the server may be reading it: a request is being sent
        self._lent: weakref.ref[NDArray[np.uint8]] | None = None
        fd = os.open(SHM_DIR / self.name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            # Pages taken now: a region only sized (ftruncate) on a full /dev/shm is made, and
            # the decoder's first write into it kills the process (SIGBUS). This way it is
            # refused here (ENOSPC), and the frames go in the request.
            os.posix_fallocate(fd, 0, size)
            self._mapping: mmap.mmap | None = mmap.mmap(fd, size)
        except BaseException:
            os.unlink(SHM_DIR / self.name)
            raise
        finally:
            os.close(fd)
        # removed by Python's resource tracker should this process die without closing it
        with _TRACKER_LOCK:
            resource_tracker.register(self.key, "shared_memory")
        self.address = np.frombuffer(self._mapping, np.uint8, count=1).ctypes.data

    @property
    def key(self) -> str:
        """The ``shm_open`` key the server maps the region by."""
        return f"/{self.name}"

    def lent_out(self) -> bool:
        """Whether an array lent from this region (or a view of it) is still alive."""
        return self._lent is not None and self._lent() is not None

    def is_free(self) -> bool:
        """Whether a request's frames may be written into the region now."""
        return not self.in_flight and not self.lent_out()

    def lend(self, shape: tuple[int, ...]) -> NDArray[np.uint8]:
        """Return a uint8 array of ``shape`` whose memory is the region's start."""
        assert self._mapping is not None
        # ``frombuffer`` holds the mapping's buffer for as long as the array or any view of it
        # lives (``np.ndarray(buffer=...)`` does not), so the mapping cannot be closed under
        # them; every view's ``base`` is this array, whose life tells whether frames use it.
        whole = np.frombuffer(self._mapping, np.uint8, count=int(np.prod(shape)))
        self._lent = weakref.ref(whole)
        return whole.reshape(shape)

    def holds(self, frames: NDArray[np.uint8]) -> bool:
        """Whether ``frames`` are already in the region, where the server reads them."""
        return (
            self.lent_out()
            and frames.flags.c_contiguous
            and frames.ctypes.data == self.address
            and frames.nbytes <= self.size
        )

    def write(self, frames: NDArray[np.uint8]) -> None:
        """Copy ``frames`` to the region's start."""
        assert self._mapping is not None
        target = np.frombuffer(self._mapping, np.uint8, count=frames.nbytes)
        np.copyto(target.reshape(frames.shape), frames)

    def remove(self) -> None:
        """Remove the region's name and, unless frames lent from it live on, its mapping.

        Lent frames keep the mapping (their memory) until they are dropped; it then goes
        with them.
        """
        if self._mapping is None:
            return
        mapping, self._mapping = self._mapping, None
        with suppress(FileNotFoundError):
            os.unlink(SHM_DIR / self.name)
        with _TRACKER_LOCK:
            resource_tracker.unregister(self.key, "shared_memory")
        with suppress(BufferError):  # lent frames still use it: unmapped when they are dropped
            mapping.close()


class FrameRegions:
    """The shared-memory regions of one client (at most :data:`MAX_REGIONS`).

    Thread-safe: a video may be decoded into a region in one thread while another sends one.

    Args:
        register: registers a region with the server: ``(name, key, byte_size)``, as
            tritonclient's ``register_system_shared_memory``; it raises on failure.
        unregister: unregisters a region by name, as ``unregister_system_shared_memory``.

    """

    def __init__(
        self, register: Callable[[str, str, int], None], unregister: Callable[[str], None]
    ) -> None:
        self._server_register = register
        self._server_unregister = unregister
        self._regions: list[_Region] = []
        # held by a decoding thread as well as the caller's: never across a call to the server
        self._lock = os_lock()

    def lend(self, shape: tuple[int, ...]) -> NDArray[np.uint8] | None:
        """Return an array of ``shape`` in a free region, for frames sent without a copy.

        ``None`` when no region is free or can be made (the caller then uses its own memory,
        and :meth:`sending` copies it). Makes no call to the server.
        """
        nbytes = int(np.prod(shape))
        if nbytes == 0:  # nothing to map
            return None
        with self._lock:
            region = next((r for r in self._regions if r.is_free() and r.size >= nbytes), None)
            if region is None and len(self._regions) < MAX_REGIONS:
                try:
                    region = _Region(nbytes)
                except OSError as exc:
                    logger.warning("no shared-memory region for the frames (%s)", exc)
                    return None
                self._regions.append(region)
            return None if region is None else region.lend(shape)

    @contextmanager
    def sending(self, frames: NDArray[np.uint8]) -> Iterator[tuple[str, int] | None]:
        """Have ``frames`` in a registered region while the block sends them.

        Yields the region's name and the frames' byte size, or ``None`` when every region is
        in use (the frames then go in the request). Frames lent from a region are not copied;
        others are copied into a free region, made or grown as needed.

        Raises:
            Exception: whatever the server's registration raises (the region is removed).

        """
        with self._lock:
            region, dropped = self._place(frames)
            if region is not None:
                region.in_flight = True
        if dropped is not None:  # told to the server outside the lock: a call that may yield
            self._unregister(dropped)
            dropped.remove()
        if region is None:
            yield None
            return
        try:
            if not region.registered:
                try:
                    self._server_register(region.name, region.key, region.size)
                except Exception:
                    with self._lock:
                        self._regions.remove(region)
                    region.remove()
                    raise
                region.registered = True
            yield region.name, frames.nbytes
        finally:
            region.in_flight = False

    def close(self) -> None:
        """Unregister and remove every region (safe to call twice)."""
        with self._lock:
            regions, self._regions = self._regions, []
        for region in regions:
            self._unregister(region)
            region.remove()

    def _place(self, frames: NDArray[np.uint8]) -> tuple[_Region | None, _Region | None]:
        """Return the region ``frames`` are in or are copied into, and one to drop.

        The lock is held. A region too small for ``frames`` is made again, at least twice as
        large; the old one is returned for the caller to unregister and remove.
        """
        for held in self._regions:
            if held.holds(frames):
                return (held if not held.in_flight else None), None
        region = next((r for r in self._regions if r.is_free() and r.size >= frames.nbytes), None)
        smaller = None
        if region is None:
            smaller = next((r for r in self._regions if r.is_free()), None)
            if smaller is None and len(self._regions) >= MAX_REGIONS:
                return None, None
            size = max(frames.nbytes, 2 * smaller.size if smaller is not None else 0)
            region = _Region(size)  # before anything changes: it may fail
            if smaller is not None:
                self._regions.remove(smaller)
            self._regions.append(region)
        region.write(frames)
        return region, smaller

    def _unregister(self, region: _Region) -> None:
        if not region.registered:
            return
        region.registered = False
        try:
            self._server_unregister(region.name)
        except Exception as exc:  # the server may be gone; the local region still goes
            logger.debug("unregistering %s failed: %s", region.name, exc)
