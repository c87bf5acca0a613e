"""Read Triton model configurations: the python backend's JSON and ``config.pbtxt`` files.

Training, face extraction, evaluation and the benchmarks must see exactly what the server sees,
so the MTCNN parameters of ``face_detector`` and the thresholds of ``video_aggregator`` are turned
into objects here, by the same functions the python models use.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, cast

from fakescope import contract
from fakescope.pipeline.aggregation import AggregationParams
from fakescope.pipeline.mtcnn import MtcnnParams


def load_model_config(args: dict[str, str]) -> dict[str, Any]:
    """Parse ``args["model_config"]`` as given to ``TritonPythonModel.initialize``."""
    # Triton passes the model configuration as a JSON object.
    return cast("dict[str, Any]", json.loads(args["model_config"]))


def parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """Return the ``parameters`` of a model configuration as a plain ``str -> str`` dict."""
    return {k: v["string_value"] for k, v in model_config.get("parameters", {}).items()}


#: The model-config ``parameters`` the real ONNX Runtime backend (the NGC image's) documents:
#: onnxruntime_backend README, "Model Config Options" and "Deprecated Parameters". It ignores
#: every other key without a word, so a setting outside this set would only ever act on the
#: embedded CPU stand-in, never on the GPU deployment.
ORT_BACKEND_PARAMETERS = frozenset(
    {
        "intra_op_thread_count",
        "inter_op_thread_count",
        "execution_mode",
        "enable_mem_arena",
        "enable_mem_pattern",
        "memory.enable_memory_arena_shrinkage",
        "session.use_device_allocator_for_initializers",
        "cudnn_conv_algo_search",
        "gpu_mem_limit",
        "arena_extend_strategy",
        "do_copy_in_default_stream",
    }
)


_MAX_BATCH_SIZE = re.compile(r"^\s*max_batch_size\s*:\s*(\d+)\s*(?:#.*)?$", re.MULTILINE)


def max_batch_size(config_path: Path) -> int:
    """Return the top-level ``max_batch_size`` of a ``config.pbtxt`` (0: no batching).

    A plain text match, not a protobuf parse: the python models call it, and the GPU image
    installs no ``tritonclient``.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when it states no ``max_batch_size``, or states it twice.

    """
    if not config_path.is_file():
        raise FileNotFoundError(f"model configuration not found: {config_path}")
    found = _MAX_BATCH_SIZE.findall(config_path.read_text())
    if len(found) != 1:
        raise ValueError(f"{config_path}: expected one max_batch_size line, found {len(found)}")
    return int(found[0])


_SPECIFIC_VERSIONS = re.compile(
    r"^\s*version_policy\s*:\s*\{\s*specific\s*:\s*\{\s*versions\s*:\s*\[?([\d\s,]*)\]?",
    re.MULTILINE,
)


def pinned_version(config_path: Path) -> int | None:
    """Return the version a ``config.pbtxt`` pins, or ``None`` under another version policy.

    ``version_policy: { specific: { versions: [N] } }`` pins ``N``. A plain text match, like
    :func:`max_batch_size` (the python models call it).

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when the policy names several versions (a served model has one).

    """
    if not config_path.is_file():
        raise FileNotFoundError(f"model configuration not found: {config_path}")
    return parse_pinned_version(config_path.read_text(encoding="utf-8"), str(config_path))


def parse_pinned_version(text: str, where: str = "config.pbtxt") -> int | None:
    """Return the version the ``config.pbtxt`` text ``text`` pins (see :func:`pinned_version`)."""
    match = _SPECIFIC_VERSIONS.search(text)
    if match is None:
        return None
    versions = [int(v) for v in re.findall(r"\d+", match.group(1))]
    if len(versions) != 1:
        raise ValueError(f"{where}: expected one pinned version, found {versions}")
    return versions[0]


def latest_version_dir(model_dir: Path) -> Path:
    """Return the highest numeric version directory of a Triton model directory."""
    versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise FileNotFoundError(f"no numeric version directory in {model_dir}")
    return max(versions, key=lambda p: int(p.name))


def served_version_dir(model_dir: Path) -> Path:
    """Return the version folder of a local model that Triton serves.

    The version its ``config.pbtxt`` pins (what ``fakescope export`` writes), else, under a
    ``latest`` policy or without a config, the highest version folder: the one resolver for
    everything that reads "the served model" (evaluation, benchmarks, model cards).

    Raises:
        FileNotFoundError: no version folder, or none for the pinned version.
        ValueError: the config pins several versions.

    """
    config = model_dir / "config.pbtxt"
    version = pinned_version(config) if config.is_file() else None
    if version is None:
        return latest_version_dir(model_dir)
    folder = model_dir / str(version)
    if not folder.is_dir():
        raise FileNotFoundError(f"{config} pins version {version}, which has no folder {folder}")
    return folder


def detector_params_from(params: dict[str, str]) -> MtcnnParams:
    """Build the :class:`MtcnnParams` of ``face_detector`` from its ``parameters``."""
    thresholds = tuple(float(t) for t in params["thresholds"].split(","))
    if len(thresholds) != 3:
        raise ValueError(f"face_detector thresholds must be 3 values, got {params['thresholds']}")
    return MtcnnParams(
        min_face_size=int(params["min_face_size"]),
        thresholds=(thresholds[0], thresholds[1], thresholds[2]),
        factor=float(params["scale_factor"]),
        max_side=int(params["detection_max_side"]) or None,
        keyframe_stride=int(params["keyframe_stride"]),
        follow_template_side=int(params["follow_template_side"]),
        max_faces_per_frame=int(params["max_faces_per_frame"]),
    )


def read_model_config(config_path: Path) -> dict[str, Any]:
    """Parse a ``config.pbtxt`` into the JSON form Triton hands python models (field names kept).

    Needs ``tritonclient`` (its protobuf classes): the embedded server's and the tools' install,
    not the GPU image's python models.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when it is not a valid model configuration (the message names the file).

    """
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    if not config_path.is_file():
        raise FileNotFoundError(f"model configuration not found: {config_path}")
    try:
        config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ValueError(f"{config_path}: not a valid Triton model configuration: {exc}") from exc
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def config_parameters(config_path: Path) -> dict[str, str]:
    """Return the ``parameters`` of a Triton ``config.pbtxt`` as a ``str -> str`` dict.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when it is not a valid model configuration (the message names the file).

    """
    return parameters(read_model_config(config_path))


#: The ORT backend's ``cudnn_conv_algo_search`` values and the CUDA provider option each one
#: sets (onnxruntime_backend README, "Deprecated Parameters"; "0" is the backend's default).
CUDNN_CONV_ALGO_SEARCH = {"0": "EXHAUSTIVE", "1": "HEURISTIC", "2": "DEFAULT"}


@dataclasses.dataclass(frozen=True)
class OnnxModelSettings:
    """What an ONNX model's configuration says about running it, as the ORT backend reads it.

    Attributes:
        filename: the model file in its version folder (``default_model_filename``).
        intra_op_threads: ``intra_op_thread_count``; ``None``: ONNX Runtime's default.
        inter_op_threads: ``inter_op_thread_count``; ``None``: ONNX Runtime's default.
        cudnn_conv_algo_search: the CUDA provider's ``cudnn_conv_algo_search`` option
            (:data:`CUDNN_CONV_ALGO_SEARCH`) on a GPU instance; ``None``: its default.

    """

    filename: str
    intra_op_threads: int | None
    inter_op_threads: int | None
    cudnn_conv_algo_search: str | None = None


def onnx_model_settings(model_config: dict[str, Any]) -> OnnxModelSettings:
    """Read :class:`OnnxModelSettings` from a model configuration in its JSON form.

    Raises:
        ValueError: ``cudnn_conv_algo_search`` is not one of the backend's values.

    """
    params = parameters(model_config)

    def threads(key: str) -> int | None:
        return int(params[key]) if key in params else None

    search = params.get("cudnn_conv_algo_search")
    if search is not None and search not in CUDNN_CONV_ALGO_SEARCH:
        choices = ", ".join(f"{k} ({v})" for k, v in CUDNN_CONV_ALGO_SEARCH.items())
        raise ValueError(
            f"{model_config.get('name', 'model')}: cudnn_conv_algo_search must be one of "
            f"{choices}, got {search!r}"
        )
    return OnnxModelSettings(
        filename=model_config.get("default_model_filename") or "model.onnx",
        intra_op_threads=threads("intra_op_thread_count"),
        inter_op_threads=threads("inter_op_thread_count"),
        cudnn_conv_algo_search=CUDNN_CONV_ALGO_SEARCH[search] if search is not None else None,
    )


def detector_params(repository: Path, *, video: bool = True) -> MtcnnParams:
    """Return the :class:`MtcnnParams` that ``face_detector`` builds from its config.

    ``video=False`` is for batches of unrelated images (face crops): nothing can be carried
    from one to the next, so every image is detected in full (``keyframe_stride`` 1).
    """
    config = repository / contract.FACE_DETECTOR_MODEL / "config.pbtxt"
    params = detector_params_from(config_parameters(config))
    return params if video else dataclasses.replace(params, keyframe_stride=1)


#: Bytes per pixel of ``FRAMES`` (UINT8 RGB).
FRAME_CHANNELS = 3


def max_request_bytes(repository: Path) -> int:
    """Return the most ``FRAMES`` bytes one request may carry.

    That is ``face_detector``'s ``max_request_pixels`` (the single home of the request limit)
    times :data:`FRAME_CHANNELS`; the python backend's shared memory is sized from it.
    """
    config = repository / contract.FACE_DETECTOR_MODEL / "config.pbtxt"
    return int(config_parameters(config)["max_request_pixels"]) * FRAME_CHANNELS


def aggregation_params(repository: Path) -> AggregationParams:
    """Return the :class:`AggregationParams` ``video_aggregator`` builds from its config."""
    config = repository / contract.VIDEO_AGGREGATOR_MODEL / "config.pbtxt"
    return AggregationParams.from_parameters(config_parameters(config))
