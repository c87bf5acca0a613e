"""Occlusion heatmaps through the real Triton: the served classifier, a real face crop.

The crop is the one the served ensemble itself scored: the astronaut's face found by the
served detector, cut with the served framing. The map's claim is then checked by hiding
regions it did not measure on their own: the union of its top quarter of cells against the
union of its bottom quarter, hidden the map's way (blur) and another way (flat grey).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from numpy.typing import NDArray
from skimage import data

from fakescope.client.occlusion import OcclusionMap, blurred, hide_regions, occlusion_map
from fakescope.client.triton import DetectorClient, ServerUnreachableError
from fakescope.pipeline.crops import crop_faces
from tests.support.servers import free_ports

GREY = 128


@pytest.fixture(scope="module")
def client(triton) -> Iterator[DetectorClient]:
    with DetectorClient(triton.address.grpc_url, "grpc") as c:
        yield c


@pytest.fixture(scope="module")
def served_face(client: DetectorClient) -> tuple[NDArray[np.uint8], float]:
    """The astronaut's face as the served classifier saw it, and the score the ensemble gave."""
    image = data.astronaut()
    raw = client.infer(image[None])
    assert raw.face_boxes.shape[0] == 1, raw.face_boxes
    spec = client.classifier_input()
    crop = crop_faces(
        image[None],
        raw.face_boxes,
        size=spec.input_size,
        margin=spec.face_margin,
        shift=spec.face_shift,
    )[0]
    return crop, float(raw.face_scores[0])


@pytest.fixture(scope="module")
def face_map(client: DetectorClient, served_face) -> OcclusionMap:
    return occlusion_map(client, served_face[0])


def _hidden_score(
    client: DetectorClient, crop: NDArray[np.uint8], boxes: list, fill: str, patch: int
) -> float:
    if fill == "blur":
        hidden = hide_regions(crop, boxes, blurred(crop, patch))
    else:
        hidden = crop.copy()
        for x0, y0, x1, y1 in boxes:
            hidden[y0:y1, x0:x1] = GREY
    return float(client.score_faces(hidden[None])[0])


def test_score_faces_matches_ensemble_face_score_when_given_served_crop(
    client: DetectorClient, served_face
):
    crop, ensemble_score = served_face
    assert client.score_faces(crop[None])[0] == pytest.approx(ensemble_score, abs=1e-5)


def test_score_faces_keeps_order_when_more_crops_than_max_batch(
    client: DetectorClient, served_face
):
    crop = served_face[0]
    spec = client.classifier_input()
    variants = np.stack([crop, blurred(crop, 40), crop[::-1].copy()])
    many = variants[np.arange(spec.max_batch_size + 5) % 3]
    scores = client.score_faces(many)
    alone = client.score_faces(variants)
    assert len(set(np.round(alone, 4))) == 3  # three different scores to keep apart
    np.testing.assert_allclose(scores, alone[np.arange(len(many)) % 3], atol=1e-5)


def test_occlusion_map_hiding_its_top_quarter_lowers_score_more_when_real_face(
    client: DetectorClient, served_face, face_map: OcclusionMap
):
    crop = served_face[0]
    ranked = face_map.ranked()
    quarter = len(ranked) // 4
    top = [face_map.box(*cell) for cell in ranked[:quarter]]
    bottom = [face_map.box(*cell) for cell in ranked[-quarter:]]
    for fill in ("blur", "grey"):
        top_score = _hidden_score(client, crop, top, fill, face_map.patch_pixels)
        bottom_score = _hidden_score(client, crop, bottom, fill, face_map.patch_pixels)
        assert face_map.base_score - top_score > face_map.base_score - bottom_score, fill


def test_occlusion_map_cell_drop_reproduced_when_its_patch_hidden_again(
    client: DetectorClient, served_face, face_map: OcclusionMap
):
    crop = served_face[0]
    first, last = face_map.ranked()[0], face_map.ranked()[-1]
    for row, col in (first, last):
        boxes = [face_map.box(row, col)]
        score = _hidden_score(client, crop, boxes, "blur", face_map.patch_pixels)
        assert face_map.base_score - score == pytest.approx(face_map.drops[row, col], abs=1e-5)
    assert face_map.drops[first] > face_map.drops[last]


def test_occlusion_map_states_served_classifier_when_computed(
    client: DetectorClient, served_face, face_map: OcclusionMap
):
    spec = client.classifier_input()
    assert face_map.drops.shape == (8, 8)
    assert face_map.base_score == pytest.approx(served_face[1], abs=1e-5)
    assert (face_map.input_size, face_map.model_version) == (spec.input_size, spec.version)
    assert face_map.patch_pixels == round(0.25 * spec.input_size)
    assert face_map.resized_from is None and face_map.seconds > 0
    assert np.isfinite(face_map.drops).all() and np.abs(face_map.drops).max() > 0.01


def test_occlusion_map_same_over_http_when_crop_resized_first(triton, served_face):
    crop = served_face[0]
    bigger = np.repeat(np.repeat(crop, 2, axis=0), 2, axis=1)  # 2x: resized back by the map
    with DetectorClient(triton.address.http_url, "http") as http:
        made = occlusion_map(http, bigger, grid=4)
    assert made.resized_from == 2 * crop.shape[0]
    assert made.drops.shape == (4, 4)
    assert made.base_score == pytest.approx(served_face[1], abs=0.02)


def test_occlusion_map_raises_unreachable_when_no_server(served_face):
    port = free_ports(1)[0]
    nobody = DetectorClient(f"127.0.0.1:{port}", "grpc", timeout_s=2)
    with nobody, pytest.raises(ServerUnreachableError):
        occlusion_map(nobody, served_face[0])


def test_occlusion_map_raises_value_error_when_crop_not_square_rgb(client, served_face):
    crop = served_face[0]
    for bad in (crop[:, :100], crop[..., 0], crop.astype(np.float32)):
        with pytest.raises(ValueError, match="crop"):
            occlusion_map(client, bad)
    with pytest.raises(ValueError, match="grid"):
        occlusion_map(client, crop, grid=1)
