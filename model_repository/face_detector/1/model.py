"""face_detector: validates the request, finds the faces and cuts them out.

Emits FACE_BOXES, FACE_CROPS and FRAME_COUNT. The cascade's numpy part is
:mod:`fakescope.pipeline.mtcnn` (shared with training and the in-process benchmark); its three
networks are the ONNX models ``mtcnn_pnet``, ``mtcnn_rnet`` and ``mtcnn_onet``. They are called
through BLS, so that they run on whatever the deployment gives them (the ONNX Runtime backend,
on the GPU in the NGC image), except where the server places them in this process (the
embedded CPU server: :mod:`fakescope.serving.detector_nets`).

The crops are cut here, from the frames this step already holds, rather than in a step of
their own: a separate step was handed its own copy of every request's frames (tens of MB)
through another python stub, which cost more than the cropping (``benchmarks/README.md``,
"Triton against in-process"). Their size, margin and centre shift are read once from the
served classifier's ONNX metadata (the version its ``config.pbtxt`` pins, the one Triton
serves), so they exist in one place: the export. From an S3 repository those files are
fetched (:mod:`fakescope.serving.siblings`).
"""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from fakescope import contract
from fakescope.allocator import set_up_memory
from fakescope.pipeline.crops import crop_faces
from fakescope.pipeline.metadata import read_classifier_spec
from fakescope.pipeline.mtcnn import OnnxRuntimeMtcnnNets, detect_faces
from fakescope.pipeline.validation import validate_request
from fakescope.serving.detector_nets import IN_PROCESS, in_process_nets, nets_placement
from fakescope.serving.model_config import (
    detector_params_from,
    load_model_config,
    max_batch_size,
    parameters,
)
from fakescope.serving.python_model import BlsError, bls_outputs, bls_request, invalid_argument
from fakescope.serving.siblings import served_version_file, sibling_file


def _run(model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    """Run ``model`` through BLS; raise :class:`BlsError` (with its code) if it fails."""
    return bls_outputs(model, bls_request(model, inputs, outputs).exec(), outputs)


class BlsMtcnnNets:
    """The three MTCNN nets as Triton models; R-/O-Net batches split to their max batch size.

    A failed call raises :class:`BlsError`, which fails only the request being detected.
    """

    def __init__(self, rnet_max_batch: int, onet_max_batch: int) -> None:
        if min(rnet_max_batch, onet_max_batch) < 1:
            raise ValueError(
                f"{contract.RNET_MODEL} and {contract.ONET_MODEL} must batch (max_batch_size >= 1),"
                f" got {rnet_max_batch} and {onet_max_batch}"
            )
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
    """Face detection and face crops for one video per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the detection parameters and the classifier's crop spec once; open the nets."""
        # Every request's frames and pyramid levels then reuse the last request's pages instead
        # of being faulted in afresh, and the first request's are faulted in with small pages
        # rather than wait for the kernel to find huge ones (fakescope/allocator.py).
        set_up_memory()
        spec, _ = read_classifier_spec(
            served_version_file(args, contract.CLASSIFIER_MODEL, "model.onnx")
        )
        self.crop_size = spec.input_size
        self.crop_margin = spec.face_margin
        self.crop_shift = spec.face_shift
        params = parameters(load_model_config(args))
        self.params = detector_params_from(params)
        self.max_frame_side = int(params["max_frame_side"])
        self.max_request_pixels = int(params["max_request_pixels"])
        self.nets: BlsMtcnnNets | OnnxRuntimeMtcnnNets
        if nets_placement() == IN_PROCESS:
            self.nets = in_process_nets(args)
        else:
            self.nets = BlsMtcnnNets(
                rnet_max_batch=max_batch_size(
                    sibling_file(args, contract.RNET_MODEL, "config.pbtxt")
                ),
                onet_max_batch=max_batch_size(
                    sibling_file(args, contract.ONET_MODEL, "config.pbtxt")
                ),
            )

    def execute(self, requests: list) -> list:
        """Detect and crop the faces in each request's frames."""
        return [self._detect(request) for request in requests]

    def _detect(self, request) -> pb_utils.InferenceResponse:
        frames = pb_utils.get_input_tensor_by_name(request, contract.FRAMES).as_numpy()
        try:
            validate_request(
                frames,
                max_frames=contract.MAX_FRAMES_PER_REQUEST,
                max_frame_side=self.max_frame_side,
                max_request_pixels=self.max_request_pixels,
            )
        except ValueError as exc:
            return invalid_argument(exc)
        try:
            found = detect_faces(frames, self.nets, self.params)
        except BlsError as exc:
            return exc.response()
        boxes = np.concatenate(
            [
                found.frame_index[:, None].astype(np.float32),
                found.boxes.astype(np.float32),
                found.scores[:, None].astype(np.float32),
            ],
            axis=1,
        )
        try:
            crops = crop_faces(
                frames, boxes, size=self.crop_size, margin=self.crop_margin, shift=self.crop_shift
            )
        except ValueError as exc:
            return invalid_argument(exc)
        count = np.array([frames.shape[0]], dtype=np.int32)
        return pb_utils.InferenceResponse(
            [
                pb_utils.Tensor(contract.FACE_BOXES, boxes),
                pb_utils.Tensor(contract.FACE_CROPS, crops),
                pb_utils.Tensor(contract.FRAME_COUNT, count),
            ]
        )
