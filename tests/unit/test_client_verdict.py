"""Verdicts and response parsing (no server)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from fakescope import contract
from fakescope.client.frames import SampledFrames
from fakescope.client.triton import (
    RawResult,
    ServerError,
    parse_outputs,
    trained_from_config,
)
from fakescope.client.verdict import (
    DEFAULT_THRESHOLD,
    UNTRAINED_WARNING,
    Verdict,
    label_for,
)

NAN = float("nan")
REQUIRED_KEYS = {
    "video",
    "status",
    "label",
    "fake_probability",
    "frames",
    "faces",
    "processing_seconds",
    "duration_seconds",
    "ratio",
}


def sampled(
    n: int = 4, frame_size: tuple[int, int] = (320, 180), source_size: tuple[int, int] = (640, 360)
) -> SampledFrames:
    w, h = frame_size
    return SampledFrames(
        frames=np.zeros((n, h, w, 3), np.uint8),
        timestamps=np.arange(n, dtype=np.float32) * 0.5 + 0.25,
        duration_seconds=2.0,
        source_size=source_size,
        fps=10.0,
        frame_indices=np.arange(n) * 5 + 2,
        total_frames=20,
        reported_frames=20.0,
    )


def raw_ok(probability: float = 0.8) -> RawResult:
    return RawResult(
        fake_probability=probability,
        frame_scores=np.array([0.9, NAN, 0.7, NAN], np.float32),
        face_boxes=np.array([[0, 10, 20, 110, 120, 0.99], [2, 12, 22, 112, 122, 0.98]], np.float32),
        face_scores=np.array([0.9, 0.7], np.float32),
        status=contract.STATUS_OK,
    )


def raw_no_face(n: int = 4) -> RawResult:
    return RawResult(
        fake_probability=NAN,
        frame_scores=np.full(n, NAN, np.float32),
        face_boxes=np.zeros((0, 6), np.float32),
        face_scores=np.zeros(0, np.float32),
        status=contract.STATUS_NO_FACE,
    )


def strict_json(d: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON that refuses NaN/Infinity both ways."""

    def refuse(const: str) -> None:
        raise ValueError(f"non-standard JSON constant {const}")

    return json.loads(json.dumps(d, allow_nan=False), parse_constant=refuse)


# --- labels --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probability", "threshold", "label"),
    [
        (0.8, 0.5, "FAKE"),
        (0.5, 0.5, "FAKE"),
        (0.49, 0.5, "REAL"),
        (0.8, 0.9, "REAL"),
        (0.0, 0.0, "FAKE"),
    ],
)
def test_label_for_compares_with_threshold_when_status_is_ok(
    probability: float, threshold: float, label: str
) -> None:
    assert label_for(contract.STATUS_OK, probability, threshold) == label


def test_label_for_is_no_face_when_status_is_no_face() -> None:
    assert label_for(contract.STATUS_NO_FACE, None, DEFAULT_THRESHOLD) == "NO_FACE"


def test_label_for_refuses_to_guess_when_ok_has_no_probability() -> None:
    with pytest.raises(ValueError):
        label_for(contract.STATUS_OK, NAN, 0.5)


# --- Verdict -----------------------------------------------------------------------------------


def test_verdict_scales_boxes_to_source_pixels_when_frames_were_downscaled() -> None:
    v = Verdict.from_result(
        "v.mp4",
        raw_ok(),
        sampled(),
        processing_seconds=1.0,
        model_trained=True,
        threshold=DEFAULT_THRESHOLD,
    )
    assert v.face_boxes[0]["box"] == pytest.approx([20, 40, 220, 240])
    assert v.face_boxes[1]["frame_index"] == 2
    assert v.face_boxes[1]["timestamp"] == pytest.approx(1.25)
    assert v.face_boxes[0]["detection_score"] == pytest.approx(0.99)
    assert v.face_boxes[0]["fake_score"] == pytest.approx(0.9)


