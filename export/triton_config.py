"""Read the served pipeline's settings from the model repository's ``config.pbtxt`` files.

Training, face extraction and evaluation must see exactly what the server sees: the MTCNN
parameters of ``face_detector`` and the confident-strategy thresholds of ``video_aggregator``
are read here from the same files tritonserver reads (protobuf text format, parsed with
tritonclient's ``model_config_pb2``), and turned into the same objects the python models build.
"""

from __future__ import annotations

from pathlib import Path

from fakescope import contract
from fakescope.pipeline.aggregation import AggregationParams
from fakescope.pipeline.mtcnn import MtcnnParams

__all__ = ["aggregation_params", "config_parameters", "detector_params"]


def config_parameters(config_path: Path) -> dict[str, str]:
    """Return the ``parameters`` of a Triton ``config.pbtxt`` as a ``str -> str`` dict.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when it is not a valid model configuration (the message names the file).

    """
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    if not config_path.is_file():
        raise FileNotFoundError(f"model configuration not found: {config_path}")
    try:
        config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ValueError(f"{config_path}: not a valid Triton model configuration: {exc}") from exc
    return {key: value.string_value for key, value in config.parameters.items()}


def detector_params(repository: Path) -> MtcnnParams:
    """Return the :class:`MtcnnParams` that ``face_detector`` builds from its config."""
    params = config_parameters(repository / contract.FACE_DETECTOR_MODEL / "config.pbtxt")
    thresholds = tuple(float(t) for t in params["thresholds"].split(","))
    if len(thresholds) != 3:
        raise ValueError(f"face_detector thresholds must be 3 values, got {params['thresholds']}")
    return MtcnnParams(
        min_face_size=int(params["min_face_size"]),
        thresholds=(thresholds[0], thresholds[1], thresholds[2]),
        factor=float(params["scale_factor"]),
        max_side=int(params["detection_max_side"]) or None,
    )


def aggregation_params(repository: Path) -> AggregationParams:
    """Return the :class:`AggregationParams` ``video_aggregator`` builds from its config."""
    config = repository / contract.VIDEO_AGGREGATOR_MODEL / "config.pbtxt"
    return AggregationParams.from_parameters(config_parameters(config))
