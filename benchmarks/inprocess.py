"""The in-process pipelines the served one is compared with, on the same videos and frames.

* :class:`OrtPipeline` — our exported ONNX models with ONNX Runtime in this process: same
  sampler, same cascade, same crops, same aggregation as the Triton ensemble. Its time vs the
  served pipeline's is what Triton itself costs.
* :class:`LikeForLikeBaseline` — the same work in eager PyTorch: the same sampler (so the same
  frame indices and frames), facenet-pytorch ``MTCNN`` at the served detector parameters on
  frames downscaled as the server does, the same crops, the same classifier architecture and
  input size, batched like ``face_scorer``. What our engineering of the same steps buys.
* :class:`SeedPipeline` — what a user would pick instead, the seed project as written: OpenCV
  reads every frame and keeps 32 of them (at the frame indices our sampler picks for 32),
  facenet-pytorch ``MTCNN()`` at its defaults on full-resolution frames, efficientnet-pytorch
  B0 at 224 px in eager PyTorch, one face at a time. Needs the train extra.

Each ``run`` returns the wall time of one whole video, decode included. The classifiers in
PyTorch carry untrained weights of the served architecture: the same arithmetic, so the same
time, without needing the training checkpoint on the benchmark machine.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from fakescope import contract
from fakescope.allocator import set_up_memory
from fakescope.client.video import sample_frames
from fakescope.pipeline.aggregation import aggregate
from fakescope.pipeline.crops import crop_faces
from fakescope.pipeline.metadata import read_classifier_spec
from fakescope.pipeline.mtcnn import (
    FaceDetections,
    MtcnnNets,
    OnnxRuntimeMtcnnNets,
    detect_faces,
)
from fakescope.pipeline.onnx_session import cpu_session_options
from fakescope.serving.model_config import aggregation_params, detector_params, served_version_dir


def _classifier_path(repository: Path) -> Path:
    return served_version_dir(repository / contract.CLASSIFIER_MODEL) / "model.onnx"


class OrtPipeline:
    """The served pipeline's steps, in-process with ONNX Runtime."""

    def __init__(self, repository: Path) -> None:
        import onnxruntime as ort

        # as face_detector does in its stub; for the whole process, so the baselines timed
        # beside this pipeline get it too
        set_up_memory()
        self.nets: MtcnnNets = OnnxRuntimeMtcnnNets(repository)
        self.detector = detector_params(repository)
        self.aggregation = aggregation_params(repository)
        path = _classifier_path(repository)
        self.spec, _ = read_classifier_spec(path)
        self.classifier = ort.InferenceSession(
            str(path), cpu_session_options(), providers=["CPUExecutionProvider"]
        )

    def faces(self, frames: NDArray[np.uint8]) -> tuple[FaceDetections, NDArray[np.uint8]]:
        """Detect the faces of ``frames``; return them and their crops, as the server cuts them."""
        found = detect_faces(frames, self.nets, self.detector)
        boxes = np.concatenate([found.frame_index[:, None], found.boxes], axis=1)
        crops = crop_faces(
            frames,
            boxes,
            size=self.spec.input_size,
            margin=self.spec.face_margin,
            shift=self.spec.face_shift,
        )
        return found, crops

    def run(self, video: Path, num_frames: int, max_side: int | None) -> tuple[float, float]:
        """Analyze ``video``; return ``(seconds, fake_probability)``."""
        start = time.perf_counter()
        sampled = sample_frames(video, num_frames, max_side=max_side)
        found, crops = self.faces(sampled.frames)
        scores = np.zeros(0, np.float32)
        if len(crops):
            feed = {contract.CLASSIFIER_INPUT: crops}
            scores = self.classifier.run([contract.CLASSIFIER_OUTPUT], feed)[0].ravel()
        result = aggregate(len(sampled.frames), found.frame_index, scores, self.aggregation)
        return time.perf_counter() - start, result.fake_probability