def test_verdict_keeps_boxes_when_frames_were_sent_at_source_size() -> None:
    s = sampled(frame_size=(640, 360), source_size=(640, 360))
    v = Verdict.from_result(
        "v.mp4",
        raw_ok(),
        s,
        processing_seconds=1.0,
        model_trained=True,
        threshold=DEFAULT_THRESHOLD,
    )
    assert v.face_boxes[0]["box"] == pytest.approx([10, 20, 110, 120])


def test_verdict_reports_label_counts_and_ratio_when_status_is_ok() -> None:
    v = Verdict.from_result(
        "v.mp4", raw_ok(0.8), sampled(), processing_seconds=0.5, model_trained=True, threshold=0.5
    )
    assert (v.label, v.status, v.frames, v.faces) == ("FAKE", "ok", 4, 2)
    assert v.fake_probability == pytest.approx(0.8)
    assert v.ratio == pytest.approx(0.25)
    assert v.frame_scores[1] is None and v.frame_scores[0] == pytest.approx(0.9)
    assert v.warning is None


def test_verdict_uses_given_threshold_when_one_is_passed() -> None:
    v = Verdict.from_result(
        "v.mp4", raw_ok(0.8), sampled(), processing_seconds=0.5, model_trained=True, threshold=0.9
    )
    assert v.label == "REAL"


def test_verdict_has_no_probability_when_no_face_was_found() -> None:
    v = Verdict.from_result(
        "v.mp4",
        raw_no_face(),
        sampled(),
        processing_seconds=0.5,
        model_trained=True,
        threshold=DEFAULT_THRESHOLD,
    )
    assert (v.label, v.fake_probability, v.faces) == ("NO_FACE", None, 0)
    assert v.frame_scores == [None] * 4


def test_verdict_warns_when_model_is_untrained() -> None:
    v = Verdict.from_result(
        "v.mp4",
        raw_ok(),
        sampled(),
        processing_seconds=0.5,
        model_trained=False,
        threshold=DEFAULT_THRESHOLD,
    )
    assert v.warning == UNTRAINED_WARNING
    assert v.to_json_dict()["warning"] == UNTRAINED_WARNING


def test_verdict_is_frozen_when_built() -> None:
    v = Verdict.from_result(
        "v.mp4",
        raw_ok(),
        sampled(),
        processing_seconds=0.5,
        model_trained=True,
        threshold=DEFAULT_THRESHOLD,
    )
    with pytest.raises(AttributeError):
        v.label = "REAL"  # type: ignore[misc]


@pytest.mark.parametrize("raw", [raw_ok(), raw_no_face()], ids=["ok", "no_face"])
def test_verdict_json_has_the_keys_and_no_nan_when_serialised(raw: RawResult) -> None:
    v = Verdict.from_result(
        "dir/v.mp4",
        raw,
        sampled(),
        processing_seconds=0.5,
        model_trained=False,
        threshold=DEFAULT_THRESHOLD,
        decode_seconds=0.2,
        infer_seconds=0.3,
    )
    d = strict_json(v.to_json_dict())
    assert d.keys() >= REQUIRED_KEYS
    assert d["video"] == "dir/v.mp4"
    assert len(d["frame_scores"]) == 4
    assert d["model_trained"] is False
    assert d["decode_seconds"] == pytest.approx(0.2)


def test_verdict_json_turns_nan_into_null_when_values_are_not_finite() -> None:
    raw = RawResult(
        fake_probability=0.7,
        frame_scores=np.array([NAN, math.inf], np.float32),
        face_boxes=np.array([[1, NAN, 0, 1, 1, NAN]], np.float32),
        face_scores=np.array([NAN], np.float32),
        status=contract.STATUS_OK,
    )
    v = Verdict.from_result(
        "v.mp4",
        raw,
        sampled(n=2),
        processing_seconds=0.1,
        model_trained=True,
        threshold=DEFAULT_THRESHOLD,
    )
    d = strict_json(v.to_json_dict())
    assert d["frame_scores"] == [None, None]
    assert d["face_boxes"][0]["box"][0] is None
    assert d["face_boxes"][0]["detection_score"] is None
    assert d["face_boxes"][0]["fake_score"] is None


