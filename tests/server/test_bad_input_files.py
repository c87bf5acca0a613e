"""Bad, odd and huge input files through the real ``fakescope analyze`` path, real Triton.

Every case runs :func:`fakescope.client.cli.main` in-process against the session's embedded
tritonserver (gRPC, ``--json``) and ends in one of two documented outcomes:

* a verdict: exit 0, one JSON object on stdout (``status`` ``ok`` or ``no_face``);
* an error: the documented exit code and exactly ONE line on stderr naming the problem.

After every case the ensemble must still be ready. The media are made here (PyAV/FFmpeg,
OpenCV), small unless the case is about size. Two cases need more than the in-process run:
the 1 h video's memory is measured in a subprocess (peak RSS), and one subprocess run checks
that a real process prints one stderr line per bad file and nothing else (FFmpeg's own
complaints silenced, no log lines).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from skimage import data as skdata

from fakescope import contract
from fakescope.client import cli
from fakescope.paths import PROJECT_ROOT
from fakescope.serving.embedded import EmbeddedTriton
from tests.support.analyze_cli import CliRun, assert_server_ready, run_analyze
from tests.support.media import draw_marker, face_frames, make_face_video, truncate_copy
from tests.support.unprivileged import as_unprivileged, reachable_dir

SMALL = (320, 180)
FPS = 10
UHD_8K = (7680, 4320)
#: The 8K face: where the astronaut's portrait is pasted (x, y, side) in 8K pixels.
UHD_FACE = (3000, 1200, 1800)
#: The long video: one frame a second for an hour, one distinct picture a minute.
HOUR_SECONDS = 3600
HOUR_SIZE = (640, 360)
#: Variable frame rate: presentation times (in 1/20 s) of six frames, gaps of 1 to 22 ticks.
VFR_PTS = (0, 1, 2, 7, 8, 30)
VFR_TIME_BASE = Fraction(1, 20)


# --- running the CLI --------------------------------------------------------------------------


def assert_one_error_line(run: CliRun, video: Path, code: int, message: str) -> None:
    assert run.code == code, run
    assert run.out == ""
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith(f"fakescope: error: {video}: "), lines[0]
    assert message in lines[0], lines[0]


# --- writing media ------------------------------------------------------------------------------


def pyav_write(
    path: Path,
    frames: Sequence[np.ndarray],
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    fps: int = FPS,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    options: dict[str, str] | None = None,
    rotate: int = 0,
) -> Path:
    """Encode RGB frames with any FFmpeg encoder/pixel format; container from the suffix."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        height, width = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {"preset": "ultrafast"} if codec == "libx264" else {}
        stream.options.update(options or {})
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if rotate:
            stream.set_display_rotation(rotate)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def small_faces(n: int = 8, size: tuple[int, int] = SMALL) -> list[np.ndarray]:
    return list(face_frames(seconds=n / FPS, fps=FPS, size=size))


def encoder_supports(codec: str, pix_fmt: str) -> bool:
    try:
        formats = av.codec.Codec(codec, "w").video_formats or []
    except Exception:  # unknown encoder in this FFmpeg build
        return False
    return pix_fmt in {f.name for f in formats}


def write_audio_only(path: Path, *, codec: str, cover: bool) -> Path:
    """Half a second of silence; ``cover``: plus a JPEG cover picture (attached_pic)."""
    with av.open(str(path), "w") as container:
        audio = container.add_stream(codec, rate=44100)
        audio.layout = "mono"
        if cover:
            picture = container.add_stream("mjpeg")
            picture.width, picture.height, picture.pix_fmt = 512, 512, "yuvj420p"
            picture.disposition = av.stream.Disposition.attached_pic
            container.start_encoding()
            ok, jpeg = cv2.imencode(".jpg", skdata.astronaut()[:, :, ::-1])
            assert ok
            packet = av.Packet(jpeg.tobytes())
            packet.stream, packet.pts, packet.dts = picture, 0, 0
            packet.time_base = picture.time_base
            container.mux(packet)
        samples = 1152
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, samples), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 44100, i * samples
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    return path


