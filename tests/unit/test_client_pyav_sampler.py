"""The PyAV fast path of frame sampling: which frames it decodes, and that they are the right ones.

Every video here is H.264 from x264 with B-frames, so presentation order differs from decode
order: the painted frame index (``read_marker``) proves that each returned frame is the frame
its ``frame_indices`` entry names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import fakescope.client.video as video
from fakescope.client.frames import even_frame_indices
from fakescope.client.pyav_sampler import (
    StreamIndex,
    keyframe_picks,
    read_stream_index,
    sample_with_pyav,
)
from fakescope.client.video import sample_frames
from tests.support.media import make_face_video, read_marker

SIZE = (320, 180)
FPS = 10


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pyav-videos")


@pytest.fixture(scope="module")
def dense_keyframes(videos: Path) -> Path:
    """200 frames, a keyframe at least every 10."""
    return make_face_video(
        videos / "gop10.mp4", seconds=20, fps=FPS, size=SIZE, codec="avc1", gop=10
    )


@pytest.fixture(scope="module")
def one_keyframe(videos: Path) -> Path:
    """200 frames, one keyframe: every pick needs sequential decoding."""
    return make_face_video(
        videos / "gop250.mp4", seconds=20, fps=FPS, size=SIZE, codec="avc1", gop=250
    )


def picks(num_frames: int) -> Callable[[int], list[int]]:
    return lambda total: even_frame_indices(total, num_frames)


def test_sample_with_pyav_decodes_one_keyframe_per_segment_when_every_segment_has_one(
    dense_keyframes: Path,
) -> None:
    index = read_stream_index(dense_keyframes)
    assert index is not None and index.total == 200
    sampled = sample_with_pyav(dense_keyframes, picks(8), None)
    assert sampled is not None
    chosen = sampled.frame_indices.tolist()
    assert set(chosen) <= set(index.keyframes)
    for j, position in enumerate(chosen):  # one per segment of 25 frames
        assert j * 25 <= position < (j + 1) * 25
    assert [read_marker(f) for f in sampled.frames] == chosen
    np.testing.assert_allclose(sampled.timestamps, np.asarray(chosen) / FPS, atol=1e-4)
    assert sampled.total_frames == 200
    assert sampled.duration_seconds == pytest.approx(20.0)


def test_sample_with_pyav_returns_the_decoded_frame_nearest_each_target_when_keyframes_are_sparse(
    one_keyframe: Path,
) -> None:
    index = read_stream_index(one_keyframe)
    assert index is not None and index.keyframes == [0]
    ideal = even_frame_indices(200, 16)
    sampled = sample_with_pyav(one_keyframe, picks(16), None)
    assert sampled is not None
    chosen = sampled.frame_indices.tolist()
    assert chosen == sorted(set(chosen))
    assert max(abs(a - b) for a, b in zip(chosen, ideal, strict=True)) <= 2
    assert [read_marker(f) for f in sampled.frames] == chosen
    np.testing.assert_allclose(sampled.timestamps, np.asarray(chosen) / FPS, atol=1e-4)


def test_sample_with_pyav_skips_no_frame_when_the_video_is_short_for_the_sample(
    one_keyframe: Path,
) -> None:
    # 200 frames < 4 x 64 picks: every frame is decoded, the picks are exact
    sampled = sample_with_pyav(one_keyframe, picks(64), None)
    assert sampled is not None
    assert sampled.frame_indices.tolist() == even_frame_indices(200, 64)
    assert [read_marker(f) for f in sampled.frames] == sampled.frame_indices.tolist()


def test_sample_with_pyav_matches_the_opencv_scan_when_picks_are_exact(
    one_keyframe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = sample_frames(one_keyframe, 64)
    monkeypatch.setattr(video, "sample_with_pyav", lambda *args: None)  # the OpenCV scan decides
    scanned = sample_frames(one_keyframe, 64)
    np.testing.assert_array_equal(fast.frame_indices, scanned.frame_indices)
    np.testing.assert_allclose(fast.timestamps, scanned.timestamps, atol=1e-4)
    assert fast.duration_seconds == pytest.approx(scanned.duration_seconds)
    assert (fast.source_size, fast.fps, fast.total_frames) == (
        scanned.source_size,
        scanned.fps,
        scanned.total_frames,
    )
    difference = np.abs(fast.frames.astype(np.int16) - scanned.frames).mean()
    assert difference < 1.0, difference


def test_sample_with_pyav_downscales_like_the_scan_when_max_side_is_set(
    dense_keyframes: Path,
) -> None:
    sampled = sample_with_pyav(dense_keyframes, picks(4), 161)
    assert sampled is not None
    assert sampled.frame_size == (161, 91)
    assert sampled.source_size == SIZE


def test_sample_with_pyav_gives_up_when_file_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 10_000, np.uint8).tobytes())
    assert sample_with_pyav(path, picks(4), None) is None


def test_keyframe_picks_is_none_when_a_segment_has_no_keyframe() -> None:
    from array import array
    from fractions import Fraction

    index = StreamIndex(
        pts=array("q", range(100)),
        keyframes=[0, 30, 60, 90],
        time_base=Fraction(1, 10),
        reported_frames=100,
        rate=Fraction(10),
    )
    assert keyframe_picks(index, even_frame_indices(100, 4)) == [0, 30, 60, 90]
    assert keyframe_picks(index, even_frame_indices(100, 5)) is None  # [40, 60) has none


@pytest.mark.parametrize("gop", [10, 250], ids=["keyframe_path", "decode_path"])
@pytest.mark.parametrize(
    ("name", "codec"),
    [("h264.mkv", "avc1"), ("vp9.webm", "vp9"), ("h264.mov", "avc1"), ("mpeg4.avi", "mpeg4")],
)
def test_sample_with_pyav_returns_the_frames_it_names_when_container_is_not_mp4(
    videos: Path, name: str, codec: str, gop: int
) -> None:
    path = make_face_video(
        videos / f"gop{gop}_{name}", seconds=20, fps=FPS, size=SIZE, codec=codec, gop=gop
    )
    sampled = sample_with_pyav(path, picks(8), None)
    assert sampled is not None  # no fallback: these containers index and seek fine
    assert sampled.total_frames == 200
    assert [read_marker(f) for f in sampled.frames] == sampled.frame_indices.tolist()


@pytest.mark.parametrize("video", ["dense_keyframes", "one_keyframe"])
def test_sample_with_pyav_gives_the_single_thread_frames_when_slices_decode_in_threads(
    request: pytest.FixtureRequest, video: str
) -> None:
    path = request.getfixturevalue(video)
    threaded = sample_with_pyav(path, picks(16), None)  # the client's slice threads
    single = sample_with_pyav(path, picks(16), None, thread_type="NONE")
    assert threaded is not None and single is not None
    assert threaded.frame_indices.tolist() == single.frame_indices.tolist()
    assert np.array_equal(threaded.frames, single.frames)
