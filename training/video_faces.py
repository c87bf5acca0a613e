"""Face extraction for training and evaluation: exactly the crops the server makes, cached.

For each video: :func:`fakescope.client.video.sample_frames` (the client's sampler, same
number of frames and ``max_side`` as ``fakescope analyze``), the MTCNN cascade of
:mod:`fakescope.pipeline.mtcnn` on the repository's exported nets
(:class:`~fakescope.pipeline.mtcnn.OnnxRuntimeMtcnnNets`) with the ``MtcnnParams`` that
``face_detector`` reads from its ``config.pbtxt``, and
:func:`fakescope.pipeline.crops.crop_faces` with the classifier's input size and margin. So the
classifier is trained on the crops it will be served.

Results are cached on disk, one ``.npz`` per video, keyed by the video's content hash and
the *extractor key* (hash of the three MTCNN ONNX files, the detection parameters, the crop
size and margin, the frame count and ``max_side``): change any of them and the cache misses;
rename or move a video and it hits. Each file is written atomically (temporary file + rename),
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fakescope import contract
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES
from fakescope.client.video import sample_frames
from fakescope.pipeline.crops import crop_faces, crop_window
from fakescope.pipeline.metadata import ClassifierSpec
from fakescope.pipeline.mtcnn import MtcnnParams, OnnxRuntimeMtcnnNets, detect_faces
from fakescope.serving.model_config import detector_params
from fakescope.training.dataset import file_sha256

__all__ = [
    "FaceCache",
    "FaceExtractor",
    "VideoFaces",
    "landmarks_in_crops",
]

logger = logging.getLogger(__name__)

_CACHE_FORMAT = 1


@dataclass(frozen=True)
class VideoFaces:
    """The faces of one video, as the server would crop them.

    Attributes:
        crops: UINT8 ``[F, S, S, 3]`` RGB crops (``face_detector``'s ``FACE_CROPS``).
        boxes: FP32 ``[F, 6]`` ``frame_index, x1, y1, x2, y2, score`` (``FACE_BOXES``).
        landmarks: FP32 ``[F, 5, 2]`` MTCNN landmarks in *crop* pixels.
        num_frames: frames sampled (``N`` of the request).
        timestamps: FP32 ``[N]`` seconds.

    """

    crops: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    num_frames: int
    timestamps: np.ndarray

    @property
    def frame_index(self) -> np.ndarray:
        """INT64 ``[F]`` frame of each face."""
        return self.boxes[:, 0].astype(np.int64)

    def largest_per_frame(self) -> np.ndarray:
        """Return the index of the largest face of each frame (MTCNN puts it first)."""
        index = self.frame_index
        if index.size == 0:
            return np.zeros((0,), np.int64)
        first = np.ones(index.size, dtype=bool)
        first[1:] = index[1:] != index[:-1]
        return np.flatnonzero(first)


def landmarks_in_crops(
    boxes: np.ndarray,
    landmarks: np.ndarray,
    *,
    size: int,
    margin: float,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Map frame-pixel landmarks ``[F, 5, 2]`` into each box's crop (``crop_faces`` geometry)."""
    out = np.zeros_like(landmarks, dtype=np.float32)
    for i, box in enumerate(boxes[:, 1:5].astype(np.float64)):
        left, top, side = crop_window(box, margin, shift)
        out[i] = (landmarks[i] - np.array([left, top])) * (size / side)
    return out


class FaceExtractor:
    """Sample frames, detect faces and crop them like the served ensemble does.

    Args:
        repository: the Triton model repository (MTCNN ONNX files + ``face_detector`` config).
        spec: the classifier's preprocessing (crop size and margin).
        num_frames: frames sampled per video (default: the client's).
        max_side: the client's downscale before sending (default: the client's).
        params: detection parameters; default: read from ``face_detector/config.pbtxt``.

    """

    def __init__(
        self,
        repository: Path,
        spec: ClassifierSpec,
        *,
        num_frames: int = DEFAULT_NUM_FRAMES,
        max_side: int | None = DEFAULT_MAX_SIDE,
        params: MtcnnParams | None = None,
    ) -> None:
        if not 1 <= num_frames <= contract.MAX_FRAMES_PER_REQUEST:
            raise ValueError(f"num_frames must be 1..{contract.MAX_FRAMES_PER_REQUEST}")
        self.repository = Path(repository)
        self.spec = spec
        self.num_frames = num_frames
        self.max_side = max_side
        self.params = params if params is not None else detector_params(self.repository)
        self.nets = OnnxRuntimeMtcnnNets(self.repository)
        self.key = self._key()

    def _key(self) -> str:
        digest = hashlib.sha256()
        for model in contract.MTCNN_MODELS:
            digest.update(file_sha256(self.repository / model / "1" / "model.onnx").encode())
        settings = {
            "format": _CACHE_FORMAT,
            "params": asdict(self.params),
            "size": self.spec.input_size,
            "margin": self.spec.face_margin,
            "shift": list(self.spec.face_shift),
            "num_frames": self.num_frames,
            "max_side": self.max_side,
        }
        digest.update(json.dumps(settings, sort_keys=True, default=list).encode())
        return digest.hexdigest()[:16]

    def extract(self, video: Path) -> VideoFaces:
        """Extract the faces of one video (raises ``VideoReadError`` when it cannot be read)."""
        sampled = sample_frames(video, self.num_frames, self.max_side)
        found = detect_faces(sampled.frames, self.nets, self.params)
        boxes = np.concatenate(
            [
                found.frame_index[:, None].astype(np.float32),
                found.boxes.astype(np.float32),
                found.scores[:, None].astype(np.float32),
            ],
            axis=1,
        )
        size, margin, shift = self.spec.input_size, self.spec.face_margin, self.spec.face_shift
        crops = crop_faces(sampled.frames, boxes, size=size, margin=margin, shift=shift)
        landmarks = landmarks_in_crops(
            boxes, found.landmarks, size=size, margin=margin, shift=shift
        )
        return VideoFaces(crops, boxes, landmarks, int(sampled.frames.shape[0]), sampled.timestamps)


class FaceCache:
    """On-disk cache of :class:`VideoFaces`, keyed by video content hash + extractor key."""

    def __init__(self, directory: Path, extractor: FaceExtractor) -> None:
        self.directory = Path(directory)
        self.extractor = extractor
        self._hashes: dict[tuple[str, int, int], str] = {}

    def content_hash(self, video: Path) -> str:
        """SHA-256 of the video's bytes (memoised by path, size and mtime)."""
        st = video.stat()
        key = (str(video.resolve()), st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = file_sha256(video)
        return self._hashes[key]

    def path_for(self, video: Path) -> Path:
        """Return the cache file of ``video`` (by content hash, not name)."""
        return self.directory / self.extractor.key / f"{self.content_hash(video)}.npz"

    def get(self, video: Path) -> tuple[VideoFaces, bool]:
        """Return ``(faces, was_cached)``, extracting and storing them on a miss."""
        path = self.path_for(video)
        if path.is_file():
            with np.load(path) as data:
                return (
                    VideoFaces(
                        data["crops"],
                        data["boxes"],
                        data["landmarks"],
                        int(data["num_frames"]),
                        data["timestamps"],
                    ),
                    True,
                )
        faces = self.extractor.extract(video)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(
                    fh,
                    crops=faces.crops,
                    boxes=faces.boxes,
                    landmarks=faces.landmarks,
                    num_frames=np.int64(faces.num_frames),
                    timestamps=faces.timestamps,
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return faces, False

    def iter_videos(self, videos: Sequence[Path]) -> Iterator[tuple[Path, VideoFaces, bool]]:
        """Yield ``(video, faces, was_cached)`` for each video in order (for a progress bar)."""
        for video in videos:
            faces, cached = self.get(video)
            logger.debug("%s: %d faces%s", video, len(faces.boxes), " (cached)" if cached else "")
            yield video, faces, cached
