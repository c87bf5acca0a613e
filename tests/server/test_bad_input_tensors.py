"""Malformed KServe-v2 requests sent straight to the ``deepfake_detector`` ensemble.

Complements ``tests/server/test_server.py`` (zero/65 frames, frame size, FP32 frames, 3-D
frames): here memory layouts numpy produces, missing or extra inputs (among them the
``FRAME_TIMESTAMPS`` input the ensemble no longer takes), other dtypes/ranks, RGBA, and
hand-written HTTP/JSON bodies. Every bad request must get
``INVALID_ARGUMENT`` (HTTP 400) with a message naming the tensor, and the server must stay
ready. Real server, real models; nothing is mocked.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from skimage import data as skdata
from tritonclient.utils import InferenceServerException

from fakescope import contract
from fakescope.client.triton import DetectorClient
from fakescope.serving.embedded import EmbeddedTriton
from tests.support.analyze_cli import assert_server_ready

PROTOCOLS = ["http", "grpc"]
OUTPUTS = [
    contract.FAKE_PROBABILITY,
    contract.FRAME_SCORES,
    contract.FACE_BOXES,
    contract.FACE_SCORES,
    contract.STATUS,
]
INVALID_STATUS = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}


@dataclass(frozen=True)
class Tensor:
    """One request input; ``datatype`` is what the request declares (may be wrong on purpose)."""

    name: str
    data: np.ndarray
    datatype: str


def frames_tensor(frames: np.ndarray) -> Tensor:
    return Tensor(contract.FRAMES, frames, "UINT8")


def blank(n: int = 1, side: int = 32) -> np.ndarray:
    return np.zeros((n, side, side, 3), np.uint8)


def face_frames(n: int = 2) -> np.ndarray:
    """``n`` 320x240 frames with the astronaut's face (real detections, real scores)."""
    face = cv2.resize(skdata.astronaut(), (160, 160), interpolation=cv2.INTER_AREA)
    frames = np.full((n, 240, 320, 3), 50, np.uint8)
    for i in range(n):
        frames[i, 40 : 40 + 160, 60 + 20 * i : 220 + 20 * i] = face
    return frames


def infer(protocol: str, triton: EmbeddedTriton, tensors: list[Tensor]) -> dict[str, np.ndarray]:
    """Call the ensemble with exactly ``tensors`` (binary tensor data for HTTP)."""
    module: Any = grpcclient if protocol == "grpc" else httpclient
    url = triton.address.grpc_url if protocol == "grpc" else triton.address.http_url
    client = module.InferenceServerClient(url)
    inputs = []
    for tensor in tensors:
        item = module.InferInput(tensor.name, list(tensor.data.shape), tensor.datatype)
        item.set_data_from_numpy(tensor.data)
        inputs.append(item)
    outputs = [module.InferRequestedOutput(name) for name in OUTPUTS]
    try:
        result = client.infer(contract.ENSEMBLE_MODEL, inputs, outputs=outputs)
    finally:
        client.close()
    return {name: result.as_numpy(name) for name in OUTPUTS}


def expect_invalid(
    protocol: str, triton: EmbeddedTriton, tensors: list[Tensor], *phrases: str
) -> str:
    """Assert INVALID_ARGUMENT with every phrase in the message; return the message."""
    with pytest.raises(InferenceServerException) as info:
        infer(protocol, triton, tensors)
    message = str(info.value.message())
    assert str(info.value.status()) == INVALID_STATUS[protocol], (info.value.status(), message)
    for phrase in phrases:
        assert phrase in message, message
    assert_server_ready(triton)
    return message