def test_verdict_rejects_threshold_when_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="threshold"):
        Verdict.from_result(
            "v.mp4", raw_ok(), sampled(), processing_seconds=0.1, model_trained=True, threshold=1.5
        )


# --- parse_outputs (the response side of DetectorClient) -----------------------------------------


def outputs(
    n: int = 2,
    status: object = b"ok",
    probability: float = 0.6,
    boxes: np.ndarray | None = None,
    **override: Any,
) -> dict[str, Any]:
    if boxes is None:
        boxes = np.array([[0, 1, 2, 3, 4, 0.9]], np.float32)
    d: dict[str, Any] = {
        contract.FAKE_PROBABILITY: np.array([probability], np.float32),
        contract.FRAME_SCORES: np.full(n, 0.6, np.float32),
        contract.FACE_BOXES: boxes,
        contract.FACE_SCORES: np.full(boxes.shape[0], 0.6, np.float32),
        contract.STATUS: np.array([status], dtype=object),
    }
    d.update(override)
    return d


def test_parse_outputs_returns_raw_result_when_response_follows_contract() -> None:
    raw = parse_outputs(outputs().get, 2)
    assert raw.status == "ok"
    assert raw.fake_probability == pytest.approx(0.6)
    assert raw.face_boxes.shape == (1, 6)


def test_parse_outputs_accepts_text_status_when_json_transport_decodes_it() -> None:
    assert parse_outputs(outputs(status="no_face", probability=NAN).get, 2).status == "no_face"


def test_parse_outputs_accepts_flat_boxes_when_no_face_was_found() -> None:
    raw = parse_outputs(
        outputs(status=b"no_face", probability=NAN, boxes=np.zeros((0,), np.float32)).get, 2
    )
    assert raw.face_boxes.shape == (0, 6)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        ({contract.STATUS: None}, "STATUS is missing"),
        ({contract.STATUS: np.array([b"maybe"], dtype=object)}, "unknown STATUS"),
        ({contract.FAKE_PROBABILITY: np.array([NAN], np.float32)}, "NaN"),
        ({contract.FRAME_SCORES: np.zeros(3, np.float32)}, "3 values for 2 frames"),
        ({contract.FACE_BOXES: np.zeros((1, 5), np.float32)}, "FACE_BOXES shape"),
        ({contract.FACE_SCORES: np.zeros(2, np.float32)}, "2 FACE_SCORES for 1"),
        ({contract.FACE_BOXES: np.array([[7, 1, 2, 3, 4, 0.9]], np.float32)}, "not sent"),
    ],
)
def test_parse_outputs_raises_server_error_when_response_breaks_contract(
    response: dict[str, Any], message: str
) -> None:
    with pytest.raises(ServerError, match=message):
        parse_outputs(outputs(**response).get, 2)


# --- trained_from_config -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "trained"),
    [
        ({"parameters": {"trained": {"string_value": "true"}}}, True),
        ({"parameters": {"trained": {"string_value": "True"}}}, True),
        ({"parameters": {"trained": {"string_value": "false"}}}, False),
        ({"parameters": {}}, False),
        ({}, False),
        ({"parameters": {"trained": {"string_value": "perhaps"}}}, False),
    ],
)
def test_trained_from_config_reads_the_parameter_when_config_is_given(
    config: dict[str, Any], trained: bool
) -> None:
    assert trained_from_config(config) is trained


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "half"])
def test_threshold_from_config_refuses_value_when_not_a_probability(value: str) -> None:
    from fakescope.client.triton import ServerError, threshold_from_config

    config = {"parameters": {contract.THRESHOLD_PARAMETER: {"string_value": value}}}
    with pytest.raises(ServerError, match="not a number in"):
        threshold_from_config(config)


def test_threshold_from_config_reads_value_when_stated_and_none_when_absent() -> None:
    from fakescope.client.triton import threshold_from_config

    config = {"parameters": {contract.THRESHOLD_PARAMETER: {"stringValue": "0.417"}}}
    assert threshold_from_config(config) == 0.417
    assert threshold_from_config({"parameters": {}}) is None
