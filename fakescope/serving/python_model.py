"""Helpers shared by the python-backend models (``model_repository/*/1/model.py``).

Errors follow python_backend's ``examples/bls_error_code``: a request that fails gets a response
carrying a ``pb_utils.TritonError`` with a Triton error code, and the other requests of the batch
are answered normally (an exception raised out of ``execute`` would fail them all, as INTERNAL).
A failed BLS call keeps the code of its response, so an UNAVAILABLE classifier can reach the
client as UNAVAILABLE (which a client may retry), not as INTERNAL. Triton 2.51's python backend
still reports every BLS error as INTERNAL (triton-inference-server/server#7804); the called
model's own code gets through once the python backend keeps it.

Importable only inside a python-backend stub, where ``triton_python_backend_utils`` exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from numpy.typing import NDArray


class BlsError(Exception):
    """A BLS call answered with an error; keeps the called model's message and error code."""

    def __init__(self, model: str, error: pb_utils.TritonError) -> None:
        """Wrap ``error`` (the ``pb_utils.TritonError`` of a BLS response) from ``model``."""
        super().__init__(f"{model}: {error.message()}")
        self.model = model
        self.code = error.code()

    def response(self) -> pb_utils.InferenceResponse:
        """Return the error response, with the called model's code, for the calling request."""
        return error_response(str(self), self.code)


def error_response(message: str, code: Any) -> pb_utils.InferenceResponse:
    """Return a response that fails its request with ``code`` (a ``pb_utils.TritonError`` code)."""
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


def invalid_argument(problem: Exception | str) -> pb_utils.InferenceResponse:
    """Return an INVALID_ARG response whose message names what is wrong with the request."""
    return error_response(str(problem), pb_utils.TritonError.INVALID_ARG)


def bls_request(
    model: str, inputs: Mapping[str, NDArray[Any]], outputs: Sequence[str]
) -> pb_utils.InferenceRequest:
    """Build a BLS ``pb_utils.InferenceRequest`` for ``model`` (inputs made C-contiguous).

    Its outputs are asked for in CPU memory: in the GPU image the ONNX models run on the real
    ONNX Runtime backend on the GPU, and a bare ``as_numpy()`` on an output left in GPU memory
    raises "Tensor is stored in GPU and cannot be converted to NumPy". Every step after a BLS
    call here is numpy on the CPU, so Triton copies the (small) outputs once, where it can.
    """
    return pb_utils.InferenceRequest(
        model_name=model,
        requested_output_names=list(outputs),
        inputs=[pb_utils.Tensor(name, np.ascontiguousarray(a)) for name, a in inputs.items()],
        preferred_memory=pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0),
    )


def bls_outputs(
    model: str, response: pb_utils.InferenceResponse, outputs: Sequence[str]
) -> list[NDArray[Any]]:
    """Return the named outputs of ``model``'s BLS ``response``.

    Raises:
        BlsError: when the response carries an error (message and code kept).

    """
    if response.has_error():
        raise BlsError(model, response.error())
    return [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs]