def assert_same_outputs(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert got[contract.STATUS].tolist() == expected[contract.STATUS].tolist()
    for name in OUTPUTS:
        if name != contract.STATUS:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


# --- memory layouts: the same values, any strides ----------------------------------------------


def _transposed_back(frames: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frames.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)


def _window_of_larger(frames: np.ndarray) -> np.ndarray:
    n, h, w, c = frames.shape
    big = np.full((n, h + 9, w + 13, c), 255, np.uint8)
    big[:, 5 : 5 + h, 7 : 7 + w] = frames
    return big[:, 5 : 5 + h, 7 : 7 + w]


def _rgb_of_rgba(frames: np.ndarray) -> np.ndarray:
    rgba = np.concatenate([frames, np.full((*frames.shape[:3], 1), 9, np.uint8)], axis=3)
    return rgba[..., :3]


def _reversed_twice(frames: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frames[:, ::-1, ::-1])[:, ::-1, ::-1]


LAYOUTS = {
    "transposed_view": _transposed_back,
    "fortran_order": np.asfortranarray,
    "window_of_larger_array": _window_of_larger,
    "rgb_channels_of_rgba": _rgb_of_rgba,
    "negative_strides": _reversed_twice,
}


@pytest.fixture(scope="module")
def contiguous_result(triton: EmbeddedTriton) -> dict[str, np.ndarray]:
    frames = face_frames()
    result = infer("grpc", triton, [frames_tensor(frames)])
    assert result[contract.STATUS].tolist() == [b"ok"]
    assert result[contract.FACE_BOXES].shape[0] >= 2
    return result


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_ensemble_returns_the_contiguous_result_when_frames_are_a_strided_view(
    triton: EmbeddedTriton,
    contiguous_result: dict[str, np.ndarray],
    protocol: str,
    layout: str,
) -> None:
    frames = face_frames()
    view = LAYOUTS[layout](frames)
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(view, frames)
    got = infer(protocol, triton, [frames_tensor(view)])
    assert_same_outputs(got, contiguous_result)


@pytest.mark.parametrize("shared_memory", [True, False], ids=["shared_memory", "in_request"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_detector_client_returns_the_contiguous_result_when_frames_are_a_strided_view(
    triton: EmbeddedTriton,
    contiguous_result: dict[str, np.ndarray],
    shared_memory: bool,
    layout: str,
) -> None:
    # the project's own client: its copy into a region, or into the request, takes any strides
    view = LAYOUTS[layout](face_frames())
    assert not view.flags.c_contiguous
    with DetectorClient(triton.address.grpc_url, "grpc", shared_memory=shared_memory) as client:
        got = client.infer(view)
    assert got.status == contiguous_result[contract.STATUS][0].decode()
    assert got.fake_probability == contiguous_result[contract.FAKE_PROBABILITY][0]
    for name, value in (
        (contract.FRAME_SCORES, got.frame_scores),
        (contract.FACE_BOXES, got.face_boxes),
        (contract.FACE_SCORES, got.face_scores),
    ):
        np.testing.assert_array_equal(value, contiguous_result[name], err_msg=name)


# --- missing or extra inputs, wrong dtypes and ranks -------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("BYTES", np.array([b"\x00" * 3072], dtype=np.object_)),
        ("INT8", np.zeros((1, 32, 32, 3), np.int8)),
        ("UINT16", np.zeros((1, 32, 32, 3), np.uint16)),
    ],
    ids=["BYTES", "INT8", "UINT16"],
)
def test_ensemble_rejects_frames_naming_them_when_dtype_is_not_uint8(
    triton: EmbeddedTriton, protocol: str, datatype: str, data: np.ndarray
) -> None:
    frames = Tensor(contract.FRAMES, data, datatype)
    expect_invalid(protocol, triton, [frames], contract.FRAMES, datatype)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ensemble_rejects_request_naming_frames_when_no_input_is_sent(
    triton: EmbeddedTriton, protocol: str
) -> None:
    message = expect_invalid(protocol, triton, [], "missing required input")
    assert f"'{contract.FRAMES}'" in message.split("missing required input")[1]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ensemble_rejects_request_naming_frame_timestamps_when_a_client_still_sends_them(
    triton: EmbeddedTriton, protocol: str
) -> None:
    """A client written for the old contract (FRAMES + FRAME_TIMESTAMPS) is told what is wrong.

    Triton refuses the extra input before any model runs: its message says that the ensemble
    takes one input, and lists the ones it got, FRAME_TIMESTAMPS among them.
    """
    old = Tensor("FRAME_TIMESTAMPS", np.zeros(1, np.float32), "FP32")
    expect_invalid(
        protocol,
        triton,
        [frames_tensor(blank()), old],
        "expected 1 inputs but got 2 inputs",
        "'FRAME_TIMESTAMPS'",
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ensemble_rejects_request_naming_the_extra_input_when_an_unknown_input_is_sent(
    triton: EmbeddedTriton, protocol: str
) -> None:
    extra = Tensor("FRAME_LABELS", np.zeros(1, np.float32), "FP32")
    expect_invalid(
        protocol,
        triton,
        [frames_tensor(blank()), extra],
        "FRAME_LABELS",
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("frames", "phrases"),
    [
        (np.zeros((1, 32, 32, 4), np.uint8), (contract.FRAMES, "[1,32,32,4]")),
        (np.zeros((1, 32, 32, 1), np.uint8), (contract.FRAMES, "[1,32,32,1]")),
        (np.zeros((1, 1, 32, 32, 3), np.uint8), (contract.FRAMES, "[1,1,32,32,3]")),
    ],
    ids=["rgba", "one_channel", "five_dims"],
)
def test_ensemble_rejects_request_naming_tensor_and_shape_when_rank_or_channels_are_wrong(
    triton: EmbeddedTriton, protocol: str, frames: np.ndarray, phrases: tuple[str, ...]
) -> None:
    expect_invalid(protocol, triton, [frames_tensor(frames)], *phrases)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("frames", "phrase"),
    [
        (np.zeros((1, 0, 0, 3), np.uint8), "frame size 0x0"),
        (np.zeros((1, 12, 4097, 3), np.uint8), "frame size 4097x12"),
    ],
    ids=["empty_frame", "too_wide"],
)
def test_ensemble_rejects_request_with_a_message_when_values_break_the_contract(
    triton: EmbeddedTriton, protocol: str, frames: np.ndarray, phrase: str
) -> None:
    expect_invalid(protocol, triton, [frames_tensor(frames)], phrase)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ensemble_accepts_the_documented_maximum_when_request_holds_64_frames(
    triton: EmbeddedTriton, protocol: str
) -> None:
    n = contract.MAX_FRAMES_PER_REQUEST
    out = infer(protocol, triton, [frames_tensor(blank(n, 16))])
    assert out[contract.STATUS].tolist() == [b"no_face"]
    assert out[contract.FRAME_SCORES].shape == (n,)
    expect_invalid(
        protocol,
        triton,
        [frames_tensor(blank(n + 1, 16))],
        f"{n + 1} frames",
        f"maximum per request is {n}",
    )


# --- hand-written HTTP/JSON bodies -----------------------------------------------------------


def post_json(triton: EmbeddedTriton, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    url = f"http://{triton.address.http_url}/v2/models/{contract.ENSEMBLE_MODEL}/infer"
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def json_body(frames_data: list[Any], frames_shape: list[int]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": contract.FRAMES,
                "datatype": "UINT8",
                "shape": frames_shape,
                "data": frames_data,
            },
        ]
    }


