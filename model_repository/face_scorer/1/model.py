"""face_scorer: fake probability per face crop, via the face_classifier model (async BLS).

A video can have more faces than the classifier's ``max_batch_size``: the crops are split into
chunks of ``chunk_size`` and all chunks are sent at once (``asyncio.gather``), so the
classifier's dynamic batcher can merge them with chunks from other videos. Any failed chunk
fails the request with the classifier's message and the error code of its BLS response: no
partial verdicts.
"""

from __future__ import annotations

import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils

from fakescope import contract
from fakescope.serving.model_config import load_model_config, parameters
from fakescope.serving.python_model import BlsError, bls_outputs, bls_request


class TritonPythonModel:
    """Scores FACE_CROPS with face_classifier."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the chunk size once."""
        self.chunk_size = int(parameters(load_model_config(args))["chunk_size"])

    async def execute(self, requests: list) -> list:
        """Score every request's crops; requests run concurrently."""
        return list(await asyncio.gather(*(self._score(r) for r in requests)))

    async def _score(self, request) -> pb_utils.InferenceResponse:
        crops = pb_utils.get_input_tensor_by_name(request, contract.FACE_CROPS).as_numpy()
        chunks = [crops[i : i + self.chunk_size] for i in range(0, len(crops), self.chunk_size)]
        outputs = [contract.CLASSIFIER_OUTPUT]
        responses = await asyncio.gather(
            *(
                bls_request(
                    contract.CLASSIFIER_MODEL, {contract.CLASSIFIER_INPUT: chunk}, outputs
                ).async_exec()
                for chunk in chunks
            )
        )
        try:
            scores = [
                bls_outputs(contract.CLASSIFIER_MODEL, response, outputs)[0].reshape(-1)
                for response in responses
            ]
        except BlsError as exc:
            return exc.response()
        result = np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
        return pb_utils.InferenceResponse(
            [pb_utils.Tensor(contract.FACE_SCORES, result.astype(np.float32))]
        )
