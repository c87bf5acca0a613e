"""Occlusion sensitivity: which regions of a face crop, when hidden, move the classifier's score.

The served classifier scores the crop as it is, then once per cell of a ``grid`` × ``grid``
layout with a square patch around that cell hidden. The map holds each cell's score drop,
``base - masked``: positive where hiding the region lowers the fake score (the region pushed
the score up), negative where hiding it raises the score. Nothing but forward passes: it works
with any served classifier, no gradients needed. All variants go to Triton together, in
requests of at most the classifier's ``max_batch_size``; the input size comes from the
served version's metadata (:meth:`fakescope.client.triton.DetectorClient.classifier_input`).

Patches are twice a cell's side by default (``patch=0.25`` of the crop at ``grid=8``), so
neighbouring patches overlap by half: a feature that straddles a cell border is still hidden
whole by some patch.

Masking: a hidden patch is replaced by a Gaussian blur of the crop (sigma = a quarter of the
patch side), not by the classifier's normalisation mean (a grey square). A grey square draws
four sharp new edges into the face, and sharp edges and blending seams are what a face-swap
detector learns to react to, so a grey patch can move the score by itself; a blurred patch
takes away the region's detail (skin texture, seams, teeth, eye glints) while keeping its
colour and coarse shape, so the score change is about what was taken away. Blur also needs
nothing the server does not state: the normalisation mean is in the ONNX file, not in the
model config a client can read.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import cv2
import numpy as np
from numpy.typing import NDArray

from fakescope import contract

if TYPE_CHECKING:
    from fakescope.client.triton import DetectorClient

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_PATCH",
    "MASKING",
    "OcclusionMap",
    "at_input_size",
    "blurred",
    "hide_regions",
    "occlusion_map",
    "patch_box",
]

logger = logging.getLogger(__name__)

#: Cells per side of the map.
DEFAULT_GRID: Final = 8
#: Side of a hidden patch, as a fraction of the crop's side (two cells at the default grid).
DEFAULT_PATCH: Final = 0.25
#: How a patch is hidden (named in the map's JSON).
MASKING: Final = "gaussian_blur"
#: Blur sigma as a fraction of the patch side.
BLUR_SIGMA_PER_PATCH: Final = 0.25

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class OcclusionMap:
    """The score drop of each grid cell's patch, and how it was measured.

    Attributes:
        base_score: the classifier's fake probability for the crop as it is.
        drops: float32 ``[grid, grid]``, ``base_score - score with the cell's patch hidden``
            (row 0 is the top of the face).
        grid: cells per side.
        patch_pixels: side of a hidden patch in the classifier's input pixels.
        input_size: the served classifier's input side (pixels).
        resized_from: the given crop's side when it had to be resized to ``input_size``.
        model_version: the served classifier version that scored it.
        seconds: wall-clock time of the scoring (all requests, blur and masking included).

    """

    base_score: float
    drops: NDArray[np.float32]
    grid: int
    patch_pixels: int
    input_size: int
    resized_from: int | None
    model_version: str
    seconds: float

    def box(self, row: int, col: int) -> Box:
        """Return the patch of cell ``(row, col)`` as ``(x0, y0, x1, y1)`` in input pixels."""
        return patch_box(self.input_size, self.grid, self.patch_pixels, row, col)

    def ranked(self) -> list[tuple[int, int]]:
        """Cells from the largest score drop to the smallest (ties: row-major order)."""
        order = np.argsort(-self.drops.reshape(-1), kind="stable")
        return [(int(i) // self.grid, int(i) % self.grid) for i in order]

    def to_json_dict(self) -> dict[str, Any]:
        """Return a JSON-safe form: the grid of drops (6 decimals) and how they were measured."""
        return {
            "base_score": round(self.base_score, 6),
            "drops": [[round(float(v), 6) for v in row] for row in self.drops],
            "grid": self.grid,
            "patch_pixels": self.patch_pixels,
            "input_size": self.input_size,
            "resized_from": self.resized_from,
            "masking": MASKING,
            "model_version": self.model_version,
            "seconds": round(self.seconds, 4),
        }


def patch_box(size: int, grid: int, patch_pixels: int, row: int, col: int) -> Box:
    """Return the ``patch_pixels`` square centred on cell ``(row, col)``, clipped to the crop."""
    if not (0 <= row < grid and 0 <= col < grid):
        raise ValueError(f"cell ({row}, {col}) is outside a {grid}x{grid} grid")
    cell = size / grid
    x0 = round((col + 0.5) * cell - patch_pixels / 2)
    y0 = round((row + 0.5) * cell - patch_pixels / 2)
    return (
        max(0, x0),
        max(0, y0),
        min(size, x0 + patch_pixels),
        min(size, y0 + patch_pixels),
    )


def blurred(crop: NDArray[np.uint8], patch_pixels: int) -> NDArray[np.uint8]:
    """Blur the whole crop as a hidden patch shows it (sigma: a quarter of the patch side)."""
    sigma = max(1.0, BLUR_SIGMA_PER_PATCH * patch_pixels)
    out = cv2.GaussianBlur(crop, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    return np.asarray(out, dtype=np.uint8)


def hide_regions(
    crop: NDArray[np.uint8], boxes: list[Box], blur: NDArray[np.uint8]
) -> NDArray[np.uint8]:
    """Return a copy of ``crop`` with each ``(x0, y0, x1, y1)`` box replaced by ``blur``."""
    out = crop.copy()
    for x0, y0, x1, y1 in boxes:
        out[y0:y1, x0:x1] = blur[y0:y1, x0:x1]
    return out


def at_input_size(crop: NDArray[Any], size: int) -> tuple[NDArray[np.uint8], int | None]:
    """Return ``crop`` at ``size`` × ``size`` and its former side (``None`` when unchanged).

    Raises:
        ValueError: ``crop`` is not a square uint8 RGB image.

    """
    if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"a face crop must be uint8 [S, S, 3], got {crop.dtype} {crop.shape}")
    if crop.shape[0] != crop.shape[1] or crop.shape[0] < 2:
        raise ValueError(f"a face crop must be square, got {crop.shape[1]}x{crop.shape[0]}")
    if crop.shape[0] == size:
        return np.ascontiguousarray(crop), None
    interpolation = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    resized = cv2.resize(crop, (size, size), interpolation=interpolation)
    return np.asarray(resized, dtype=np.uint8), int(crop.shape[0])


def occlusion_map(
    client: DetectorClient,
    face_crop: NDArray[np.uint8],
    *,
    grid: int = DEFAULT_GRID,
    patch: float = DEFAULT_PATCH,
) -> OcclusionMap:
    """Measure the served classifier's occlusion sensitivity on one face crop.

    Args:
        client: the Triton client; it scores with the served ``face_classifier``.
        face_crop: uint8 ``[S, S, 3]`` RGB, framed as ``face_detector`` frames faces for the
            classifier; resized to the served input size when ``S`` differs (noted in the map).
        grid: cells per side, 2…32 (``grid**2 + 1`` crops are scored).
        patch: side of a hidden patch as a fraction of the crop side, in (0, 1].

    Raises:
        ValueError: a bad crop, grid or patch.
        fakescope.client.triton.ServerUnreachableError: no answer from the server.
        fakescope.client.triton.ServerError: the server answered with an error.

    """
    if not 2 <= grid <= 32:
        raise ValueError(f"grid must be 2..32, got {grid}")
    if not 0 < patch <= 1:
        raise ValueError(f"patch must be in (0, 1], got {patch}")
    start = time.perf_counter()
    spec = client.classifier_input()
    crop, resized_from = at_input_size(face_crop, spec.input_size)
    patch_pixels = max(1, round(patch * spec.input_size))
    blur = blurred(crop, patch_pixels)
    variants = np.empty((grid * grid + 1, *crop.shape), dtype=np.uint8)
    variants[0] = crop
    for index in range(grid * grid):
        box = patch_box(spec.input_size, grid, patch_pixels, index // grid, index % grid)
        variants[index + 1] = hide_regions(crop, [box], blur)
    scores = client.score_faces(variants)
    seconds = time.perf_counter() - start
    base = float(scores[0])
    drops = (base - scores[1:]).astype(np.float32).reshape(grid, grid)
    logger.info(
        "occlusion map %dx%d (patch %d px) on %s v%s: %d crops in %.3f s",
        grid,
        grid,
        patch_pixels,
        contract.CLASSIFIER_MODEL,
        spec.version,
        variants.shape[0],
        seconds,
    )
    return OcclusionMap(
        base_score=base,
        drops=drops,
        grid=grid,
        patch_pixels=patch_pixels,
        input_size=spec.input_size,
        resized_from=resized_from,
        model_version=spec.version,
        seconds=seconds,
    )