def corrupt_moov(src: Path, dst: Path) -> Path:
    """Overwrite the ``moov`` box's payload (after its header) with seeded random bytes."""
    data = bytearray(src.read_bytes())
    moov = data.find(b"moov")
    assert moov > 0
    rng = np.random.default_rng(5)
    data[moov + 4 : moov + 4 + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def hour_video(path: Path, *, fps: int = 1, size: tuple[int, int] = HOUR_SIZE) -> Path:
    """A one-hour MJPEG video, made cheaply: 60 encoded pictures, each muxed for a minute.

    Frame ``i`` shows marker ``i // (60 * fps)`` (its minute). Every packet is a key frame
    (MJPEG), so repeating packets is a valid stream: the decoder really decodes
    ``3600 * fps`` frames.
    """
    width, height = size
    per_minute = 60 * fps
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        stream.time_base = Fraction(1, fps)
        pictures: list[bytes] = []
        for minute in range(HOUR_SECONDS // 60):
            rgb = np.full((height, width, 3), 90, np.uint8)
            draw_marker(rgb, minute)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = minute
            pictures.extend(bytes(p) for p in stream.encode(frame))
        pictures.extend(bytes(p) for p in stream.encode())
        assert len(pictures) == HOUR_SECONDS // 60
        index = 0
        for picture in pictures:
            for _ in range(per_minute):
                packet = av.Packet(picture)
                packet.stream, packet.time_base = stream, Fraction(1, fps)
                packet.pts = packet.dts = index
                packet.duration, packet.is_keyframe = 1, True
                container.mux(packet)
                index += 1
    return path


def uhd_face_video(path: Path) -> Path:
    """Two 8K frames with the astronaut's portrait at :data:`UHD_FACE`."""
    width, height = UHD_8K
    x, y, side = UHD_FACE
    face = cv2.resize(skdata.astronaut(), (side, side), interpolation=cv2.INTER_LINEAR)
    frames = []
    for i in range(2):
        rgb = np.full((height, width, 3), (40 + i, 70, 110), np.uint8)
        rgb[y : y + side, x : x + side] = face
        frames.append(rgb)
    return pyav_write(path, frames, fps=2)


def portrait_phone_video(path: Path) -> Path:
    """Upright portrait frames stored rotated, with a 90° display matrix (as phones do)."""
    upright = list(face_frames(seconds=0.4, fps=FPS, size=(180, 320)))
    stored = [np.ascontiguousarray(np.rot90(f, -1)) for f in upright]
    return pyav_write(path, stored, rotate=90)


# --- the media, built once per module and on first use -----------------------------------------

Builder = Callable[[Path], Path]


class Media:
    """Builds each named medium once, on first use, in one module temp directory."""

    def __init__(self, root: Path):
        self.root = root
        self._built: dict[str, Path] = {}

    def get(self, name: str, build: Builder) -> Path:
        if name not in self._built:
            self._built[name] = build(self.root / name)
        return self._built[name]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return Media(tmp_path_factory.mktemp("bad-input-files"))


def _face_h264(path: Path) -> Path:
    return make_face_video(path, seconds=2.0, fps=FPS, size=SMALL, codec="avc1")


def _face_h264_faststart(path: Path) -> Path:
    return make_face_video(
        path, seconds=4.0, fps=FPS, size=SMALL, codec="avc1", faststart=True, gop=10
    )


def _empty(path: Path) -> Path:
    path.touch()
    return path


def _text(path: Path) -> Path:
    path.write_text("These are my notes, not a video.\n" * 40)
    return path


def _image(ext: str) -> Builder:
    def build(path: Path) -> Path:
        ok, encoded = cv2.imencode(ext, skdata.astronaut()[:, :, ::-1])
        assert ok
        path.write_bytes(encoded.tobytes())
        return path

    return build


def _pdf(path: Path) -> Path:
    body = b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n" * 30
    path.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + body + b"%%EOF\n")
    return path


def _truncated(path: Path, media: Media) -> Path:
    # moov at the end (PyAV default): half a file has no index at all
    return truncate_copy(media.get("full.mp4", _face_h264), path, 0.5)


def _truncated_before_first_frame(path: Path, media: Media) -> Path:
    data = media.get("faststart.mp4", _face_h264_faststart).read_bytes()
    path.write_bytes(data[: data.find(b"mdat") + 200])  # index intact, first key frame cut
    return path


def _truncated_midway(path: Path, media: Media) -> Path:
    return truncate_copy(media.get("faststart.mp4", _face_h264_faststart), path, 0.6)


def _samples_zeroed(path: Path, media: Media) -> Path:
    data = bytearray(media.get("full.mp4", _face_h264).read_bytes())
    start = data.find(b"mdat") - 4  # the box's 32-bit size comes before its type
    size = int.from_bytes(data[start : start + 4], "big")
    data[start + 8 : start + size] = bytes(size - 8)  # index intact, every sample's bytes 0
    path.write_bytes(bytes(data))
    return path


def _moov_renamed(path: Path, media: Media) -> Path:
    data = bytearray(media.get("full.mp4", _face_h264).read_bytes())
    moov = data.find(b"moov")
    data[moov : moov + 4] = b"junk"  # an unknown box: the index is gone
    path.write_bytes(bytes(data))
    return path


def _playlist(path: Path, media: Media) -> Path:
    # Points at a real video on this machine by absolute path: FFmpeg's HLS demuxer would
    # read it (and the client would report on a file it was never given).
    target = media.get("full.mp4", _face_h264)
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{target}\n#EXT-X-ENDLIST\n")
    return path


def _concat_script(path: Path, media: Media) -> Path:
    target = media.get("full.mp4", _face_h264)
    path.write_text(f"ffconcat version 1.0\nfile {target.name}\n")
    return path


def _zero_frames(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()  # header (and, for MKV, the track) but no frame
    return path


def _tiny(path: Path) -> Path:
    return pyav_write(path, [np.full((10, 10, 3), 128, np.uint8)] * 4, codec="mpeg4")


def _thin(path: Path) -> Path:
    """4000x20: readable, but 1280x6 after the default downscale."""
    return pyav_write(path, [np.full((20, 4000, 3), 128, np.uint8)] * 2, codec="mpeg4")


def _single_frame(path: Path) -> Path:
    return pyav_write(path, small_faces(1))


def _zero_duration(path: Path) -> Path:
    """One frame whose packet lasts 0 s (the container's duration is 0)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = *SMALL, "yuv420p"
        frame = av.VideoFrame.from_ndarray(small_faces(1)[0], format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            packet.duration = 0
            container.mux(packet)
    return path


def _vfr(path: Path) -> Path:
    return pyav_write(path, small_faces(6), pts=VFR_PTS, time_base=VFR_TIME_BASE)


@dataclass(frozen=True)
class Failing:
    """A file that must be refused: exit code and a phrase of the one stderr line."""

    name: str
    build: Callable[[Path, Media], Path]
    message: str
    code: int = cli.EXIT_BAD_INPUT


def _plain(build: Builder) -> Callable[[Path, Media], Path]:
    return lambda path, _media: build(path)


FAILING = [
    Failing("empty.mp4", _plain(_empty), "empty file (0 bytes)"),
    Failing("notes.mp4", _plain(_text), "not a readable video"),
    Failing("photo_jpeg.mp4", _plain(_image(".jpg")), "a JPEG image, not a video"),
    Failing("photo_png.mp4", _plain(_image(".png")), "a PNG image, not a video"),
    Failing("document_pdf.mp4", _plain(_pdf), "a PDF document, not a video"),
    Failing(
        "truncated.mp4",
        _truncated,
        "truncated: the file ends inside its 'mdat' box",
    ),
    Failing(
        "truncated_before_first_frame.mp4",
        _truncated_before_first_frame,
        "truncated: the file ends inside its 'mdat' box",
    ),
    Failing(
        "broken_moov.mp4",
        lambda p, m: corrupt_moov(m.get("full.mp4", _face_h264), p),
        "damaged MP4 index ('moov' box)",
    ),
    Failing("missing_moov.mp4", _moov_renamed, "no MP4 index ('moov' box)"),
    Failing(
        "audio_only_aac.mp4",
        _plain(lambda p: write_audio_only(p, codec="aac", cover=False)),
        "no video stream (audio only)",
    ),
    Failing(
        "audio_with_cover.mp4",
        _plain(lambda p: write_audio_only(p, codec="aac", cover=True)),
        "no video stream (audio only)",
    ),
    Failing(
        "audio_with_cover.mp3",
        _plain(lambda p: write_audio_only(p, codec="libmp3lame", cover=True)),
        "an MP3 audio file: no video stream",
    ),
    Failing("zero_frames.mp4", _plain(_zero_frames), "the MP4 index ('moov' box) lists no tracks"),
    Failing("zero_frames.mkv", _plain(_zero_frames), "not a readable video"),
    Failing("playlist.m3u8.mp4", _playlist, "an HLS playlist, not a video file (refused"),
    Failing("concat.ffconcat.mp4", _concat_script, "an FFmpeg concat script, not a video file"),
    Failing(
        "tiny_10x10.mp4",
        _plain(_tiny),
        "the video is only 10x10 pixels; face detection needs at least 12 pixels per side",
    ),
    # a whole index over H.264 samples whose bytes are all zero: no decoder gets a frame
    Failing("samples_zeroed.mp4", _samples_zeroed, "no frame could be decoded ('h264' stream"),
    Failing(
        "thin_4000x20.mp4",
        _plain(_thin),
        "frames of the 4000x20 video are 1280x6 pixels after downscaling to max side 1280",
    ),
]


@pytest.mark.parametrize("case", FAILING, ids=[c.name for c in FAILING])
def test_analyze_exits_with_one_error_line_when_file_is_bad(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], media: Media, case: Failing
) -> None:
    video = media.get(case.name, lambda path: case.build(path, media))
    run = run_analyze(triton, capsys, video, "--frames", "4")
    assert_one_error_line(run, video, case.code, case.message)
    assert_server_ready(triton)


@pytest.mark.parametrize(
    ("kind", "message"),
    [("missing", "no such file"), ("directory", "is a directory, not a video file")],
)
def test_analyze_exits_3_with_one_error_line_when_path_is_not_a_file(
    triton: EmbeddedTriton,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    kind: str,
    message: str,
) -> None:
    video = tmp_path / "nothing_here.mp4" if kind == "missing" else tmp_path
    run = run_analyze(triton, capsys, video)
    assert_one_error_line(run, video, cli.EXIT_BAD_INPUT, message)
    assert_server_ready(triton)


def test_analyze_exits_2_naming_the_minimum_when_max_side_is_below_detection_size(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["video.mp4", "--max-side", "8"])
    assert info.value.code == cli.EXIT_USAGE
    assert "--max-side: must be 0 (no downscaling) or >= 12, got 8" in capsys.readouterr().err


def test_analyze_exits_3_with_one_error_line_when_file_is_not_readable(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], media: Media
) -> None:
    """A real EACCES: as root (CI) the CLI runs in a child that has dropped to ``nobody``.

    Over HTTP: the child is a fork of this process, and a gRPC channel made in it can hang for
    good on a lock one of gRPC core's threads held in the parent at the fork (seen once in CI,
    in ``insecure_channel``). The HTTP client starts no thread; the file is refused before any
    request, whichever the protocol.
    """
    with reachable_dir() as folder:
        video = folder / "secret.mp4"
        video.write_bytes(media.get("full.mp4", _face_h264).read_bytes())
        video.chmod(0)
        # The same CLI path, here, on a missing file: it imports what the path imports lazily
        # (the HTTP client's modules), which nobody may not be able to read (a Python under
        # /root).
        missing = run_analyze(triton, capsys, folder / "missing.mp4", protocol="http")
        assert missing.code == cli.EXIT_BAD_INPUT and "no such file" in missing.err

        def analyze_as_caller() -> CliRun:
            # the folder is reachable: a denial can only come from the file's own mode
            assert video.stat().st_mode & 0o777 == 0
            return run_analyze(triton, capsys, video, protocol="http")

        run = as_unprivileged(analyze_as_caller)
    assert_one_error_line(run, video, cli.EXIT_BAD_INPUT, "permission denied")
    assert_server_ready(triton)


# --- files that must give a verdict ------------------------------------------------------------


@dataclass(frozen=True)
class Readable:
    """A file that must be analysed: its frames, size and status as the verdict reports them."""

    name: str
    build: Builder
    frames: int
    source_size: tuple[int, int]
    status: str = contract.STATUS_OK
    needs: tuple[str, str] | None = None  # (encoder, pixel format) that must exist


def _encoded(codec: str, pix_fmt: str, size: tuple[int, int] = SMALL) -> Builder:
    return lambda path: pyav_write(path, small_faces(4, size), codec=codec, pix_fmt=pix_fmt)


READABLE = [
    Readable("single_frame.mp4", _single_frame, 1, SMALL),
    Readable("zero_duration.mp4", _zero_duration, 1, SMALL),
    Readable("grayscale.mp4", _encoded("libx264", "gray"), 4, SMALL, needs=("libx264", "gray")),
    Readable("yuv444.mp4", _encoded("libx264", "yuv444p"), 4, SMALL),
    Readable(
        "10bit_hevc.mp4",
        _encoded("libx265", "yuv420p10le"),
        4,
        SMALL,
        needs=("libx265", "yuv420p10le"),
    ),
    Readable(
        "10bit_h264.mkv",
        _encoded("libx264", "yuv420p10le"),
        4,
        SMALL,
        needs=("libx264", "yuv420p10le"),
    ),
    Readable(
        "10bit_vp9.webm",
        _encoded("libvpx-vp9", "yuv420p10le"),
        4,
        SMALL,
        needs=("libvpx-vp9", "yuv420p10le"),
    ),
    Readable("odd_321x241_h264.mp4", _encoded("libx264", "yuv444p", (321, 241)), 4, (321, 241)),
    Readable("odd_321x241_mpeg4.avi", _encoded("mpeg4", "yuv420p", (321, 241)), 4, (321, 241)),
    Readable("av1.mp4", _encoded("libsvtav1", "yuv420p"), 4, SMALL, needs=("libsvtav1", "yuv420p")),
    Readable("container.mkv", _encoded("libx264", "yuv420p"), 4, SMALL),
    Readable("container.webm", _encoded("libvpx-vp9", "yuv420p"), 4, SMALL),
    Readable("container.mov", _encoded("libx264", "yuv420p"), 4, SMALL),
    Readable("container_mjpeg.avi", _encoded("mjpeg", "yuvj420p"), 4, SMALL),
    Readable("container_mpeg4.avi", _encoded("mpeg4", "yuv420p"), 4, SMALL),
]


@pytest.mark.parametrize("case", READABLE, ids=[c.name for c in READABLE])
def test_analyze_prints_a_verdict_when_file_is_unusual_but_valid(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], media: Media, case: Readable
) -> None:
    if case.needs is not None and not encoder_supports(*case.needs):
        pytest.skip(f"encoder {case.needs[0]} cannot write {case.needs[1]} in this PyAV build")
    video = media.get(case.name, case.build)
    run = run_analyze(triton, capsys, video, "--frames", "4")
    assert (run.code, run.err) == (cli.EXIT_OK, ""), run
    verdict = run.verdict
    assert verdict["status"] == case.status
    assert verdict["frames"] == case.frames
    assert tuple(verdict["source_size"]) == case.source_size
    assert verdict["faces"] == case.frames  # the face is found in every frame: decoded right
    assert verdict["fake_probability"] is not None
    assert verdict["duration_seconds"] > 0 and verdict["ratio"] is not None
    width, height = case.source_size
    for face in verdict["face_boxes"]:
        x1, y1, x2, y2 = face["box"]
        assert -0.5 * width < x1 < x2 < 1.5 * width and -0.5 * height < y1 < y2 < 1.5 * height
    assert_server_ready(triton)


def test_analyze_uses_the_frames_before_the_cut_when_mp4_is_truncated_midway(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], media: Media
) -> None:
    video = media.get("truncated_midway.mp4", lambda p: _truncated_midway(p, media))
    run = run_analyze(triton, capsys, video, "--frames", "4")
    assert (run.code, run.err) == (cli.EXIT_OK, ""), run
    verdict = run.verdict
    assert verdict["status"] == contract.STATUS_OK
    assert 0.5 < verdict["duration_seconds"] < 4.0  # the decodable part of a 4 s video
    assert all(f["timestamp"] < verdict["duration_seconds"] for f in verdict["face_boxes"])
    assert_server_ready(triton)


def test_analyze_reports_real_timestamps_when_frame_rate_is_variable(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], media: Media
) -> None:
    video = media.get("variable_rate.mp4", _vfr)
    run = run_analyze(triton, capsys, video, "--frames", str(len(VFR_PTS)))
    assert (run.code, run.err) == (cli.EXIT_OK, ""), run
    verdict = run.verdict
    assert verdict["frames"] == len(VFR_PTS)
    expected = [float(p * VFR_TIME_BASE) for p in VFR_PTS]  # 0, .05, .1, .35, .4, 1.5 s
    seen = {f["frame_index"]: f["timestamp"] for f in verdict["face_boxes"]}
    assert seen, verdict
    for index, timestamp in seen.items():
        assert timestamp == pytest.approx(expected[index], abs=1e-3)
    assert verdict["duration_seconds"] >= expected[-1]
    assert_server_ready(triton)


def test_analyze_finds_the_upright_face_in_upright_pixels_when_phone_video_is_rotated(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], media: Media
) -> None:
    video = media.get("portrait_phone.mp4", portrait_phone_video)
    run = run_analyze(triton, capsys, video, "--frames", "4")
    assert (run.code, run.err) == (cli.EXIT_OK, ""), run
    verdict = run.verdict
    assert verdict["source_size"] == [180, 320]  # displayed (upright) size, not stored 320x180
    assert verdict["faces"] == verdict["frames"] == 4  # an upright face in every frame
    for face in verdict["face_boxes"]:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= 180 and 0 <= y1 < y2 <= 320
        assert y2 - y1 > 0.8 * (x2 - x1)  # an upright face is not much wider than tall
    assert_server_ready(triton)


def test_analyze_downscales_8k_and_reports_boxes_in_8k_pixels_when_video_is_8k(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], media: Media
) -> None:
    video = media.get("uhd_8k.mp4", uhd_face_video)
    run = run_analyze(triton, capsys, video)
    assert (run.code, run.err) == (cli.EXIT_OK, ""), run
    verdict = run.verdict
    assert verdict["source_size"] == list(UHD_8K)
    assert verdict["frame_size"] == [1280, 720]  # the default --max-side
    assert verdict["status"] == contract.STATUS_OK and verdict["faces"] == 2
    x, y, side = UHD_FACE
    for face in verdict["face_boxes"]:
        x1, y1, x2, y2 = face["box"]
        # inside the pasted portrait, in 8K pixels: x1 >= 3000 cannot be a 1280-px coordinate
        assert x <= x1 < x2 <= x + side and y <= y1 < y2 <= y + side, face
        assert x2 - x1 > 200  # ~300 px in 8K, ~50 px in the frames that were sent
    assert_server_ready(triton)


def test_analyze_exits_5_naming_the_size_limit_when_8k_is_sent_without_downscaling(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], media: Media
) -> None:
    """~100 MB of frames reach the server, which refuses them and stays healthy."""
    video = media.get("uhd_8k.mp4", uhd_face_video)
    run = run_analyze(triton, capsys, video, "--max-side", "0", "--frames", "1")
    assert_one_error_line(
        run, video, cli.EXIT_SERVER_ERROR, "frame size 7680x4320 is outside 12..4096 pixels"
    )
    assert_server_ready(triton)


def test_analyze_reports_the_hour_when_video_lasts_one_hour(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], media: Media
) -> None:
    video = media.get("hour_1fps.mkv", hour_video)
    run = run_analyze(triton, capsys, video)
    assert (run.code, run.err) == (cli.EXIT_OK, ""), run
    verdict = run.verdict
    assert verdict["duration_seconds"] == pytest.approx(HOUR_SECONDS, abs=1)
    assert verdict["frames"] == 16
    assert (verdict["status"], verdict["label"], verdict["fake_probability"]) == (
        contract.STATUS_NO_FACE,
        "NO_FACE",
        None,
    )
    # the ratio is of the whole hour (to the 4 decimals the JSON gives)
    assert verdict["ratio"] == pytest.approx(verdict["processing_seconds"] / HOUR_SECONDS, abs=1e-4)
    assert_server_ready(triton)


# --- the hour-long video: even picks, bounded memory (subprocess) -------------------------------

_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from fakescope.client.video import sample_frames
    from tests.support.media import read_marker

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    warmup, long_video, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sample_frames(warmup, k, 1280)  # codecs loaded, a k-frame buffer allocated once
    before = peak()
    s = sample_frames(long_video, k, 1280)
    print(json.dumps({
        "growth": peak() - before,
        "indices": s.frame_indices.tolist(),
        "timestamps": s.timestamps.tolist(),
        "markers": [read_marker(f) for f in s.frames],
        "total": s.total_frames,
        "duration": s.duration_seconds,
    }))
    """
)


