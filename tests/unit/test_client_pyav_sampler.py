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

import fakescope.client.pyav_sampler as pyav_sampler
from fakescope.client.containers import inspect_container
from fakescope.client.frames import even_frame_indices
from fakescope.client.opencv_sampler import sample_with_opencv
from fakescope.client.pyav_sampler import (
    StreamIndex,
    keyframe_picks,
    nal_length_size,
    read_stream_index,
    sample_with_pyav,
    starts_with_idr,
)
from tests.support.media import face_frames, make_face_video, read_marker, write_video

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
    one_keyframe: Path,
) -> None:
    # each path called itself: sample_frames would fall back to the scan on its own
    fast = sample_with_pyav(one_keyframe, picks(64), None)
    assert fast is not None
    scanned = sample_with_opencv(one_keyframe, 64, None, inspect_container(one_keyframe))
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


@pytest.mark.parametrize(
    ("name", "gop", "opens"),
    [("gop10.mp4", 10, 1), ("gop250.mp4", 250, 1), ("gop250.ts", 250, 2)],
    ids=["keyframe_path", "decode_path", "decode_path_mpegts"],
)
def test_sample_with_pyav_opens_the_file_twice_only_when_the_container_cannot_seek_back(
    videos: Path, monkeypatch: pytest.MonkeyPatch, name: str, gop: int, opens: int
) -> None:
    import av

    path = make_face_video(
        videos / f"opens_{name}", seconds=20, fps=FPS, size=SIZE, codec="avc1", gop=gop
    )
    reopened = sample_with_pyav(path, picks(16), None, reopen=True)
    opened: list[str] = []
    real_open = av.open

    def counting_open(file: str, *args: object, **kwargs: object) -> object:
        opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    sampled = sample_with_pyav(path, picks(16), None)
    assert sampled is not None and reopened is not None
    assert len(opened) == opens  # MPEG-TS seeks back to a later packet: opened again
    assert np.array_equal(sampled.frame_indices, reopened.frame_indices)
    assert np.array_equal(sampled.frames, reopened.frames)
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


@pytest.mark.parametrize(
    ("name", "codec", "rotate", "gop"),
    [
        ("h264.mp4", "avc1", 0, 10),
        ("h264.mp4", "avc1", 0, 250),
        ("h264_rotated.mp4", "avc1", 90, 250),
        ("h264.mkv", "avc1", 0, 10),
        ("h264.mkv", "avc1", 0, 250),
        ("h264.ts", "avc1", 0, 250),  # its seeks land elsewhere: no keyframe path there
        ("vp9.webm", "vp9", 0, 250),
        ("mpeg4.avi", "mpeg4", 0, 250),
    ],
)
def test_sample_with_pyav_gives_the_frames_of_a_decoding_probe_when_the_open_decodes_nothing(
    videos: Path, name: str, codec: str, rotate: int, gop: int
) -> None:
    path = make_face_video(
        videos / f"probe_gop{gop}_{name}",
        seconds=20,
        fps=FPS,
        size=SIZE,
        codec=codec,
        gop=gop,
        rotate=rotate,
    )
    sampled = sample_with_pyav(path, picks(16), None)  # the client's open: no probe decoding
    probed = sample_with_pyav(path, picks(16), None, probe_decodes=True)
    assert sampled is not None and probed is not None
    assert sampled.frame_indices.tolist() == probed.frame_indices.tolist()
    assert np.array_equal(sampled.frames, probed.frames)
    assert (sampled.fps, sampled.duration_seconds, sampled.rotation, sampled.source_size) == (
        probed.fps,
        probed.duration_seconds,
        probed.rotation,
        probed.source_size,
    )
    turn = {0: 0, 90: 3}[rotate]  # PyAV's rotation is counter-clockwise: undo it to read
    assert [read_marker(np.rot90(f, k=turn)) for f in sampled.frames] == (
        sampled.frame_indices.tolist()
    )


def test_open_probes_the_stream_without_decoding_when_the_video_is_h264(
    one_keyframe: Path,
) -> None:
    # The pixel format is what FFmpeg's probe learns only by decoding: set after a probe that
    # decodes, unknown after the client's open, whose probe decodes nothing (PROBE_OPTIONS).
    with pyav_sampler._open(one_keyframe, "SLICE", probe_decodes=True) as probed:
        assert probed.streams.video[0].codec_context.format is not None
    with pyav_sampler._open(one_keyframe, "SLICE") as opened:
        context = opened.streams.video[0].codec_context
        assert context.format is None
        assert (context.width, context.height) == SIZE  # the headers give the size
        assert context.skip_frame == "DEFAULT"  # the option stayed with the probe


def _h264_nal(nal_type: int, payload: bytes = b"\x88\x84") -> bytes:
    body = bytes([0x60 | nal_type]) + payload  # nal_ref_idc 3, then the type
    return len(body).to_bytes(4, "big") + body


def _hevc_nal(nal_type: int, payload: bytes = b"\xaf\x10") -> bytes:
    body = bytes([nal_type << 1, 0x01]) + payload  # two header bytes, the type in bits 1-6
    return len(body).to_bytes(4, "big") + body


