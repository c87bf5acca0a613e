"""System shared memory for the frames, when client and server share a host.

Frames are the bulk of a request (16 frames of 720p = 44 MB). Over loopback, writing them into
a ``/dev/shm`` region that the server registered once, instead of serialising them into every
gRPC/HTTP message, saves a copy and the protocol encoding on both sides. One region per client,
grown when a bigger request comes, unregistered and removed on :meth:`FrameRegion.close`.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any

import numpy as np
import tritonclient.utils.shared_memory as shm
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

_COUNTER = itertools.count()
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def is_loopback(url: str) -> bool:
    """Return True when ``host:port`` names this machine."""
    host = url.rsplit(":", 1)[0] if url.count(":") == 1 or url.startswith("[") else url
    return host in LOOPBACK_HOSTS


class FrameRegion:
    """A registered system shared-memory region holding one request's frames."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._name = f"fakescope_client_{os.getpid()}_{next(_COUNTER)}"
        self._handle: Any = None
        self._size = 0

    def put(self, frames: NDArray[np.uint8]) -> tuple[str, int]:
        """Copy ``frames`` into the region (growing it if needed); return ``(name, bytes)``."""
        if frames.nbytes > self._size:
            self.close()
            size = max(frames.nbytes, 2 * self._size)
            self._handle = shm.create_shared_memory_region(self._name, f"/{self._name}", size)
            try:
                self._client.register_system_shared_memory(self._name, f"/{self._name}", size)
            except Exception:
                shm.destroy_shared_memory_region(self._handle)
                self._handle = None
                raise
            self._size = size
        shm.set_shared_memory_region(self._handle, [frames])
        return self._name, frames.nbytes

    def close(self) -> None:
        """Unregister and remove the region (safe to call twice)."""
        if self._handle is None:
            return
        try:
            self._client.unregister_system_shared_memory(self._name)
        except Exception as exc:  # the server may be gone; the local region still goes
            logger.debug("unregistering %s failed: %s", self._name, exc)
        shm.destroy_shared_memory_region(self._handle)
        self._handle = None
        self._size = 0