@pytest.mark.parametrize("count", [10, 1000], ids=["fewer_values", "more_values"])
def test_http_json_request_is_refused_naming_the_shape_when_data_length_differs(
    triton: EmbeddedTriton, count: int
) -> None:
    status, reply = post_json(triton, json_body([0] * count, [1, 16, 16, 3]))  # 768 declared
    assert status in (400, 500), reply
    assert "Shape does not match" in reply["error"], reply
    assert_server_ready(triton)


@pytest.mark.xfail(
    strict=True,
    reason="tritonserver (pytriton 0.7.0) answers 500 'Unable to parse data' instead of 400 "
    "for a JSON body whose data length does not match its shape (upstream behaviour)",
)
def test_http_json_request_gets_400_when_data_length_differs_from_shape(
    triton: EmbeddedTriton,
) -> None:
    status, _ = post_json(triton, json_body([0] * 10, [1, 16, 16, 3]))
    assert status == 400


def test_http_json_request_is_refused_when_a_uint8_value_is_negative(
    triton: EmbeddedTriton,
) -> None:
    status, reply = post_json(triton, json_body([-1] * 768, [1, 16, 16, 3]))
    assert status in (400, 500), reply
    assert "Unable to parse 'data'" in reply["error"], reply
    assert_server_ready(triton)


@pytest.mark.xfail(
    strict=True,
    reason="tritonserver's JSON parser wraps UINT8 values above 255 (256 -> 0) and accepts the "
    "request; the python backend only sees the wrapped bytes (upstream behaviour)",
)
def test_http_json_request_is_refused_when_a_uint8_value_exceeds_255(
    triton: EmbeddedTriton,
) -> None:
    status, _ = post_json(triton, json_body([256] * 768, [1, 16, 16, 3]))
    assert status == 400
