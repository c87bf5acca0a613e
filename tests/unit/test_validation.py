import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from fakescope.contract import MIN_FRAME_SIDE
from fakescope.pipeline.validation import validate_request

LIMITS = {"max_frames": 8, "max_frame_side": 256, "max_request_pixels": 4 * 256 * 256}


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((2, 32, 48, 3), np.float32), "UINT8"),
        (np.zeros((32, 48, 3), np.uint8), r"\[N, H, W, 3\]"),
        (np.zeros((1, 32, 48, 4), np.uint8), r"\[N, H, W, 3\]"),
        (np.zeros((0, 32, 48, 3), np.uint8), "zero frames"),
        (np.zeros((9, 32, 48, 3), np.uint8), "maximum"),
        (np.zeros((1, 8, 48, 3), np.uint8), "outside"),
        (np.zeros((1, 32, 300, 3), np.uint8), "outside"),
        (np.zeros((5, 256, 256, 3), np.uint8), "request limit"),
    ],
)
def test_validate_request_names_the_problem_when_tensor_is_bad(frames, message):
    with pytest.raises(ValueError, match=message):
        validate_request(frames, **LIMITS)


def test_validate_request_accepts_contract_when_tensors_are_good():
    validate_request(np.zeros((2, 32, 48, 3), np.uint8), **LIMITS)


@settings(max_examples=200, deadline=None)
@given(
    frames=arrays(
        st.sampled_from([np.uint8, np.float32, np.int16]),
        array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=20),
    ),
)
def test_validate_request_raises_only_value_error_when_fuzzed(frames):
    try:
        validate_request(frames, **LIMITS)
    except ValueError:
        return
    # accepted: the whole contract holds
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[3] == 3
    n, height, width = frames.shape[:3]
    assert 1 <= n <= LIMITS["max_frames"]
    assert min(height, width) >= MIN_FRAME_SIDE and max(height, width) <= LIMITS["max_frame_side"]
    assert n * height * width <= LIMITS["max_request_pixels"]
