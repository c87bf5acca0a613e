"""Real video files for the tests, made from images that ship with installed packages.

Not a test module: helpers that write small (≤ 2 s, ≤ 640x360 by default) but real video files
with OpenCV's ``cv2.VideoWriter`` (MPEG-4 Part 2 ``mp4v``, MJPEG) or PyAV (H.264 and other
FFmpeg encoders, any container FFmpeg can mux, display-rotation metadata, ``faststart``).

Content:

* :func:`make_face_video` — ``skimage.data.astronaut()`` (a public-domain portrait, a real face)
  composited onto a plain background, swaying slowly so consecutive frames differ.
* :func:`make_no_face_video` — ``skimage.data.coffee()`` panning, or a moving colour gradient.

Every frame carries a *frame marker* on its top row: ``MARKER_BITS`` black/white blocks that
encode the frame's index in binary (blocks are ``1/MARKER_BITS`` of the width, ``1/12`` of the
height, so they survive lossy compression and downscaling). :func:`read_marker` decodes it from
a decoded RGB frame of any size, which lets a test check *which* frames a sampler returned
without trusting the sampler's own bookkeeping.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np
from skimage import data as skdata

#: Bits of the frame-index marker (indices up to 1023).
MARKER_BITS = 10
#: Codecs written by ``cv2.VideoWriter`` (FourCC); all others go through PyAV.
OPENCV_FOURCCS = frozenset({"mp4v", "MJPG", "XVID"})
#: Short names accepted for PyAV encoders.
PYAV_CODECS = {
    "avc1": "libx264",
    "h264": "libx264",
    "libx264": "libx264",
    "mpeg4": "mpeg4",
    "vp9": "libvpx-vp9",
    "libvpx-vp9": "libvpx-vp9",
}

FaceSource = Literal["astronaut"]
NoFaceSource = Literal["coffee", "gradient"]


@functools.cache
def _astronaut() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut())


@functools.cache
def _coffee() -> np.ndarray:
    return np.ascontiguousarray(skdata.coffee())


def draw_marker(frame: np.ndarray, index: int) -> None:
    """Paint ``index`` in binary as black/white blocks across the top of an RGB frame."""
    h, w = frame.shape[:2]
    bh = max(1, round(h / 12))
    for bit in range(MARKER_BITS):
        x0 = round(bit * w / MARKER_BITS)
        x1 = round((bit + 1) * w / MARKER_BITS)
        frame[:bh, x0:x1] = 255 if (index >> bit) & 1 else 0


def read_marker(frame: np.ndarray) -> int:
    """Decode the index painted by :func:`draw_marker` from an RGB frame (any scale)."""
    h, w = frame.shape[:2]
    y = max(0, round(h / 24) - 1)
    gray = frame.mean(axis=2) if frame.ndim == 3 else frame
    value = 0
    for bit in range(MARKER_BITS):
        x = int((bit + 0.5) * w / MARKER_BITS)
        patch = gray[max(0, y - 1) : y + 2, max(0, x - 2) : x + 3]
        if float(patch.mean()) > 127.5:
            value |= 1 << bit
    return value


def face_frames(
    *,
    seconds: float = 2.0,
    fps: float = 10,
    size: tuple[int, int] = (640, 360),
    faces: FaceSource = "astronaut",
) -> Iterator[np.ndarray]:
    """Yield RGB frames (H, W, 3) with the astronaut's face swaying over a plain background."""
    if faces != "astronaut":
        raise ValueError(f"unknown face source {faces!r}")
    w, h = size
    n = max(1, round(seconds * fps))
    top = round(h / 12) + 2
    side = min(h - top, w)
    face = cv2.resize(_astronaut(), (side, side), interpolation=cv2.INTER_AREA)
    travel = max(0, w - side)
    for i in range(n):
        frame = np.empty((h, w, 3), np.uint8)
        frame[:] = (40 + (i % 7), 70, 110)
        x = round(travel / 2 + (travel / 4) * math.sin(2 * math.pi * i / max(n, 2)))
        frame[top : top + side, x : x + side] = face
        draw_marker(frame, i)
        yield frame


