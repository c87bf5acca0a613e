"""Evaluation scores a video exactly as the served ``deepfake_detector`` ensemble does."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="needs tritonclient")

import tritonclient.grpc as grpcclient

from fakescope import contract
from fakescope.client.analyze import DEFAULT_MAX_SIDE
from fakescope.client.video import sample_frames
from fakescope.serving.model_config import aggregation_params
from fakescope.training.evaluate import OnnxClassifier, resolve_model, score_video
from fakescope.training.self_blend import self_blend
from fakescope.training.synthetic_data import (
    SynthConfig,
    face_swap,
    load_identities,
    render_video,
)
from fakescope.training.video_faces import FaceExtractor
from tests.support.servers import REPOSITORY

FRAMES = 8


def _served(triton, frames: np.ndarray) -> dict[str, np.ndarray]:
    client = grpcclient.InferenceServerClient(triton.address.grpc_url)
    inputs = [grpcclient.InferInput(contract.FRAMES, list(frames.shape), "UINT8")]
    inputs[0].set_data_from_numpy(frames)
    result = client.infer(contract.ENSEMBLE_MODEL, inputs)
    names = [
        contract.FAKE_PROBABILITY,
        contract.FRAME_SCORES,
        contract.FACE_BOXES,
        contract.FACE_SCORES,
    ]
    return {name: result.as_numpy(name) for name in names}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A real video, its self-blended fake and a face swap (Grace Hopper, astronaut)."""
    root = tmp_path_factory.mktemp("served")
    people = load_identities(REPOSITORY, "all", max_identities=2)
    config = SynthConfig(seconds=1.0, width=320, height=240)
    rng = np.random.default_rng(0)
    paths = []
    for name, image in (
        ("real", people[1].image),
        ("sbi", self_blend(people[1].image, people[1].landmarks, rng)[0]),
        ("swap", face_swap(people[1], people[0], rng)),
    ):
        path = root / f"{name}.mp4"
        render_video(path, image, 7, config)
        paths.append(path)
    return paths


def test_evaluate_score_equals_served_ensemble_when_same_video(triton, videos, tmp_path):
    classifier = OnnxClassifier(resolve_model(REPOSITORY, tmp_path))
    extractor = FaceExtractor(REPOSITORY, classifier.spec, num_frames=FRAMES)
    params = aggregation_params(REPOSITORY)
    probabilities = []
    for video in videos:
        faces = extractor.extract(video)
        probability, frame_scores, face_scores = score_video(faces, classifier, params)
        sampled = sample_frames(video, FRAMES, DEFAULT_MAX_SIDE)
        served = _served(triton, sampled.frames)
        assert len(faces.boxes) >= FRAMES - 1, "the synthetic face must be found"
        np.testing.assert_allclose(served[contract.FACE_BOXES], faces.boxes, atol=1e-3)
        np.testing.assert_allclose(served[contract.FACE_SCORES], face_scores, atol=1e-5)
        np.testing.assert_allclose(served[contract.FRAME_SCORES], frame_scores, atol=1e-5)
        assert float(served[contract.FAKE_PROBABILITY][0]) == pytest.approx(probability, abs=1e-5)
        probabilities.append(probability)
    assert np.ptp(probabilities) > 0, "equal scores for all videos would prove nothing"
