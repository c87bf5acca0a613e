"""face_cropper: square face crops framed like the classifier's training crops.

Size, margin and centre shift are read once from the served classifier's ONNX metadata (the
version its ``config.pbtxt`` pins, the one Triton serves), so they exist in one place: the
export. From an S3 repository those files are fetched (:mod:`fakescope.serving.siblings`).
"""

from __future__ import annotations

import triton_python_backend_utils as pb_utils

from fakescope import contract
from fakescope.pipeline.crops import crop_faces
from fakescope.pipeline.metadata import read_classifier_spec
from fakescope.serving.python_model import invalid_argument
from fakescope.serving.siblings import served_version_file


class TritonPythonModel:
    """Cuts FACE_CROPS out of FRAMES at FACE_BOXES."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the classifier's preprocessing spec."""
        onnx = served_version_file(args, contract.CLASSIFIER_MODEL, "model.onnx")
        spec, _ = read_classifier_spec(onnx)
        self.size = spec.input_size
        self.margin = spec.face_margin
        self.shift = spec.face_shift

    def execute(self, requests: list) -> list:
        """Crop the faces of each request."""
        responses = []
        for request in requests:
            frames = pb_utils.get_input_tensor_by_name(request, contract.FRAMES).as_numpy()
            boxes = pb_utils.get_input_tensor_by_name(request, contract.FACE_BOXES).as_numpy()
            try:
                crops = crop_faces(
                    frames, boxes, size=self.size, margin=self.margin, shift=self.shift
                )
            except ValueError as exc:
                responses.append(invalid_argument(exc))
                continue
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor(contract.FACE_CROPS, crops)])
            )
        return responses
