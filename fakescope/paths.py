"""Where the project's folders are: found once, here, from this file's place in the checkout."""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["MODEL_REPOSITORY", "PROJECT_ROOT"]

#: The checkout (``fakescope/`` sits at its top level; the package is installed editable).
PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
#: The Triton model repository the server loads by default.
MODEL_REPOSITORY: Final = PROJECT_ROOT / "model_repository"
