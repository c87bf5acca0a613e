"""The served crops are framed like the classifier's training crops, and the served threshold
reaches the client.

Geometry: the served ``face_detector`` cuts faces out of frames of real DFDC videos
(``../shared/data/dfdc_sample``); our MTCNN, run again on those crops, must find the face where
it found it in the training data's crops (the ``crop_geometry`` the model records, measured by
``fakescope train``). Only the sample videos the served framing was *not* calibrated on
(``fakescope export --framing-videos``, recorded in the model) are used. Tolerance: 0.04 on the
median margin and on each median centre shift (fractions of the box side) — the data's own
spread (inter-quartile half-width) is about 0.04.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from fakescope import contract
from fakescope.client.analyze import analyze
from fakescope.client.video import sample_frames
from fakescope.export.crop_geometry import CropDetector, measure_geometry
from fakescope.paths import PROJECT_ROOT
from fakescope.pipeline.metadata import read_classifier_spec, read_provenance
from fakescope.serving.model_config import served_version_dir
from fakescope.training.dataset import file_sha256
from tests.support.media import make_face_video
from tests.support.servers import REPOSITORY

#: Labelled DFDC videos beside the checkout (CI has them; a user's machine does not: skipped).
SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "dfdc_sample"
TOLERANCE = 0.04
SERVED = served_version_dir(REPOSITORY / contract.CLASSIFIER_MODEL) / "model.onnx"


def _infer(client, model: str, tensors: dict[str, np.ndarray]):
    """One gRPC request to ``model`` with these named tensors (dtype from the array)."""
    inputs = []
    for name, array in tensors.items():
        dtype = "UINT8" if array.dtype == np.uint8 else "FP32"
        inputs.append(grpcclient.InferInput(name, list(array.shape), dtype))
        inputs[-1].set_data_from_numpy(array)
    return client.infer(model, inputs)


def _served_crops(triton, frames: np.ndarray) -> np.ndarray:
    """The crops the served ``face_detector`` cuts at the boxes it found."""
    client = grpcclient.InferenceServerClient(triton.address.grpc_url)
    found = _infer(client, contract.FACE_DETECTOR_MODEL, {contract.FRAMES: frames})
    crops = found.as_numpy(contract.FACE_CROPS)
    assert len(crops) == len(found.as_numpy(contract.FACE_BOXES))
    return crops


@pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"{SAMPLE} is not here (shared data)")
def test_face_detector_frames_faces_like_training_data_when_real_dfdc_videos(triton):
    provenance = read_provenance(SERVED)
    if "crop_geometry" not in provenance:
        pytest.fail("the served classifier records no crop geometry (trained on face crops?)")
    data = json.loads(provenance["crop_geometry"])
    calibrated_on = {v["sha256"] for v in json.loads(provenance["framing_calibration"])["videos"]}
    held_out = [v for v in sorted(SAMPLE.glob("*.mp4")) if file_sha256(v) not in calibrated_on]
    assert len(held_out) >= 2, "the served framing was calibrated on the test videos"
    crops = np.concatenate(
        [_served_crops(triton, sample_frames(video, 8, 1280).frames) for video in held_out]
    )
    assert len(crops) >= 16
    side = crops.shape[1]
    found = CropDetector(REPOSITORY).detect(crops).scaled(1.0 / side)
    served = measure_geometry(found, 1.0)
    assert served.faces_found >= 0.9 * len(crops)
    assert served.face_margin == pytest.approx(data["face_margin"], abs=TOLERANCE)
    assert served.face_shift[0] == pytest.approx(data["face_shift"][0], abs=TOLERANCE)
    assert served.face_shift[1] == pytest.approx(data["face_shift"][1], abs=TOLERANCE)


def test_analyze_labels_at_served_threshold_when_classifier_states_one(triton, tmp_path):
    spec, _ = read_classifier_spec(SERVED)
    assert spec.threshold != contract.UNSTATED_THRESHOLD, "the served model states no threshold"
    video = make_face_video(tmp_path / "face.mp4", size=(320, 180), seconds=1.0)
    verdict = analyze(video, url=triton.address.grpc_url, num_frames=4)
    assert verdict.threshold == spec.threshold
    assert verdict.label == ("FAKE" if verdict.fake_probability >= spec.threshold else "REAL")
    # the caller's threshold decides the label: at 0 every probability is FAKE, at 1 none
    # below 1 is
    lowest = analyze(video, url=triton.address.grpc_url, num_frames=4, threshold=0.0)
    assert (lowest.threshold, lowest.label) == (0.0, "FAKE")
    highest = analyze(video, url=triton.address.grpc_url, num_frames=4, threshold=1.0)
    assert highest.fake_probability is not None and highest.fake_probability < 1.0
    assert (highest.threshold, highest.label) == (1.0, "REAL")
