"""The two in-process pipelines the served one is compared with, on the same videos and frames.

* :class:`OrtPipeline` — our exported ONNX models with ONNX Runtime in this process: same
  sampler, same cascade, same crops, same aggregation as the Triton ensemble. Its time vs the
  served pipeline's is what Triton itself costs.
* :class:`TorchBaseline` — what a user of the original student project runs: OpenCV reads every
  frame and keeps the sampled ones, facenet-pytorch ``MTCNN`` at its defaults on full-resolution
  frames, the same classifier (EfficientNet-Lite0) in eager PyTorch. Needs the train extra.

Both return the wall time of one whole video, decode included.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from fakescope import contract
from fakescope.client.video import sample_frames
from fakescope.pipeline.aggregation import aggregate
from fakescope.pipeline.crops import crop_faces
from fakescope.pipeline.metadata import read_classifier_spec
from fakescope.pipeline.mtcnn import OnnxRuntimeMtcnnNets, detect_faces
from fakescope.serving.model_config import aggregation_params, detector_params, latest_version_dir


def _classifier_path(repository: Path) -> Path:
    return latest_version_dir(repository / contract.CLASSIFIER_MODEL) / "model.onnx"


class OrtPipeline:
    """The served pipeline's steps, in-process with ONNX Runtime."""

    def __init__(self, repository: Path) -> None:
        import onnxruntime as ort

        self.nets = OnnxRuntimeMtcnnNets(repository)
        self.detector = detector_params(repository)
        self.aggregation = aggregation_params(repository)
        path = _classifier_path(repository)
        self.spec, _ = read_classifier_spec(path)
        self.classifier = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(self, video: Path, num_frames: int, max_side: int | None) -> tuple[float, float]:
        """Analyze ``video``; return ``(seconds, fake_probability)``."""
        start = time.perf_counter()
        sampled = sample_frames(video, num_frames, max_side=max_side)
        found = detect_faces(sampled.frames, self.nets, self.detector)
        boxes = np.concatenate([found.frame_index[:, None], found.boxes], axis=1)
        crops = crop_faces(
            sampled.frames,
            boxes,
            size=self.spec.input_size,
            margin=self.spec.face_margin,
            shift=self.spec.face_shift,
        )
        scores = np.zeros(0, np.float32)
        if len(crops):
            feed = {contract.CLASSIFIER_INPUT: crops}
            scores = self.classifier.run([contract.CLASSIFIER_OUTPUT], feed)[0].ravel()
        result = aggregate(len(sampled.frames), found.frame_index, scores, self.aggregation)
        return time.perf_counter() - start, result.fake_probability


class TorchBaseline:
    """facenet-pytorch MTCNN + the same classifier in eager PyTorch (the student pipeline)."""

    def __init__(self, repository: Path) -> None:
        import torch
        from facenet_pytorch import MTCNN

        from fakescope.export.classifier import materialize, untrained_checkpoint

        self.torch = torch
        self.mtcnn = MTCNN(keep_all=True, device="cpu")
        spec, _ = read_classifier_spec(_classifier_path(repository))
        self.spec = spec
        self.model = materialize(untrained_checkpoint(spec.arch))
        self.aggregation = aggregation_params(repository)

    def run(self, video: Path, num_frames: int) -> tuple[float, float]:
        """Analyze ``video``; return ``(seconds, fake_probability)``."""
        start = time.perf_counter()
        capture = cv2.VideoCapture(str(video))
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        capture.release()
        picks = np.linspace(0, len(frames) - 1, num_frames).round().astype(int)
        chosen = np.stack([frames[i] for i in picks])
        del frames
        rows = []
        for index, frame in enumerate(chosen):
            boxes, probs = self.mtcnn.detect(frame)
            if boxes is not None:
                for box, prob in zip(boxes, probs, strict=True):
                    rows.append([index, *np.asarray(box, np.float32), float(prob)])
        face_boxes = np.asarray(rows, np.float32).reshape(-1, 6)
        crops = crop_faces(
            chosen,
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
        frame_index = face_boxes[:, 0].astype(np.int64)
        result = aggregate(num_frames, frame_index, scores, self.aggregation)
        return time.perf_counter() - start, result.fake_probability
