"""A DFDC-format dataset any fresh machine can build: real faces from installed packages.

Faces (all ship inside wheels the ``train``/``dev`` extras install; nothing is downloaded):

* ``skimage.data.astronaut()`` — Eileen Collins, colour portrait (public domain);
* ``matplotlib``'s ``sample_data/grace_hopper.jpg`` — Grace Hopper, colour portrait;
* ``skimage.data.camera()`` — the "cameraman", greyscale;
* ``skimage.data.lfw_subset()`` — 100 Labeled-Faces-in-the-Wild faces, 25×25 greyscale (upscaled
  and tinted, so they are blurry).

Each identity becomes a short **REAL** video: the portrait moving slowly over a textured
background (non-face images from scikit-image), MPEG-4 encoded with OpenCV. Each real video
gets **FAKE** siblings rendered with the same motion and background, differing only in the face:

* ``sbi``: the face self-blended (:func:`fakescope.training.self_blend.self_blend`);
* ``swap``: another identity's face aligned on the five MTCNN landmarks (similarity transform),
  colour-matched in Lab and blended inside a soft face mask — a classic graphics face swap.

``metadata.json`` names each fake's ``original``; ``synthetic.json`` records the generator's
settings and command. Identities are split into disjoint ``train`` and ``heldout`` pools, so a
model can be evaluated on faces it has never seen.

What such data can teach: blending boundaries and colour/sharpness seams around a face. What it
cannot: anything about GAN/autoencoder deepfakes, real camera footage or real compression
chains — say so wherever a model trained on it is described.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from fakescope.files import write_text_atomically
from fakescope.pipeline.mtcnn import MtcnnParams, OnnxRuntimeMtcnnNets, detect_faces
from fakescope.training.self_blend import face_mask, self_blend

__all__ = [
    "Identity",
    "SynthConfig",
    "face_swap",
    "load_identities",
    "render_video",
    "synthesize_dataset",
]

logger = logging.getLogger(__name__)

Pool = Literal["train", "heldout", "all"]
_BACKGROUNDS = ("coffee", "rocket", "brick", "grass", "gravel", "moon", "page", "hubble_deep_field")


@dataclass(frozen=True)
class Identity:
    """One person: a portrait and its five MTCNN landmarks (portrait pixels)."""

    name: str
    image: np.ndarray
    landmarks: np.ndarray


@dataclass(frozen=True)
class SynthConfig:
    """Settings of :func:`synthesize_dataset` (recorded in ``synthetic.json``)."""

    pool: Pool = "train"
    seed: int = 0
    max_identities: int | None = None
    seconds: float = 2.0
    fps: float = 10.0
    width: int = 320
    height: int = 240
    sbi_per_real: int = 1
    swaps_per_real: int = 1


def _grey_to_rgb(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    tint = np.array([1.0, rng.uniform(0.78, 0.9), rng.uniform(0.62, 0.8)], np.float32)
    rgb = grey.astype(np.float32)[..., None] * tint[None, None, :] * rng.uniform(0.95, 1.1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _portraits() -> Iterator[tuple[str, np.ndarray]]:
    """(name, RGB portrait) of every identity, in a fixed order."""
    import matplotlib.cbook
    from skimage import data

    yield "astronaut", np.ascontiguousarray(data.astronaut()[0:270, 100:350])
    hopper_path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    hopper = cv2.cvtColor(cv2.imread(str(hopper_path)), cv2.COLOR_BGR2RGB)
    yield "grace_hopper", np.ascontiguousarray(hopper[40:430, 80:430])
    rng = np.random.default_rng(12345)
    yield "cameraman", _grey_to_rgb(data.camera()[50:270, 120:330], rng)
    faces = data.lfw_subset()[:100]  # the first 100 images are faces
    for i, face in enumerate(faces):
        big = cv2.resize((face * 255).astype(np.uint8), (140, 140), interpolation=cv2.INTER_CUBIC)
        yield f"lfw{i:03d}", _grey_to_rgb(big, rng)


def _in_pool(index: int, pool: Pool) -> bool:
    """Split identities into disjoint pools (Hopper, cameraman, every 4th LFW face: held out)."""
    heldout = index in (1, 2) or (index >= 3 and (index - 3) % 4 == 3)
    return pool == "all" or (pool == "heldout") == heldout


def load_identities(
    repository: Path, pool: Pool = "all", max_identities: int | None = None
) -> list[Identity]:
    """Return the identities of ``pool`` with landmarks found by the repository's MTCNN."""
    nets = OnnxRuntimeMtcnnNets(Path(repository))
    params = MtcnnParams(min_face_size=20)
    out = []
    for index, (name, image) in enumerate(_portraits()):
        if not _in_pool(index, pool):
            continue
        pad = max(image.shape[:2]) // 3  # detect as in the videos: the portrait on a background
        canvas = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(90,) * 3)
        found = detect_faces(canvas[None], nets, params)
        if len(found) == 0:
            logger.warning("MTCNN finds no face in the %s portrait; identity skipped", name)
            continue
        out.append(Identity(name, image, found.landmarks[0].astype(np.float64) - pad))
        if max_identities is not None and len(out) >= max_identities:
            break
    return out


