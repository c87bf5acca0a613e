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

In process, ``face_detector`` also runs the cascade once as it loads, on a blank request of the
client's defaults (:data:`WARMUP_FRAMES`; its parameter :data:`WARMUP_PARAMETER` turns it off),
so that the first video after a start does not pay the nets' first runs. Triton's own
``model_warmup`` cannot do it for a BLS caller: in the BLS placement its calls would reach the
nets before they are loaded, and a failed warm-up fails the model's load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final, Literal, cast

from fakescope import contract
from fakescope.pipeline.mtcnn import OnnxRuntimeMtcnnNets
from fakescope.pipeline.onnx_session import cpu_session_options
from fakescope.serving.model_config import onnx_model_settings, read_model_config
from fakescope.serving.siblings import served_version_file, sibling_file

#: The environment variable that places the nets (see the module docstring).
NETS_ENV: Final = "FAKESCOPE_DETECTOR_NETS"
#: The nets are the repository's ``mtcnn_*`` models, called through BLS (the default).
BLS: Final = "bls"
#: The nets run with ONNX Runtime on the CPU in ``face_detector``'s own process.
IN_PROCESS: Final = "in_process"
NetsPlacement = Literal["bls", "in_process"]
PLACEMENTS: Final = (BLS, IN_PROCESS)


#: The blank request the in-process nets are warmed up on as ``face_detector`` loads (count,
#: height, width): the client's defaults (:data:`fakescope.contract.DEFAULT_NUM_FRAMES` frames,
#: long side :data:`fakescope.contract.DEFAULT_MAX_SIDE`) of a 16:9 video. Detection first
#: downscales a frame to one long side (``detection_max_side``), so the pyramid's shapes, for
#: which the warm-up is, are those of every 16:9 video that large.
WARMUP_FRAMES: Final = (
    contract.DEFAULT_NUM_FRAMES,
    contract.DEFAULT_MAX_SIDE * 9 // 16,
    contract.DEFAULT_MAX_SIDE,
)
#: ``face_detector``'s parameter that turns that warm-up on (``"true"``) or off (``"false"``).
WARMUP_PARAMETER: Final = "warm_up_in_process_nets"


def warm_up_wanted(params: Mapping[str, str]) -> bool:
    """Return whether ``face_detector``'s ``params`` ask for the in-process warm-up.

    Raises:
        ValueError: :data:`WARMUP_PARAMETER` is missing or neither ``"true"`` nor ``"false"``.

    """
    value = params.get(WARMUP_PARAMETER)
    if value not in ("true", "false"):
        raise ValueError(
            f'face_detector parameter {WARMUP_PARAMETER} must be "true" or "false", got {value!r}'
        )
    return value == "true"


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
    for name in contract.MTCNN_MODELS:
        settings = onnx_model_settings(read_model_config(sibling_file(args, name, "config.pbtxt")))
        path = served_version_file(args, name, settings.filename)
        options = cpu_session_options(settings.intra_op_threads, settings.inter_op_threads)
        try:
            sessions[name] = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own exception types; name the file
            raise RuntimeError(f"{name}: cannot load {path}: {exc}") from exc
    return OnnxRuntimeMtcnnNets.from_sessions(sessions)