class LikeForLikeBaseline:
    """The served steps in eager PyTorch (facenet-pytorch MTCNN at the served parameters)."""

    def __init__(self, repository: Path) -> None:
        import torch
        from facenet_pytorch import MTCNN

        from fakescope.export.classifier import materialize, untrained_checkpoint

        self.torch = torch
        params = detector_params(repository)
        self.max_side = params.max_side
        self.mtcnn = MTCNN(
            keep_all=True,
            device="cpu",
            min_face_size=params.min_face_size,
            thresholds=list(params.thresholds),
            factor=params.factor,
        )
        self.spec, _ = read_classifier_spec(_classifier_path(repository))
        self.model = materialize(untrained_checkpoint(self.spec.arch))
        self.aggregation = aggregation_params(repository)

    def run(self, video: Path, num_frames: int, max_side: int | None) -> tuple[float, float]:
        """Analyze ``video``; return ``(seconds, fake_probability)``."""
        start = time.perf_counter()
        sampled = sample_frames(video, num_frames, max_side=max_side)
        frames = sampled.frames
        height, width = frames.shape[1:3]
        scale = min(1.0, (self.max_side or max(height, width)) / max(height, width))
        small = frames
        if scale < 1.0:
            size = (round(width * scale), round(height * scale))
            small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        batch_boxes, batch_probs = self.mtcnn.detect(small)
        rows = []
        for index, (boxes, probs) in enumerate(zip(batch_boxes, batch_probs, strict=True)):
            if boxes is not None:
                for box, prob in zip(boxes, probs, strict=True):
                    rows.append([index, *(np.asarray(box, np.float32) / scale), float(prob)])
        face_boxes = np.asarray(rows, np.float32).reshape(-1, 6)
        crops = crop_faces(
            frames,
            face_boxes,
            size=self.spec.input_size,
            margin=self.spec.face_margin,
            shift=self.spec.face_shift,
        )
        scores = np.zeros(0, np.float32)
        if len(crops):
            with self.torch.no_grad():
                _, prob = self.model(self.torch.from_numpy(crops))
            scores = prob.numpy().ravel()
        result = aggregate(len(frames), face_boxes[:, 0].astype(np.int64), scores, self.aggregation)
        return time.perf_counter() - start, result.fake_probability


def seed_read_frames(video: Path) -> list[NDArray[np.uint8]]:
    """Read every frame of ``video`` with OpenCV, each kept as RGB (the seed's first step)."""
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


class SeedPipeline:
    """The seed project's pipeline as written: read-all, default MTCNN, B0 per face."""

    #: Frames the seed pipeline samples per video, and its classifier's input size.
    FRAMES = 32
    INPUT_SIZE = 224

    def __init__(self, repository: Path) -> None:
        import torch
        from efficientnet_pytorch import EfficientNet
        from facenet_pytorch import MTCNN

        self.torch = torch
        self.mtcnn = MTCNN(keep_all=True, device="cpu")
        self.model = EfficientNet.from_name("efficientnet-b0", num_classes=1).eval()
        self.aggregation = aggregation_params(repository)

    def run(self, video: Path, frame_indices: np.ndarray) -> tuple[float, float]:
        """Analyze ``video`` at ``frame_indices``; return ``(seconds, fake_probability)``."""
        start = time.perf_counter()
        frames = seed_read_frames(video)
        chosen = [frames[i] for i in frame_indices if i < len(frames)]
        del frames
        frame_of_face: list[int] = []
        scores: list[float] = []
        for index, frame in enumerate(chosen):
            boxes, _ = self.mtcnn.detect(frame)
            for box in boxes if boxes is not None else []:
                x1, y1, x2, y2 = (int(max(v, 0)) for v in box)
                face = cv2.resize(frame[y1:y2, x1:x2], (self.INPUT_SIZE, self.INPUT_SIZE))
                tensor = self.torch.from_numpy(face).permute(2, 0, 1)[None].float() / 255.0
                with self.torch.no_grad():
                    logit = self.model(tensor)
                scores.append(float(self.torch.sigmoid(logit).item()))
                frame_of_face.append(index)
        result = aggregate(
            len(chosen),
            np.asarray(frame_of_face, np.int64),
            np.asarray(scores, np.float32),
            self.aggregation,
        )
        return time.perf_counter() - start, result.fake_probability