def face_swap(target: Identity, source: Identity, rng: np.random.Generator) -> np.ndarray:
    """Put ``source``'s face onto ``target``'s portrait (aligned, colour-matched, blended)."""
    matrix, _ = cv2.estimateAffinePartial2D(
        source.landmarks.astype(np.float32), target.landmarks.astype(np.float32)
    )
    if matrix is None:
        raise RuntimeError(f"cannot align {source.name} onto {target.name}")
    height, width = target.image.shape[:2]
    warped = cv2.warpAffine(
        source.image,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    mask = face_mask((height, width), target.landmarks, rng)
    mask = np.maximum(mask, (mask > 0.05) * rng.uniform(0.85, 1.0)).astype(np.float32)
    inside = mask > 0.5
    if inside.sum() > 16:  # Reinhard colour transfer in Lab over the face region
        src = cv2.cvtColor(warped, cv2.COLOR_RGB2LAB).astype(np.float32)
        dst = cv2.cvtColor(target.image, cv2.COLOR_RGB2LAB).astype(np.float32)
        s_mean, s_std = src[inside].mean(0), src[inside].std(0) + 1e-3
        d_mean, d_std = dst[inside].mean(0), dst[inside].std(0) + 1e-3
        src = (src - s_mean) / s_std * d_std + d_mean
        warped = cv2.cvtColor(np.clip(src, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    blended = mask[..., None] * warped.astype(np.float32) + (1 - mask[..., None]) * target.image
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def _background(name: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    scale = max(width / image.shape[1], height / image.shape[0]) * rng.uniform(1.0, 1.4)
    big = cv2.resize(
        image,
        (int(np.ceil(image.shape[1] * scale)), int(np.ceil(image.shape[0] * scale))),
        interpolation=cv2.INTER_AREA,
    )
    y = int(rng.integers(0, big.shape[0] - height + 1))
    x = int(rng.integers(0, big.shape[1] - width + 1))
    return np.ascontiguousarray(big[y : y + height, x : x + width])


def render_video(path: Path, portrait: np.ndarray, motion_seed: int, config: SynthConfig) -> None:
    """Write the video of ``portrait`` moving over a background (same seed = same motion)."""
    rng = np.random.default_rng(motion_seed)
    width, height = config.width, config.height
    background = _background(str(rng.choice(_BACKGROUNDS)), width, height, rng)
    frames = max(1, round(config.seconds * config.fps))
    face_h = height * rng.uniform(0.55, 0.8)
    base_scale = face_h / portrait.shape[0]
    phase, amp_x, amp_y = rng.uniform(0, 2 * np.pi), rng.uniform(5, 25), rng.uniform(2, 10)
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(path), fourcc, config.fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path}")
    try:
        for i in range(frames):
            t = i / max(frames, 1)
            scale = base_scale * (1.0 + 0.04 * np.sin(2 * np.pi * t + phase))
            ph = max(8, round(portrait.shape[0] * scale))
            pw = max(8, round(portrait.shape[1] * scale))
            face = cv2.resize(portrait, (pw, ph), interpolation=cv2.INTER_AREA)
            cx = width / 2 + amp_x * np.sin(2 * np.pi * t + phase)
            cy = height / 2 + amp_y * np.cos(2 * np.pi * t + phase)
            x0, y0 = round(cx - pw / 2), round(cy - ph / 2)
            frame = background.copy()
            fx0, fy0 = max(x0, 0), max(y0, 0)
            fx1, fy1 = min(x0 + pw, width), min(y0 + ph, height)
            frame[fy0:fy1, fx0:fx1] = face[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def synthesize_dataset(
    output_dir: Path, repository: Path, config: SynthConfig, *, command: str = ""
) -> dict[str, dict[str, str]]:
    """Write a DFDC-format dataset into ``output_dir`` (which must not exist or be empty).

    Returns the metadata written to ``metadata.json``.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"{output_dir} is not empty; choose a new folder")
    identities = load_identities(repository, config.pool, config.max_identities)
    if len(identities) < 2 and config.swaps_per_real:
        raise ValueError("face swaps need at least two identities")
    output_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    metadata: dict[str, dict[str, str]] = {}
    for i, person in enumerate(identities):
        motion = int(rng.integers(2**31))
        real = f"real_{person.name}.mp4"
        render_video(output_dir / real, person.image, motion, config)
        metadata[real] = {"label": "REAL"}
        for k in range(config.sbi_per_real):
            name = f"sbi{k}_{person.name}.mp4"
            fake, _ = self_blend(person.image, person.landmarks, rng)
            render_video(output_dir / name, fake, motion, config)
            metadata[name] = {"label": "FAKE", "original": real}
        others = [j for j in range(len(identities)) if j != i]
        for k in range(config.swaps_per_real):
            donor = identities[int(rng.choice(others))]
            name = f"swap{k}_{person.name}_from_{donor.name}.mp4"
            render_video(output_dir / name, face_swap(person, donor, rng), motion, config)
            metadata[name] = {"label": "FAKE", "original": real}
        logger.info("identity %d/%d: %s", i + 1, len(identities), person.name)
    write_text_atomically(
        output_dir / "metadata.json", json.dumps(metadata, indent=1, sort_keys=True) + "\n"
    )
    record = {
        "generator": "fakescope.training.synthetic_data",
        "config": asdict(config),
        "identities": [p.name for p in identities],
        "command": command,
    }
    write_text_atomically(output_dir / "synthetic.json", json.dumps(record, indent=1) + "\n")
    return metadata
