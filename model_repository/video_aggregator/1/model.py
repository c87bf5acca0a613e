"""video_aggregator: per-frame scores, the video's fake probability and its STATUS."""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from fakescope import contract
from fakescope.pipeline.aggregation import AggregationParams, aggregate
from fakescope.serving.model_config import load_model_config, parameters
from fakescope.serving.python_model import invalid_argument


class TritonPythonModel:
    """Aggregates FACE_SCORES into FAKE_PROBABILITY, FRAME_SCORES and STATUS."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the confident-strategy thresholds once."""
        self.params = AggregationParams.from_parameters(parameters(load_model_config(args)))

    def execute(self, requests: list) -> list:
        """Aggregate each request."""
        responses = []
        for request in requests:
            count = pb_utils.get_input_tensor_by_name(request, contract.FRAME_COUNT).as_numpy()
            boxes = pb_utils.get_input_tensor_by_name(request, contract.FACE_BOXES).as_numpy()
            scores = pb_utils.get_input_tensor_by_name(request, contract.FACE_SCORES).as_numpy()
            num_frames = int(count.reshape(-1)[0])  # face_detector's, of the validated FRAMES
            try:
                result = aggregate(num_frames, boxes[:, 0].astype(np.int64), scores, self.params)
            except ValueError as exc:
                responses.append(invalid_argument(exc))
                continue
            status = contract.STATUS_OK if boxes.shape[0] else contract.STATUS_NO_FACE
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor(
                            contract.FAKE_PROBABILITY,
                            np.array([result.fake_probability], dtype=np.float32),
                        ),
                        pb_utils.Tensor(contract.FRAME_SCORES, result.frame_scores),
                        pb_utils.Tensor(contract.STATUS, np.array([status], dtype=np.object_)),
                    ]
                )
            )
        return responses
