"""Frames decoded into the client's shared memory, sent without a copy, against a real server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fakescope.benchmarks.media import face_frames, make_face_video, no_face_frames
from fakescope.client.analyze import decode_video
from fakescope.client.shared_memory import MAX_REGIONS, REGION_PREFIX, SHM_DIR
from fakescope.client.triton import DetectorClient, RawResult
from fakescope.serving.embedded import EmbeddedTriton
from tests.support.servers import client_regions

SIZE = (320, 180)


def _registered(triton: EmbeddedTriton) -> set[str]:
    return set(client_regions(triton))


def _frames(source: Iterator[np.ndarray]) -> np.ndarray:
    return np.stack(list(source))


def _client(triton: EmbeddedTriton) -> DetectorClient:
    return DetectorClient(triton.address.grpc_url, "grpc", shared_memory=True)


def _assert_same_faces(got: RawResult, expected: RawResult) -> None:
    assert len(got.face_scores) > 0
    np.testing.assert_allclose(got.face_scores, expected.face_scores, atol=1e-6)
    np.testing.assert_allclose(got.face_boxes, expected.face_boxes, atol=1e-3)


def _made_here() -> set[str]:
    """The regions this process holds in ``/dev/shm``."""
    return {p.name for p in SHM_DIR.glob(f"{REGION_PREFIX}{os.getpid()}_*")}


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("frames_region") / "face.mp4"
    make_face_video(path, seconds=1.0, size=SIZE)
    return path


def test_client_sends_frames_from_the_region_they_were_decoded_into_when_given_its_buffer(
    triton: EmbeddedTriton, video: Path
) -> None:
    before, here = _registered(triton), _made_here()
    with _client(triton) as client:
        decoded = decode_video(video, 4, allocate=client.frames_buffer)
        in_region = client.infer(decoded.sampled.frames)
        registered = _registered(triton) - before
        made = _made_here() - here
    with DetectorClient(triton.address.grpc_url, "grpc", shared_memory=False) as plain:
        in_request = plain.infer(decode_video(video, 4).sampled.frames)
    # the one region the client made, the frames' own, is the one the server read: they were
    # not copied into another (theirs was in use: the frames live on)
    assert len(made) == 1
    assert registered == made
    _assert_same_faces(in_region, in_request)


def test_client_leaves_frames_in_its_buffer_untouched_when_it_sends_other_frames(
    triton: EmbeddedTriton,
) -> None:
    faces = _frames(face_frames(seconds=0.4, size=SIZE))
    empty = _frames(no_face_frames(seconds=0.4, size=SIZE))
    with _client(triton) as client:
        kept = client.frames_buffer(faces.shape)
        kept[...] = faces
        client.infer(empty)  # copied into a region: not the one ``kept`` lies in
        np.testing.assert_array_equal(kept, faces)
        from_buffer = client.infer(kept)
        from_copy = client.infer(faces.copy())
    _assert_same_faces(from_buffer, from_copy)


def test_client_sends_frames_in_the_request_when_every_region_holds_frames_still_in_use(
    triton: EmbeddedTriton,
) -> None:
    faces = _frames(face_frames(seconds=0.4, size=SIZE))
    before = _registered(triton)
    with _client(triton) as client:
        held = [client.frames_buffer(faces.shape) for _ in range(MAX_REGIONS)]
        for buffer in held:
            buffer[...] = faces
        beyond = client.frames_buffer(faces.shape)  # no region left: process memory
        beyond[...] = faces
        for buffer in held:
            buffer[...] = 0  # frames someone still uses: must not be overwritten
        answer = client.infer(beyond)
        registered = _registered(triton) - before
        untouched = all(not buffer.any() for buffer in held)
    assert registered == set()  # nothing had to be registered: the frames went in the request
    assert untouched
    assert len(answer.face_scores) > 0


def test_client_sends_larger_frames_through_a_region_made_again_when_they_outgrow_its_region(
    triton: EmbeddedTriton,
) -> None:
    small = _frames(face_frames(seconds=0.4, size=SIZE))
    large = _frames(face_frames(seconds=0.4, size=(640, 360)))
    before = _registered(triton)
    with _client(triton) as client:
        client.infer(small)
        (first,) = _registered(triton) - before
        through_region = client.infer(large)
        registered = _registered(triton) - before
    with DetectorClient(triton.address.grpc_url, "grpc", shared_memory=False) as plain:
        in_request = plain.infer(large)
    # the small region was unregistered and removed, and one large enough took its place
    assert len(registered) == 1 and first not in registered
    assert _registered(triton) == before
    _assert_same_faces(through_region, in_request)
