"""Small face-crop datasets (``metadata.csv`` + tar shard or image files) made by the tests.

The faces are real: scikit-image's astronaut portrait, cut tight like ``dfdc_faces`` crops and
varied (shift, flip, brightness) so each image differs. Fakes get a visible blended patch.
"""

from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path

import cv2
import numpy as np

#: Stored crop size (as in ``dfdc_faces``).
CROP_SIDE = 224


def face_crop(index: int) -> np.ndarray:
    """A distinct real face crop (RGB uint8, ``CROP_SIDE`` px) for ``index``."""
    from skimage import data

    image = data.astronaut()
    dx, dy = (index * 7) % 21 - 10, (index * 11) % 17 - 8
    crop = image[40 + dy : 200 + dy, 160 + dx : 320 + dx]
    crop = cv2.resize(crop, (CROP_SIDE, CROP_SIDE), interpolation=cv2.INTER_LINEAR)
    if index % 2:
        crop = crop[:, ::-1]
    gain = 0.85 + 0.03 * (index % 10)
    return np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def fake_crop(index: int) -> np.ndarray:
    """A crude fake: the face with a blended, colour-shifted inner patch."""
    crop = face_crop(index).astype(np.float32)
    inner = crop[70:170, 60:160]
    crop[70:170, 60:160] = 0.5 * inner + 0.5 * np.clip(inner * [1.3, 0.8, 0.9], 0, 255)
    return crop.astype(np.uint8)


def jpeg(image: np.ndarray) -> bytes:
    """JPEG bytes of an RGB image."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def rows_for(n_real: int, fakes_per_real: int = 1) -> list[dict[str, str]]:
    """Metadata rows: ``n_real`` originals, each with ``fakes_per_real`` fakes."""
    rows = []
    for i in range(n_real):
        real = f"real{i:03d}.mp4"
        rows.append({"videoname": real, "label": "REAL", "original": ""})
        for j in range(fakes_per_real):
            rows.append({"videoname": f"fake{i:03d}_{j}.mp4", "label": "FAKE", "original": real})
    return rows


def image_for(row: dict[str, str], index: int) -> bytes:
    """The JPEG of one row (fake rows get the blended patch)."""
    return jpeg(fake_crop(index) if row["label"] == "FAKE" else face_crop(index))


def write_set(
    root: Path,
    rows: list[dict[str, str]],
    *,
    shard: bool = True,
    images: dict[str, bytes] | None = None,
) -> Path:
    """Write ``metadata.csv`` and one image per row (in ``faces-00.tar`` or as files).

    ``images`` overrides the bytes of some image names (``<stem>.jpg``).
    """
    root.mkdir(parents=True, exist_ok=True)
    with (root / "metadata.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["videoname", "label", "original"])
        writer.writeheader()
        writer.writerows(rows)
    contents = {
        Path(row["videoname"]).stem + ".jpg": image_for(row, i) for i, row in enumerate(rows)
    }
    contents.update(images or {})
    if shard:
        with tarfile.open(root / "faces-00.tar", "w") as tar:
            for name, data in contents.items():
                add_member(tar, name, data)
    else:
        for name, data in contents.items():
            (root / name).write_bytes(data)
    return root


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a regular file member ``name`` with ``data``."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
