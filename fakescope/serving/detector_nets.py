"""Where ``face_detector`` runs the three MTCNN nets: through BLS, or in its own process.

The repository serves two deployments. In the NGC image the nets are ONNX models on the real
ONNX Runtime backend (on the GPU where there is one); ``face_detector`` calls them through BLS,
and a call is a hand-over to the backend inside tritonserver. The embedded CPU server serves
the same ONNX models with a python stand-in (:mod:`fakescope.serving.onnxruntime_backend`):
there each BLS call is a round trip to another python stub process, which runs the very same
ONNX Runtime on the same CPU. A video needs a dozen or more such calls, so in
``face_detector``'s own process the nets cost less time and CPU per video (before and after in
``benchmarks/README.md``). So the server that installs the stand-in says so:
``EmbeddedTriton`` sets :data:`NETS_ENV` to :data:`IN_PROCESS` in tritonserver's environment,
which its python stubs inherit. Unset (any other deployment), the nets run through BLS.

In process, each net's file and ONNX Runtime settings are read from that net's own
``config.pbtxt`` (:func:`fakescope.serving.model_config.onnx_model_settings`) and the version
Triton serves, as the stand-in would run it; the ``mtcnn_*`` models stay served for callers
that use them directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final, Literal, cast

from fakescope import contract
from fakescope.pipeline.mtcnn import OnnxRuntimeMtcnnNets
from fakescope.pipeline.onnx_session import cpu_session_options
from fakescope.serving.model_config import max_batch_size, onnx_model_settings, read_model_config
from fakescope.serving.siblings import served_version_file, sibling_file

#: The environment variable that places the nets (see the module docstring).
NETS_ENV: Final = "FAKESCOPE_DETECTOR_NETS"
#: The nets are the repository's ``mtcnn_*`` models, called through BLS (the default).
BLS: Final = "bls"
#: The nets run with ONNX Runtime on the CPU in ``face_detector``'s own process.
IN_PROCESS: Final = "in_process"
NetsPlacement = Literal["bls", "in_process"]
PLACEMENTS: Final = (BLS, IN_PROCESS)


def check_placement(value: str) -> NetsPlacement:
    """Return ``value`` as a placement; raise ValueError naming the choices if it is none."""
    if value not in PLACEMENTS:
        raise ValueError(
            f"{NETS_ENV} must be one of {', '.join(PLACEMENTS)} (unset: {BLS}), got {value!r}"
        )
    return cast("NetsPlacement", value)


def nets_placement(environ: Mapping[str, str] | None = None) -> NetsPlacement:
    """Return where the nets run, from :data:`NETS_ENV` (unset: :data:`BLS`).

    Raises:
        ValueError: the variable is set to something else than a placement.

    """
    env = os.environ if environ is None else environ
    return check_placement(env.get(NETS_ENV, BLS))


def in_process_nets(args: Mapping[str, str]) -> OnnxRuntimeMtcnnNets:
    """Open the served version of each net in this process, with its configured threads.

    ``args`` are the calling python model's ``initialize`` arguments (its repository folder).

    Raises:
        FileNotFoundError: a net's ``config.pbtxt`` or model file is missing.
        ValueError: a net's ``config.pbtxt`` is no valid model configuration.
        RuntimeError: ONNX Runtime cannot load a net's file (the message names the file).

    """
    import onnxruntime as ort  # imported here: the BLS placement needs no ONNX Runtime

    sessions = {}
    batch_sizes = {}  # each net's own bound, as the served nets have it
    for name in contract.MTCNN_MODELS:
        config_path = sibling_file(args, name, "config.pbtxt")
        settings = onnx_model_settings(read_model_config(config_path))
        batch_sizes[name] = max_batch_size(config_path)
        path = served_version_file(args, name, settings.filename)
        options = cpu_session_options(settings.intra_op_threads, settings.inter_op_threads)
        try:
            sessions[name] = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own exception types; name the file
            raise RuntimeError(f"{name}: cannot load {path}: {exc}") from exc
    return OnnxRuntimeMtcnnNets.from_sessions(sessions, max_batch_size=batch_sizes)
