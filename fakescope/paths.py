"""Where the project's folders are: found once, here, from this file's place in the checkout."""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["BENCH_VIDEOS_DIR", "MODEL_REPOSITORY", "PROJECT_ROOT", "SHM_DIR"]

#: The checkout (``fakescope/`` sits at its top level; the package is installed editable).
PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
#: The Triton model repository the server loads by default.
MODEL_REPOSITORY: Final = PROJECT_ROOT / "model_repository"
#: Where the benchmarks make their synthetic videos (``fakescope.benchmarks.videos``) and find
#: them again.
BENCH_VIDEOS_DIR: Final = PROJECT_ROOT / ".fakescope" / "bench-videos"
#: System shared memory: the frames regions and Triton's, one file each.
SHM_DIR: Final = Path("/dev/shm")