def no_face_frames(
    *,
    seconds: float = 2.0,
    fps: float = 10,
    size: tuple[int, int] = (640, 360),
    source: NoFaceSource = "coffee",
) -> Iterator[np.ndarray]:
    """Yield RGB frames without a face: the coffee cup panning, or a moving colour gradient."""
    w, h = size
    n = max(1, round(seconds * fps))
    if source == "coffee":
        img = _coffee()
        scale = max(w / img.shape[1], h / img.shape[0]) * 1.2
        big = cv2.resize(
            img,
            (math.ceil(img.shape[1] * scale), math.ceil(img.shape[0] * scale)),
            interpolation=cv2.INTER_AREA,
        )
        slack = big.shape[1] - w
        for i in range(n):
            x = round(slack * i / max(n - 1, 1))
            frame = np.ascontiguousarray(big[:h, x : x + w])
            draw_marker(frame, i)
            yield frame
    elif source == "gradient":
        xs = np.linspace(0, 1, w, dtype=np.float32)[None, :]
        ys = np.linspace(0, 1, h, dtype=np.float32)[:, None]
        for i in range(n):
            phase = i / max(n, 1)
            r = (np.sin(2 * np.pi * (xs + phase)) * 0.5 + 0.5) * np.ones_like(ys)
            g = (ys + phase) % 1.0 * np.ones_like(xs)
            b = np.full((h, w), 0.5, np.float32)
            frame = (np.stack([r, g, b], axis=2) * 255).astype(np.uint8)
            draw_marker(frame, i)
            yield frame
    else:
        raise ValueError(f"unknown no-face source {source!r}")


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    fps: float = 10,
    codec: str = "mp4v",
    rotate: int = 0,
    faststart: bool = False,
    gop: int | None = None,
    container_format: str | None = None,
    b_frames: bool = True,
) -> Path:
    """Write RGB frames to ``path``; the container follows the file extension.

    ``codec`` in :data:`OPENCV_FOURCCS` uses ``cv2.VideoWriter``; the rest (see
    :data:`PYAV_CODECS`) use PyAV. ``rotate`` (degrees counter-clockwise, PyAV only) stores a
    display matrix, as phones do for portrait video; ``faststart`` (MP4/MOV, PyAV only) puts the
    index in front of the data; ``gop`` sets the keyframe interval (PyAV only); ``b_frames=False``
    writes none (libx264 only), as phones record.
    """
    path = Path(path)
    it = iter(frames)
    first = next(it)
    h, w = first.shape[:2]
    if codec in OPENCV_FOURCCS:
        if rotate or faststart or gop or container_format or not b_frames:
            raise ValueError("rotate/faststart/gop/container_format/b_frames need a PyAV codec")
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), float(fps), (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"cv2.VideoWriter cannot write {codec} to {path}")
        try:
            for frame in (first, *it):
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        return path

    encoder = PYAV_CODECS.get(codec)
    if encoder is None:
        raise ValueError(f"unknown codec {codec!r}")
    if not b_frames and encoder != "libx264":
        raise ValueError(f"b_frames=False needs libx264, not {encoder}")
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=container_format, options=options) as container:
        rate = Fraction(fps).limit_denominator(1001)
        stream = container.add_stream(encoder, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if encoder == "libx264":
            stream.options = {"preset": "veryfast"}  # keeps B-frames (real-world reordering)
        if gop:
            stream.codec_context.gop_size = gop
        if not b_frames:
            stream.codec_context.max_b_frames = 0
        if rotate:
            stream.set_display_rotation(rotate)
        for frame in (first, *it):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_face_video(
    path: str | Path,
    *,
    seconds: float = 2.0,
    fps: float = 10,
    size: tuple[int, int] = (640, 360),
    codec: str = "mp4v",
    faces: FaceSource = "astronaut",
    rotate: int = 0,
    faststart: bool = False,
    gop: int | None = None,
) -> Path:
    """Write a video of the astronaut's face (``round(seconds * fps)`` frames, index-marked)."""
    frames = face_frames(seconds=seconds, fps=fps, size=size, faces=faces)
    return write_video(
        path, frames, fps=fps, codec=codec, rotate=rotate, faststart=faststart, gop=gop
    )


def make_no_face_video(
    path: str | Path,
    *,
    seconds: float = 2.0,
    fps: float = 10,
    size: tuple[int, int] = (640, 360),
    codec: str = "mp4v",
    source: NoFaceSource = "coffee",
) -> Path:
    """Write a video without any face (``round(seconds * fps)`` frames, index-marked)."""
    frames = no_face_frames(seconds=seconds, fps=fps, size=size, source=source)
    return write_video(path, frames, fps=fps, codec=codec)


def truncate_copy(src: str | Path, dst: str | Path, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of the bytes of ``src`` to ``dst`` (a cut-off download)."""
    payload = Path(src).read_bytes()
    Path(dst).write_bytes(payload[: int(len(payload) * fraction)])
    return Path(dst)