def measure_sampling(warmup: Path, long_video: Path, k: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(warmup), str(long_video), str(k)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        cwd=PROJECT_ROOT,
    )
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("fps", [1, 25], ids=lambda fps: f"{fps}fps")
def test_sample_frames_streams_with_bounded_memory_when_video_lasts_one_hour(
    media: Media, tmp_path: Path, fps: int
) -> None:
    """1 fps: 3 600 frames of 640x360 (2.5 GB if all were held); 25 fps: 90 000 frames of
    160x90, a real hour's frame count (3.9 GB if held). ~1 s and ~3 s here."""
    size = HOUR_SIZE if fps == 1 else (160, 90)
    video = media.get(f"hour_{fps}fps.mkv", lambda p: hour_video(p, fps=fps, size=size))
    warmup = pyav_write(
        tmp_path / "warmup.mkv",
        [np.full((size[1], size[0], 3), 90, np.uint8)] * 20,
        codec="mjpeg",
        pix_fmt="yuvj420p",
    )
    k = 16
    result = measure_sampling(warmup, video, k)
    total = HOUR_SECONDS * fps
    assert result["total"] == total
    assert result["duration"] == pytest.approx(HOUR_SECONDS, abs=1)
    ideal = [math.floor((j + 0.5) * total / k) for j in range(k)]
    assert result["indices"] == ideal
    assert result["timestamps"] == pytest.approx([i / fps for i in ideal], abs=1e-3)
    # what the frames show (the minute they were muxed in), not the sampler's bookkeeping
    assert result["markers"] == [i // (60 * fps) for i in ideal]
    # the whole hour's frames would be total * width * height * 3 bytes, over 1 GiB
    assert result["growth"] < 32 * 2**20, result["growth"]


# --- a real process: one stderr line per bad file, nothing else --------------------------------


def test_cli_process_prints_exactly_one_line_per_bad_file_when_run_as_a_module(
    triton: EmbeddedTriton, media: Media, tmp_path: Path
) -> None:
    videos = [media.get(c.name, lambda path, c=c: c.build(path, media)) for c in FAILING]
    videos.append(tmp_path / "missing.mp4")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fakescope.client.cli",
            *map(str, videos),
            "--url",
            triton.address.grpc_url,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == cli.EXIT_BAD_INPUT
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert [line.split(": ", 3)[:3] for line in lines] == [
        ["fakescope", "error", str(v)] for v in videos
    ], proc.stderr
    assert_server_ready(triton)
