"""Self-blended images (SBI): fakes made from real faces alone.

After Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images" (CVPR 2022),
re-implemented here from the paper's description. A face is blended with a slightly altered
copy of *itself* inside a soft face mask. The result carries the generic traces of a face
swap — a blending boundary, a colour / sharpness mismatch between the inner face and its
surroundings, a small misalignment — without any identity change, so a classifier trained on
``real`` vs ``self-blended`` learns those traces and can be trained when only REAL videos exist.

The three steps of the paper:

1. **Source-target generation**: two copies of the face; one of them (source or target, at
   random) gets colour jitter (RGB shift, hue/saturation/value, brightness/contrast) and a
   frequency change (sharpen, or downscale + upscale); the source is then resized by a random
   factor around the face centre and translated by a few percent of the face size.
2. **Mask generation**: a face-shaped region from the landmarks (MTCNN gives five: eyes, nose,
   mouth corners, so the region is their convex hull grown about its centre and extended up to
   the forehead, or an ellipse fitted to them), deformed by a smooth random displacement field,
   blurred twice with random Gaussian kernels (eroding in between), and scaled by a blend ratio
   drawn from ``{0.25, 0.5, 0.75, 1, 1, 1}``.
3. **Blending**: ``fake = mask * source + (1 - mask) * target``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["BLEND_RATIOS", "face_mask", "self_blend"]

#: The paper's blend ratios (1 is three times as likely).
BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


def _face_geometry(landmarks: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(centre, inter-ocular distance, angle in degrees) from 5 MTCNN landmarks."""
    left_eye, right_eye = landmarks[0], landmarks[1]
    mouth = (landmarks[3] + landmarks[4]) / 2.0
    eyes = (left_eye + right_eye) / 2.0
    centre = eyes + 0.45 * (mouth - eyes)
    d_eye = float(np.linalg.norm(right_eye - left_eye))
    angle = float(np.degrees(np.arctan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0])))
    return centre, max(d_eye, 2.0), angle


def face_mask(
    shape: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw a random soft face mask, FP32 ``[H, W]`` in ``[0, 1]`` (step 2 of the module doc).

    ``landmarks`` are the five MTCNN points ``[5, 2]`` (x, y) in the image's pixels.
    """
    height, width = shape
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    centre, d_eye, angle = _face_geometry(landmarks)
    hard = np.zeros((height, width), np.uint8)
    if rng.random() < 0.5:
        # ellipse: the five points with forehead and chin room
        axes = (
            max(1, round(d_eye * rng.uniform(0.85, 1.15))),
            max(1, round(d_eye * rng.uniform(1.05, 1.4))),
        )
        cx, cy = (round(float(v)) for v in centre)
        cv2.ellipse(hard, (cx, cy), axes, angle, 0, 360, 255, thickness=-1)
    else:
        # convex hull of the landmarks, raised eyes (forehead) and lowered mouth (chin), grown
        up = np.array([np.sin(np.radians(angle)), -np.cos(np.radians(angle))])
        extra = np.concatenate(
            [
                landmarks[:2] + up * d_eye * rng.uniform(0.5, 0.9),
                landmarks[3:] - up * d_eye * rng.uniform(0.3, 0.6),
            ]
        )
        points = np.concatenate([landmarks, extra])
        grow = rng.uniform(1.1, 1.5)
        points = centre + (points - centre) * grow
        hull = cv2.convexHull(np.round(points).astype(np.int32))
        cv2.fillConvexPoly(hard, hull, 255)
    mask = hard.astype(np.float32) / 255.0
    mask = _deform(mask, amplitude=d_eye * rng.uniform(0.03, 0.12), rng=rng)
    k1 = _odd(d_eye * rng.uniform(0.1, 0.5))
    mask = cv2.GaussianBlur(mask, (k1, k1), 0)
    mask[mask < 0.99] = 0.0  # erode: the blend stays inside the hull
    k2 = _odd(d_eye * rng.uniform(0.2, 0.6))
    mask = cv2.GaussianBlur(mask, (k2, k2), 0)
    return np.clip(mask * float(rng.choice(BLEND_RATIOS)), 0.0, 1.0)


def _odd(value: float) -> int:
    k = max(3, round(value))
    return k if k % 2 else k + 1


def _deform(mask: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Warp ``mask`` by a smooth random displacement field of about ``amplitude`` pixels."""
    height, width = mask.shape
    grid = 4
    field = rng.normal(0.0, amplitude, size=(2, grid, grid)).astype(np.float32)
    dx = cv2.resize(field[0], (width, height), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(field[1], (width, height), interpolation=cv2.INTER_CUBIC)
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(mask, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _colour_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = image.astype(np.float32)
    out += rng.uniform(-20, 20, size=3).astype(np.float32)  # RGB shift
    hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-5, 5)) % 180
    hsv[..., 1] *= rng.uniform(0.85, 1.15)
    hsv[..., 2] *= rng.uniform(0.9, 1.1)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    contrast, brightness = rng.uniform(0.9, 1.1), rng.uniform(-0.1, 0.1) * 255
    out = (out - 127.5) * contrast + 127.5 + brightness
    return np.clip(out, 0, 255).astype(np.uint8)


def _frequency(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        blur = cv2.GaussianBlur(image, (0, 0), 1.0)
        amount = rng.uniform(0.3, 1.0)
        return cv2.addWeighted(image, 1 + amount, blur, -amount, 0)
    height, width = image.shape[:2]
    factor = rng.uniform(0.3, 0.7)
    small = cv2.resize(
        image,
        (max(1, round(width * factor)), max(1, round(height * factor))),
        interpolation=cv2.INTER_AREA,
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _geometry(image: np.ndarray, centre: np.ndarray, d_eye: float, rng: np.random.Generator):
    scale = rng.uniform(0.95, 1.05)
    shift = rng.uniform(-0.08, 0.08, size=2) * d_eye
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 0.0, scale)
    matrix[:, 2] += shift
    height, width = image.shape[:2]
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def self_blend(
    image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Blend ``image`` with a jittered copy of itself inside a face mask.

    Args:
        image: UINT8 ``[H, W, 3]`` RGB image holding a face (e.g. a face crop).
        landmarks: the face's five MTCNN landmarks ``[5, 2]`` in ``image`` pixels.
        rng: the random generator (the result is a pure function of its state).

    Returns:
        ``(fake, mask)``: the self-blended UINT8 image and the FP32 ``[H, W]`` mask used.

    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    centre, d_eye, _ = _face_geometry(landmarks)
    source, target = image.copy(), image.copy()
    altered = _frequency(_colour_jitter(image, rng), rng)
    if rng.random() < 0.5:
        source = altered
    else:
        target = altered
    source = _geometry(source, centre, d_eye, rng)
    mask = face_mask(image.shape[:2], landmarks, rng)
    blended = mask[..., None] * source.astype(np.float32) + (1.0 - mask[..., None]) * target
    return np.clip(np.round(blended), 0, 255).astype(np.uint8), mask
