"""Heatmaps of stored faces, made on request: where hiding the face moves the classifier's score.

A heatmap is never part of an analysis (so a video's processing time does not include it): it
is made when asked for — the API route or the result page's toggle — from the classifier's
input kept with the face (:func:`.faces.classifier_crop_png`), by
:func:`fakescope.client.occlusion.occlusion_map` through Triton, and drawn over that face crop
(:func:`overlay_png`): red where hiding a region lowered the fake score, blue where it raised
it, stronger where the change was larger.

One map is computed at a time per process: maps take the same CPU cores (or GPU) as the
analyses, and serialising them bounds what they take. The last maps are kept in memory, keyed
by job, face and served classifier version, so a toggle clicked again costs nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from fakescope.client.occlusion import OcclusionMap, at_input_size, occlusion_map
from fakescope.client.triton import DetectorClient

from .jobstore import FaceCrop

__all__ = [
    "Heatmap",
    "HeatmapBusyError",
    "HeatmapMaker",
    "decode_crop",
    "overlay_png",
]

logger = logging.getLogger(__name__)

#: Colours are scaled to the largest |drop|, but never to less than this (1 point of score):
#: a map of tiny, noisy drops stays pale instead of being stretched to full colour.
MIN_FULL_COLOUR_DROP: Final = 0.01
#: Opacity of the colour where the drop is largest.
MAX_ALPHA: Final = 0.6
#: How long a request waits for another map to finish before it is told to come back.
WAIT_FOR_TURN_S: Final = 30.0
#: Maps kept in memory per process.
CACHE_SIZE: Final = 64


class HeatmapBusyError(Exception):
    """Other heatmaps kept this one waiting past :data:`WAIT_FOR_TURN_S`."""


class StaleCropError(Exception):
    """The stored crop was framed for another classifier version than the one served now."""

    def __init__(self, framed_for: str, served: str) -> None:
        """Name both versions."""
        super().__init__(
            f"the face was framed for classifier version {framed_for}; version {served} is "
            "served now, and its input may be framed otherwise"
        )


@dataclass(frozen=True)
class Heatmap:
    """One face's occlusion map and its PNG overlay."""

    occlusion: OcclusionMap
    png: bytes


def decode_crop(crop: FaceCrop) -> NDArray[np.uint8]:
    """Return the stored classifier input as uint8 RGB ``[S, S, 3]``.

    Raises:
        ValueError: the stored bytes are not an image.

    """
    image = cv2.imdecode(np.frombuffer(crop.png, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("the stored face crop is not a readable image")
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def _diverging_lut() -> NDArray[np.uint8]:
    """256 BGR colours for OpenCV: blue (index 0) through white (128) to red (255)."""
    t = np.linspace(-1.0, 1.0, 256)
    red = np.where(t > 0, 1.0, 1.0 + t)  # fades out towards blue
    blue = np.where(t < 0, 1.0, 1.0 - t)  # fades out towards red
    green = 1.0 - np.abs(t)
    bgr = np.stack([blue, green, red], axis=-1) * 255.0
    lut: NDArray[np.uint8] = np.round(bgr).astype(np.uint8).reshape(256, 1, 3)
    return lut


_LUT: Final = _diverging_lut()


def overlay_png(crop: NDArray[np.uint8], drops: NDArray[np.float32]) -> bytes:
    """Draw the map of ``drops`` over ``crop`` (RGB, the classifier's input); return a PNG.

    The grid is smoothed up to the crop's size (bicubic), coloured with a blue-white-red
    OpenCV colour map (red: hiding the region lowered the fake score) and alpha-blended with
    opacity proportional to the drop's size, so unmarked regions show the face unchanged.
    """
    size = crop.shape[0]
    scale = max(float(np.abs(drops).max()), MIN_FULL_COLOUR_DROP)
    signed = cv2.resize(
        (drops / scale).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC
    )
    signed = np.clip(signed, -1.0, 1.0)
    index = np.round((signed + 1.0) * 127.5).astype(np.uint8)
    colour_bgr = cv2.applyColorMap(index, _LUT)
    alpha = (MAX_ALPHA * np.abs(signed))[..., None]
    face_bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR).astype(np.float32)
    blended = face_bgr * (1.0 - alpha) + colour_bgr.astype(np.float32) * alpha
    ok, encoded = cv2.imencode(".png", np.round(blended).astype(np.uint8))
    if not ok:
        raise ValueError("OpenCV could not encode the heatmap as PNG")
    return encoded.tobytes()


class HeatmapMaker:
    """Makes heatmaps one at a time and keeps the last :data:`CACHE_SIZE` of them."""

    def __init__(self, capacity: int = CACHE_SIZE):
        """Create an empty cache holding at most ``capacity`` maps."""
        self._turn = threading.Lock()
        self._cache_lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int, str], Heatmap] = OrderedDict()
        self._capacity = capacity

    def heatmap(
        self, client: DetectorClient, job_id: str, position: int, crop: FaceCrop
    ) -> Heatmap:
        """Return the heatmap of face ``position`` of ``job_id`` by the served classifier.

        Raises:
            HeatmapBusyError: other maps kept this one waiting too long.
            StaleCropError: the crop was framed for another classifier version: the served
                one would score a picture it never gets from the detector.
            ValueError: the stored crop is unreadable.
            fakescope.client.triton.ServerUnreachableError: Triton did not answer.
            fakescope.client.triton.ServerError: Triton answered with an error.

        """
        served = client.classifier_input().version
        if crop.model_version != served:
            raise StaleCropError(crop.model_version, served)
        key = (job_id, position, served)
        cached = self._cached(key)
        if cached is not None:
            return cached
        if not self._turn.acquire(timeout=WAIT_FOR_TURN_S):
            raise HeatmapBusyError(f"other heatmaps kept this one waiting {WAIT_FOR_TURN_S:g} s")
        try:
            cached = self._cached(key)  # made by the request that held the turn
            if cached is not None:
                return cached
            face = decode_crop(crop)
            made = occlusion_map(client, face)
            scored, _ = at_input_size(face, made.input_size)
            heatmap = Heatmap(made, overlay_png(scored, made.drops))
        finally:
            self._turn.release()
        logger.info(
            "heatmap of job %s face %d: base score %.3f, %.3f s",
            job_id,
            position,
            made.base_score,
            made.seconds,
        )
        with self._cache_lock:
            self._cache[key] = heatmap
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return heatmap

    def _cached(self, key: tuple[str, int, str]) -> Heatmap | None:
        with self._cache_lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
            return found
