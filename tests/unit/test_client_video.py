"""Frame sampling on real video files (no server)."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakescope.client.containers import inspect_container
from fakescope.client.frames import (
    SampledFrames,
    VideoReadError,
    even_frame_indices,
    frames_array,
    new_frames,
)
from fakescope.client.opencv_sampler import sample_with_opencv
from fakescope.client.pyav_sampler import sample_with_pyav
from fakescope.client.video import sample_frames
from tests.support.media import (
    face_frames,
    make_face_video,
    make_no_face_video,
    read_marker,
    truncate_copy,
    write_video,
)
from tests.support.unprivileged import as_unprivileged, reachable_dir

SMALL = (320, 180)
FPS = 10
N_FRAMES = 20  # 2 s at 10 fps


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def mp4v_video(videos: Path) -> Path:
    return make_face_video(videos / "face_mp4v.mp4", size=SMALL, fps=FPS, codec="mp4v")


@pytest.fixture(scope="module")
def h264_video(videos: Path) -> Path:
    return make_face_video(videos / "face_h264.mp4", size=SMALL, fps=FPS, codec="avc1")


def markers(sampled: SampledFrames) -> list[int]:
    return [read_marker(f) for f in sampled.frames]


def assert_evenly_spread(indices: list[int], total: int, k: int) -> None:
    assert indices == sorted(set(indices))
    assert indices[0] >= 0 and indices[-1] < total
    assert len(indices) == min(k, total)
    if k < total:
        if k > 1:
            gaps = np.diff(indices)
            assert gaps.max() - gaps.min() <= 1, indices
        # the picks are centred: equal margins (± 1 frame) at both ends
        assert abs(indices[0] - (total - 1 - indices[-1])) <= 1, indices


# --- even_frame_indices ------------------------------------------------------------------------


@given(total=st.integers(1, 5000), k=st.integers(1, 64))
def test_even_frame_indices_are_increasing_centred_and_even_when_any_size(
    total: int, k: int
) -> None:
    assert_evenly_spread(even_frame_indices(total, k), total, k)


def test_even_frame_indices_picks_the_middle_when_one_frame_is_asked() -> None:
    assert even_frame_indices(21, 1) == [10]


def test_even_frame_indices_is_empty_when_nothing_to_pick() -> None:
    assert even_frame_indices(0, 8) == []
    assert even_frame_indices(8, 0) == []


# --- sampling: count, evenness, content, timestamps --------------------------------------------


@pytest.mark.parametrize("fixture", ["mp4v_video", "h264_video"])
def test_sample_frames_returns_the_even_picks_when_video_is_longer_than_sample(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    sampled = sample_frames(request.getfixturevalue(fixture), 8)
    expected = even_frame_indices(N_FRAMES, 8)
    assert sampled.frames.shape == (8, SMALL[1], SMALL[0], 3)
    assert sampled.frames.dtype == np.uint8
    assert sampled.frame_indices.tolist() == expected
    assert markers(sampled) == expected  # the pixels really are those frames
    assert sampled.total_frames == N_FRAMES
    assert sampled.source_size == SMALL


def test_sample_frames_returns_rgb_when_decoding(mp4v_video: Path) -> None:
    sampled = sample_frames(mp4v_video, 1)
    # the background is RGB (4x, 70, 110): blue dominates red in RGB order
    r, g, b = sampled.frames[0, -5, 2].astype(int)
    assert b > g > r


def test_sample_frames_timestamps_are_frame_times_when_rate_is_constant(h264_video: Path) -> None:
    sampled = sample_frames(h264_video, 8)
    assert sampled.timestamps.dtype == np.float32
    np.testing.assert_allclose(sampled.timestamps, sampled.frame_indices / FPS, atol=1e-3)
    assert np.all(np.diff(sampled.timestamps) > 0)
    assert sampled.fps == pytest.approx(FPS)
    assert sampled.duration_seconds == pytest.approx(N_FRAMES / FPS, abs=1e-3)


def test_sample_frames_returns_every_frame_once_when_fewer_than_requested(
    mp4v_video: Path,
) -> None:
    sampled = sample_frames(mp4v_video, 64)
    assert markers(sampled) == list(range(N_FRAMES))
    assert np.all(np.diff(sampled.timestamps) > 0)


def test_sample_frames_handles_ntsc_rate_when_fps_is_fractional(videos: Path) -> None:
    path = make_face_video(
        videos / "ntsc.mp4", size=SMALL, fps=30000 / 1001, seconds=1.0, codec="avc1"
    )
    sampled = sample_frames(path, 5)
    assert sampled.fps == pytest.approx(29.97, abs=0.01)
    np.testing.assert_allclose(sampled.timestamps, sampled.frame_indices * 1001 / 30000, atol=2e-3)


def test_sample_frames_reads_no_face_video_when_source_is_coffee(videos: Path) -> None:
    path = make_no_face_video(videos / "coffee.mp4", size=SMALL, seconds=1.0)
    sampled = sample_frames(path, 4)
    assert markers(sampled) == even_frame_indices(10, 4)


# --- wrong or missing frame counts (real files) --------------------------------------------------


def test_sample_frames_spreads_over_decoded_frames_when_container_count_is_too_high(
    videos: Path,
) -> None:
    # faststart: the index (20 frames) is at the front, the cut removes the later frames
    full = make_face_video(
        videos / "faststart.mp4", size=SMALL, codec="avc1", faststart=True, gop=5
    )
    cut = truncate_copy(full, videos / "faststart_cut.mp4", 0.7)
    sampled = sample_frames(cut, 4)
    assert sampled.reported_frames == N_FRAMES
    assert 4 < sampled.total_frames < N_FRAMES
    expected = even_frame_indices(sampled.total_frames, 4)
    assert markers(sampled) == expected
    assert sampled.duration_seconds == pytest.approx(sampled.total_frames / FPS, abs=1e-3)


def _remux(source: Path, target: Path, *, shift_frames: int = 0, drop: int = 0) -> Path:
    """Copy ``source``'s video packets to ``target``: the first ``drop`` left out (a cut
    mid-way through a group of pictures), timestamps moved ``shift_frames`` back (an edit list
    whose pre-roll is not shown, as a trimmed MP4 has)."""
    import av

    with av.open(str(source)) as given, av.open(str(target), "w") as written:
        stream = given.streams.video[0]
        out = written.add_stream_from_template(stream)
        shift = round(shift_frames / FPS / stream.time_base)
        for packet in [p for p in given.demux(stream) if p.size][drop:]:
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = out
            written.mux(packet)
    return target


@pytest.mark.parametrize(
    ("name", "shift_frames", "drop", "gop", "shown"),
    [("trimmed.mp4", 10, 0, 300, 30), ("cut_mid_gop.ts", 0, 5, 10, 30)],
)
def test_sample_frames_counts_only_the_frames_shown_when_the_stream_starts_with_hidden_ones(
    videos: Path, name: str, shift_frames: int, drop: int, gop: int, shown: int
) -> None:
    source = make_face_video(
        videos / f"{name}.src.mp4", seconds=4.0, size=SMALL, codec="avc1", gop=gop
    )
    sampled = sample_frames(_remux(source, videos / name, shift_frames=shift_frames, drop=drop), 4)
    first_shown = 40 - shown  # frames 0-9: the pre-roll, or the packets before the keyframe
    assert sampled.total_frames == shown
    assert sampled.duration_seconds == pytest.approx(shown / FPS, abs=1e-3)
    ideal = [first_shown + i for i in even_frame_indices(shown, 4)]
    # each the decoded frame nearest its pick (non-reference frames are not decoded)
    assert np.abs(np.subtract(markers(sampled), ideal)).max() <= 1
    expected_seconds = (np.asarray(markers(sampled)) - first_shown) / FPS
    np.testing.assert_allclose(sampled.timestamps, expected_seconds, atol=1e-3)


def test_sample_frames_spreads_over_decoded_frames_when_container_count_is_too_low(
    videos: Path,
) -> None:
    path = make_face_video(videos / "count_low.avi", size=SMALL, codec="MJPG")
    data = bytearray(path.read_bytes())
    for chunk, offset in ((b"avih", 16), (b"strh", 32)):  # dwTotalFrames / dwLength := 10
        at = data.find(chunk)
        struct.pack_into("<I", data, at + 8 + offset, 10)
    patched = videos / "count_low_patched.avi"
    patched.write_bytes(bytes(data))
    assert cv2.VideoCapture(str(patched)).get(cv2.CAP_PROP_FRAME_COUNT) == 10

    sampled = sample_frames(patched, 5)
    assert sampled.reported_frames == 10
    assert sampled.total_frames == N_FRAMES
    assert markers(sampled) == even_frame_indices(N_FRAMES, 5)
    assert sampled.duration_seconds == pytest.approx(2.0, abs=1e-3)


def test_sample_frames_uses_index_timing_when_stream_has_no_count_or_timestamps(
    videos: Path,
) -> None:
    # a raw H.264 elementary stream: no container, garbage count, every POS_MSEC is 0
    path = write_video(
        videos / "raw.h264", face_frames(size=SMALL), fps=FPS, codec="h264", container_format="h264"
    )
    sampled = sample_frames(path, 4)
    assert sampled.total_frames == N_FRAMES
    assert markers(sampled) == even_frame_indices(N_FRAMES, 4)
    np.testing.assert_allclose(sampled.timestamps, sampled.frame_indices / sampled.fps, rtol=1e-6)
    assert sampled.duration_seconds == pytest.approx(N_FRAMES / sampled.fps)


def test_sample_frames_uses_index_timing_when_container_timestamps_go_backwards(
    videos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # AVI + H.264 with B-frames: OpenCV's POS_MSEC is shifted and wraps to 0 at the end
    path = write_video(videos / "bframes.avi", face_frames(size=SMALL), fps=FPS, codec="avc1")
    sampled = sample_frames(path, 4)
    assert markers(sampled) == even_frame_indices(N_FRAMES, 4)
    np.testing.assert_allclose(sampled.timestamps, sampled.frame_indices / FPS, atol=1e-4)
    assert "timestamps are unusable" in caplog.text


# --- rotation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_sample_frames_is_upright_when_video_has_rotation_metadata(
    videos: Path, degrees: int
) -> None:
    path = make_face_video(
        videos / f"rot{degrees}.mp4", size=SMALL, codec="avc1", rotate=degrees, seconds=0.5
    )
    reference = next(face_frames(size=SMALL, seconds=0.5))  # frame 0, as stored
    sampled = sample_frames(path, 5)
    upright = np.rot90(reference, k=degrees // 90)  # display rotation is counter-clockwise
    assert sampled.frames.shape[1:] == upright.shape
    assert sampled.source_size == (upright.shape[1], upright.shape[0])
    assert sampled.rotation in (degrees, 360 - degrees)  # OpenCV reports it clockwise
    first = sampled.frames[0].astype(np.float32)
    errors = {
        k * 90: float(np.abs(first - np.rot90(reference, k=k)).mean())
        for k in range(4)
        if np.rot90(reference, k=k).shape == first.shape
    }
    assert min(errors, key=errors.__getitem__) == degrees, errors
    assert errors[degrees] < 8, errors


def test_sample_frames_downscales_the_long_side_when_rotated_and_max_side_is_set(
    videos: Path,
) -> None:
    path = make_face_video(
        videos / "rot90_big.mp4", size=(640, 360), codec="avc1", rotate=90, seconds=0.5
    )
    sampled = sample_frames(path, 3, max_side=320)
    assert sampled.source_size == (360, 640)
    assert sampled.frame_size == (180, 320)


# --- max_side ------------------------------------------------------------------------------------


def test_sample_frames_downscales_to_max_side_when_frames_are_larger(videos: Path) -> None:
    path = make_face_video(videos / "face_640.mp4", size=(640, 360), seconds=1.0)
    sampled = sample_frames(path, 4, max_side=320)
    assert sampled.frames.shape == (4, 180, 320, 3)
    assert sampled.source_size == (640, 360)
    assert sampled.scale == (2.0, 2.0)
    assert markers(sampled) == even_frame_indices(10, 4)


def test_sample_frames_keeps_the_size_when_max_side_is_not_exceeded(mp4v_video: Path) -> None:
    sampled = sample_frames(mp4v_video, 2, max_side=1280)
    assert sampled.frame_size == SMALL
    assert sampled.scale == (1.0, 1.0)


def test_sample_frames_keeps_aspect_when_max_side_is_odd(mp4v_video: Path) -> None:
    sampled = sample_frames(mp4v_video, 2, max_side=101)
    assert sampled.frame_size == (101, 57)


# --- errors --------------------------------------------------------------------------------------


def expect_read_error(path: Path | str, reason: str) -> VideoReadError:
    with pytest.raises(VideoReadError) as info:
        sample_frames(path, 4)
    err = info.value
    assert err.reason == reason
    assert "\n" not in str(err)
    assert str(err).startswith(f"{path}: ")
    return err


def test_sample_frames_raises_missing_when_path_does_not_exist(tmp_path: Path) -> None:
    err = expect_read_error(tmp_path / "nope.mp4", "missing")
    assert err.detail == "no such file"


def test_sample_frames_raises_directory_when_path_is_a_directory(tmp_path: Path) -> None:
    expect_read_error(tmp_path, "directory")


def test_sample_frames_raises_empty_when_file_has_no_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    expect_read_error(path, "empty")


def test_sample_frames_raises_not_video_when_text_file_is_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    expect_read_error(path, "not_video")


def test_sample_frames_raises_not_video_when_mp4_is_cut_before_its_index(
    tmp_path: Path, mp4v_video: Path
) -> None:
    # cv2.VideoWriter puts the index (moov) at the end: half a file has no index at all
    cut = truncate_copy(mp4v_video, tmp_path / "half.mp4", 0.5)
    expect_read_error(cut, "not_video")


def test_sample_frames_raises_no_frames_when_truncation_leaves_nothing_decodable(
    tmp_path: Path, videos: Path
) -> None:
    full = make_face_video(
        videos / "faststart_nothing.mp4", size=SMALL, codec="avc1", faststart=True
    )
    data = full.read_bytes()
    mdat = data.find(b"mdat")
    assert mdat > data.find(b"moov") > 0  # index first, then the media data
    cut = tmp_path / "nothing.mp4"
    cut.write_bytes(data[: mdat + 200])  # index intact, first keyframe cut off
    expect_read_error(cut, "no_frames")


def test_sample_frames_raises_permission_when_file_is_unreadable(mp4v_video: Path) -> None:
    """A real EACCES: as root (CI) the read runs in a child that has dropped to ``nobody``."""
    with reachable_dir() as folder:
        path = folder / "secret.mp4"
        path.write_bytes(mp4v_video.read_bytes())
        path.chmod(0)

        def read_as_caller() -> tuple[str, str]:
            # the folder is reachable: a denial can only come from the file's own mode
            assert path.stat().st_mode & 0o777 == 0
            err = expect_read_error(path, "permission")
            return err.reason, err.detail

        reason, detail = as_unprivileged(read_as_caller)
    assert (reason, detail) == ("permission", "permission denied")


def test_sample_frames_raises_permission_when_opening_is_denied(
    tmp_path: Path, mp4v_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # EACCES from open() alone (stat succeeded), whoever runs the test.
    def deny(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", deny)
    expect_read_error(mp4v_video, "permission")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_sample_frames_raises_not_file_when_path_is_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    expect_read_error(fifo, "not_file")


@pytest.mark.parametrize("num_frames", [0, -1])
def test_sample_frames_rejects_the_count_when_below_one(mp4v_video: Path, num_frames: int) -> None:
    with pytest.raises(ValueError, match="num_frames"):
        sample_frames(mp4v_video, num_frames)


def test_sample_frames_rejects_max_side_when_below_one(mp4v_video: Path) -> None:
    with pytest.raises(ValueError, match="max_side"):
        sample_frames(mp4v_video, 4, max_side=0)


@pytest.mark.parametrize("sampler", ["pyav", "opencv"])
def test_sample_frames_decodes_into_the_callers_array_when_given_an_allocator(
    h264_video: Path, sampler: str
) -> None:
    given: list[np.ndarray] = []

    def allocate(shape: tuple[int, int, int, int]) -> np.ndarray:
        given.append(np.full(shape, 255, np.uint8))
        return given[-1]

    if sampler == "pyav":
        picks = lambda total: even_frame_indices(total, 4)  # noqa: E731
        sampled = sample_with_pyav(h264_video, picks, None, allocate=allocate)
        plain = sample_with_pyav(h264_video, picks, None)
        assert sampled is not None and plain is not None
    else:
        facts = inspect_container(h264_video)
        sampled = sample_with_opencv(h264_video, 4, None, facts, allocate)
        plain = sample_with_opencv(h264_video, 4, None, facts)
    assert len(given) == 1
    assert np.shares_memory(sampled.frames, given[0])
    np.testing.assert_array_equal(sampled.frames, plain.frames)


@pytest.mark.parametrize("sampler", ["pyav", "opencv"])
def test_sample_frames_reads_a_relative_name_with_a_colon_when_ffmpeg_could_take_it_for_a_url(
    h264_video: Path, sampler: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(h264_video, tmp_path / "12:30.mp4")  # FFmpeg alone reads protocol "12"
    monkeypatch.chdir(tmp_path)
    if sampler == "pyav":
        picks = lambda total: even_frame_indices(total, 4)  # noqa: E731
        sampled = sample_with_pyav("12:30.mp4", picks, None)
        plain = sample_with_pyav(h264_video, picks, None)
        assert sampled is not None and plain is not None
    else:
        sampled = sample_with_opencv("12:30.mp4", 4, None, inspect_container("12:30.mp4"))
        plain = sample_with_opencv(h264_video, 4, None, inspect_container(h264_video))
    np.testing.assert_array_equal(sampled.frames, plain.frames)


def test_frames_array_refuses_the_array_when_the_allocator_gives_another_shape() -> None:
    with pytest.raises(ValueError, match="not a writable C-contiguous uint8 array"):
        frames_array(lambda shape: new_frames((1, *shape[1:])), (2, 4, 4, 3))
    with pytest.raises(ValueError, match="not a writable C-contiguous uint8 array"):
        frames_array(lambda shape: np.zeros(shape, np.float32), (2, 4, 4, 3))  # type: ignore[arg-type, return-value]
