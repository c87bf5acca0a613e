"""face_detector: validates the request, runs the MTCNN cascade, emits FACE_BOXES.

The cascade's numpy part is :mod:`fakescope.pipeline.mtcnn` (shared with training and the
in-process benchmark); its three networks are the ONNX models ``mtcnn_pnet``, ``mtcnn_rnet``
and ``mtcnn_onet``, called here through BLS so that they run on whatever the deployment gives
them (python-backend ONNX Runtime on CPU, the ONNX Runtime backend on GPU).
"""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from fakescope import contract
from fakescope.pipeline.mtcnn import detect_faces
from fakescope.pipeline.validation import validate_request
from fakescope.serving.model_config import detector_params_from, load_model_config, parameters


def _run(model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    request = pb_utils.InferenceRequest(
        model_name=model,
        requested_output_names=outputs,
        inputs=[pb_utils.Tensor(name, np.ascontiguousarray(a)) for name, a in inputs.items()],
    )
    response = request.exec()
    if response.has_error():
        raise RuntimeError(f"{model}: {response.error().message()}")
    return [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs]


class BlsMtcnnNets:
    """The three MTCNN nets as Triton models; R-/O-Net batches split to their max batch size."""

    def __init__(self, rnet_max_batch: int, onet_max_batch: int) -> None:
        self.rnet_max_batch = rnet_max_batch
        self.onet_max_batch = onet_max_batch

    def pnet(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run P-Net on one pyramid level of all frames."""
        reg, prob = _run(
            contract.PNET_MODEL,
            {contract.PNET_INPUT: batch},
            [contract.PNET_REGRESSION, contract.PNET_PROBABILITY],
        )
        return reg, prob

    def _chunked(self, model: str, name: str, batch: np.ndarray, outs: list[str], size: int):
        parts = [_run(model, {name: batch[i : i + size]}, outs) for i in range(0, len(batch), size)]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(outs))]

    def rnet(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run R-Net on 24x24 candidates."""
        outs = [contract.RNET_REGRESSION, contract.RNET_PROBABILITY]
        reg, prob = self._chunked(
            contract.RNET_MODEL, contract.RNET_INPUT, batch, outs, self.rnet_max_batch
        )
        return reg, prob

    def onet(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run O-Net on 48x48 candidates."""
        outs = [contract.ONET_REGRESSION, contract.ONET_LANDMARKS, contract.ONET_PROBABILITY]
        reg, landmarks, prob = self._chunked(
            contract.ONET_MODEL, contract.ONET_INPUT, batch, outs, self.onet_max_batch
        )
        return reg, landmarks, prob


class TritonPythonModel:
    """Face detection for one video per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the detection parameters once."""
        params = parameters(load_model_config(args))
        self.params = detector_params_from(params)
        self.max_frames = int(params["max_frames"])
        self.max_frame_side = int(params["max_frame_side"])
        self.max_request_pixels = int(params["max_request_pixels"])
        self.nets = BlsMtcnnNets(rnet_max_batch=512, onet_max_batch=256)

    def execute(self, requests: list) -> list:
        """Detect faces in each request's frames."""
        return [self._detect(request) for request in requests]

    def _detect(self, request) -> pb_utils.InferenceResponse:
        frames = pb_utils.get_input_tensor_by_name(request, contract.FRAMES).as_numpy()
        stamps = pb_utils.get_input_tensor_by_name(request, contract.FRAME_TIMESTAMPS).as_numpy()
        try:
            validate_request(
                frames,
                stamps,
                max_frames=self.max_frames,
                max_frame_side=self.max_frame_side,
                max_request_pixels=self.max_request_pixels,
            )
        except ValueError as exc:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
            )
        found = detect_faces(frames, self.nets, self.params)
        boxes = np.concatenate(
            [
                found.frame_index[:, None].astype(np.float32),
                found.boxes.astype(np.float32),
                found.scores[:, None].astype(np.float32),
            ],
            axis=1,
        )
        return pb_utils.InferenceResponse([pb_utils.Tensor(contract.FACE_BOXES, boxes)])
