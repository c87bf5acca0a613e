import math

import numpy as np
import pytest

from fakescope.contract import MAX_FRAMES_PER_REQUEST
from fakescope.pipeline.aggregation import (
    AggregationParams,
    aggregate,
    confident_score,
    frame_scores,
)
from fakescope.serving.model_config import aggregation_params
from tests.support.servers import REPOSITORY

#: The thresholds these tests are written for (the served ones: test_aggregation_params_...)
P = AggregationParams(
    fake_threshold=0.8,
    real_threshold=0.2,
    fake_fraction=0.4,
    real_fraction=0.9,
    min_confident_frames=3,
)
SERVED = {
    "fake_threshold": "0.8",
    "real_threshold": "0.2",
    "fake_fraction": "0.4",
    "real_fraction": "0.9",
    "min_confident_frames": "3",
}


def test_frame_scores_take_max_face_when_frame_has_several_faces():
    scores = frame_scores(3, np.array([0, 0, 2]), np.array([0.1, 0.7, 0.4]))
    assert scores[0] == pytest.approx(0.7)
    assert math.isnan(scores[1])
    assert scores[2] == pytest.approx(0.4)


def test_confident_score_is_nan_when_no_frame_has_a_face():
    assert math.isnan(confident_score(np.array([np.nan, np.nan]), P))


def test_confident_score_ignores_few_confident_fakes_when_most_frames_are_real():
    scores = np.array([0.95, 0.05] + [0.1] * 30)
    # the mean of the confident reals, not of every frame (4.0 / 32)
    assert confident_score(scores, P) == pytest.approx(3.05 / 31)


def test_confident_score_averages_confident_fakes_when_enough_frames_are_fake():
    scores = np.array([0.9] * 8 + [0.5] * 8)
    assert confident_score(scores, P) == pytest.approx(0.9)


def test_confident_score_needs_min_frames_when_video_is_short():
    # 2 of 3 frames confidently fake is >= 40% but fewer than min_confident_frames.
    assert confident_score(np.array([0.95, 0.95, 0.3]), P) == pytest.approx((0.95 * 2 + 0.3) / 3)


def test_confident_score_is_plain_mean_when_undecided():
    scores = np.array([0.5, 0.6, 0.3, 0.4])
    assert confident_score(scores, P) == pytest.approx(0.45)


def test_aggregate_rejects_frame_index_when_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        aggregate(2, np.array([2]), np.array([0.5], dtype=np.float32), P)


@pytest.mark.parametrize("count", [-1, MAX_FRAMES_PER_REQUEST + 1, 2**31 - 1])
def test_aggregate_rejects_the_frame_count_when_beyond_a_requests_frames(count):
    with pytest.raises(ValueError, match=f"frame count must be 0..{MAX_FRAMES_PER_REQUEST}"):
        aggregate(count, np.zeros(0, np.int64), np.zeros(0, np.float32), P)


def test_aggregation_params_reject_unknown_key_when_parsing_config():
    with pytest.raises(ValueError, match="unknown"):
        AggregationParams.from_parameters({"fake_treshold": "0.8"})


def test_aggregation_params_parse_types_when_reading_config():
    params = AggregationParams.from_parameters(
        {**SERVED, "min_confident_frames": "5", "fake_threshold": "0.7"}
    )
    assert params.min_confident_frames == 5 and isinstance(params.min_confident_frames, int)
    assert params.fake_threshold == pytest.approx(0.7)


def test_aggregation_params_name_the_key_when_the_config_lacks_one():
    without = {k: v for k, v in SERVED.items() if k != "real_fraction"}
    with pytest.raises(ValueError, match=r"missing: \['real_fraction'\]"):
        AggregationParams.from_parameters(without)


def test_aggregation_params_are_these_tests_when_read_from_the_served_config():
    assert aggregation_params(REPOSITORY) == P