def test_starts_with_idr_reads_the_first_slice_when_other_nal_units_come_first() -> None:
    sei, sps = _h264_nal(6, b"\x05\x10"), _h264_nal(7)
    assert starts_with_idr(sei + sps + _h264_nal(5), "h264", 4)
    assert not starts_with_idr(sei + _h264_nal(1) + _h264_nal(5), "h264", 4)  # non-IDR first
    assert not starts_with_idr(sei, "h264", 4)  # no slice at all
    prefix_sei = _hevc_nal(39)
    assert starts_with_idr(prefix_sei + _hevc_nal(19), "hevc", 4)  # IDR_W_RADL
    assert starts_with_idr(_hevc_nal(20), "hevc", 4)  # IDR_N_LP
    assert not starts_with_idr(prefix_sei + _hevc_nal(21), "hevc", 4)  # CRA: open
    assert not starts_with_idr(_h264_nal(5), "vp9", 4)


def test_starts_with_idr_is_false_when_a_length_runs_past_the_packet() -> None:
    damaged = (200).to_bytes(4, "big") + bytes([0x65, 0x88])
    assert not starts_with_idr(damaged, "h264", 4)


def test_nal_length_size_is_none_when_the_stream_is_not_length_prefixed() -> None:
    avcc = bytes([1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0])
    hvcc = bytes([1] + [0] * 20 + [0x0F, 0, 0])  # lengthSizeMinusOne 3 in byte 21
    assert nal_length_size("h264", avcc) == 4
    assert nal_length_size("hevc", hvcc) == 4
    assert nal_length_size("h264", b"\x00\x00\x00\x01\x67") is None  # Annex B start code
    assert nal_length_size("h264", None) is None
    assert nal_length_size("hevc", avcc) is None  # too short for an HEVC record
    assert nal_length_size("vp9", avcc) is None


def _encoded(path: Path, encoder: str, params: str) -> Path:
    """200 frames of 10 fps from ``encoder`` (libx264 / libx265) with these parameters."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        name = encoder.removeprefix("lib")
        stream.options = {"preset": "veryfast", f"{name}-params": params}
        for frame in face_frames(seconds=20, fps=FPS, size=SIZE):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


GOP30 = "keyint=30:min-keyint=30:scenecut=0"
ENCODINGS = {
    "h264": ("libx264", GOP30, GOP30 + ":open-gop=1"),
    "hevc": ("libx265", GOP30 + ":open-gop=0:log-level=error", GOP30 + ":log-level=error"),
}


@pytest.mark.parametrize("codec", list(ENCODINGS))
def test_read_stream_index_marks_idr_keyframes_only_when_the_group_of_pictures_is_closed(
    videos: Path, codec: str
) -> None:
    encoder, closed_params, open_params = ENCODINGS[codec]
    closed = read_stream_index(_encoded(videos / f"closed_{codec}.mp4", encoder, closed_params))
    opened = read_stream_index(_encoded(videos / f"open_{codec}.mp4", encoder, open_params))
    assert closed is not None and opened is not None
    assert closed.keyframes == opened.keyframes == [0, 30, 60, 90, 120, 150, 180]
    assert closed.idr_keyframes == closed.keyframes
    assert opened.idr_keyframes == [0]  # the later keyframes are open ones, not IDR


@pytest.mark.parametrize("codec", list(ENCODINGS))
def test_sample_with_pyav_jumps_to_idr_keyframes_when_the_stream_is_hevc_or_h264(
    videos: Path, codec: str, caplog: pytest.LogCaptureFixture
) -> None:
    encoder, closed_params, _ = ENCODINGS[codec]
    path = videos / f"closed_{codec}.mp4"
    if not path.exists():
        _encoded(path, encoder, closed_params)
    _assert_jumps_keep_the_frames(path, caplog)


def _assert_jumps_keep_the_frames(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The pass with jumps feeds the decoder fewer packets and gives the very same frames."""
    fed = {}
    sampled = {}
    for jump in (True, False):
        caplog.clear()
        with caplog.at_level("DEBUG", logger="fakescope.client.pyav_sampler"):
            sampled[jump] = sample_with_pyav(path, picks(16), None, jump_to_idr=jump)
        fed[jump] = next(r.args[1] for r in caplog.records if "fed the decoder" in r.msg)
    jumped, whole = sampled[True], sampled[False]
    assert jumped is not None and whole is not None
    assert jumped.frame_indices.tolist() == whole.frame_indices.tolist()
    assert np.array_equal(jumped.frames, whole.frames)
    assert [read_marker(f) for f in jumped.frames] == jumped.frame_indices.tolist()
    assert fed[True] < fed[False]


@pytest.mark.parametrize("b_frames", [True, False], ids=["b_frames", "phone_like"])
def test_sample_with_pyav_gives_the_frames_of_the_whole_pass_when_it_jumps_to_idr_keyframes(
    videos: Path, b_frames: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # a keyframe every 3 s, a pick every 1.25 s: not every segment holds a keyframe, so the
    # sample takes the one pass, which can jump over the end of each group of pictures
    path = write_video(
        videos / f"gop30_b{int(b_frames)}.mp4",
        face_frames(seconds=20, fps=FPS, size=SIZE),
        fps=FPS,
        codec="libx264",
        gop=30,
        b_frames=b_frames,
    )
    _assert_jumps_keep_the_frames(path, caplog)
