"""Training augmentations for face crops from compressed video.

Served faces come from re-encoded, downscaled, often blurry video, so the classifier must not
learn from pixel-exact detail. Each transform is drawn with its own probability from a seeded
``numpy`` generator (pure function of the generator's state, so training is reproducible):
horizontal flip, small shift/scale/rotation (zero border, like the crops' padding),
brightness/contrast, hue/saturation, Gaussian blur, downscale + upscale, Gaussian noise,
cut-out (a random square zeroed) and JPEG re-compression at a random quality (the artefacts
H.264 leaves at low bit rates).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["augment_crop"]


def augment_crop(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return an augmented copy of a UINT8 ``[S, S, 3]`` RGB face crop."""
    out = crop.copy()
    size = out.shape[0]
    if rng.random() < 0.5:
        out = out[:, ::-1].copy()
    if rng.random() < 0.3:
        matrix = cv2.getRotationMatrix2D(
            (size / 2, size / 2), rng.uniform(-10, 10), rng.uniform(0.9, 1.1)
        )
        matrix[:, 2] += rng.uniform(-0.06, 0.06, size=2) * size
        out = cv2.warpAffine(out, matrix, (size, size), borderMode=cv2.BORDER_CONSTANT)
    if rng.random() < 0.5:
        alpha, beta = rng.uniform(0.8, 1.2), rng.uniform(-25, 25)
        out = cv2.convertScaleAbs(out, alpha=alpha, beta=beta)
    if rng.random() < 0.3:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-4, 4)) % 180
        hsv[..., 1] *= rng.uniform(0.8, 1.2)
        out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    if rng.random() < 0.2:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < 0.25:
        factor = rng.uniform(0.4, 0.9)
        small = max(8, round(size * factor))
        out = cv2.resize(out, (small, small), interpolation=cv2.INTER_AREA)
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.2:
        noise = rng.normal(0.0, rng.uniform(2, 8), size=out.shape)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        # cut-out: hide a random patch so no single region (eyes, mouth) carries the decision
        side = max(1, round(size * rng.uniform(0.1, 0.4)))
        x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        out[y0 : y0 + side, x0 : x0 + side] = 0
    if rng.random() < 0.5:
        quality = int(rng.integers(40, 96))
        ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(out)
