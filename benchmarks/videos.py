"""The benchmark's videos: a real face (scikit-image's astronaut) over a moving photo background.

A textured, moving background gives H.264 a realistic amount of work (a plain background would
make decoding unrealistically cheap). Files are made once per machine and reused.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fakescope.benchmarks.media import write_video

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchVideo:
    """One benchmark video: name, size, duration."""

    name: str
    width: int
    height: int
    seconds: float
    fps: int = 30
    gop_seconds: float = 2.0  #: keyframe interval
    b_frames: bool = True  #: x264's B-frames; phones record without
    #: ``(start, end)`` seconds during which the face is on screen; ``None``: all the time
    face_on_screen: tuple[tuple[float, float], ...] | None = None
    #: ... and those of a second, smaller face standing in the top left corner (under the
    #: first where they overlap); empty: none
    second_face_on_screen: tuple[tuple[float, float], ...] = ()

    @property
    def file_name(self) -> str:
        """The video's file name, as the benchmark results name it."""
        return f"{self.name}.mp4"

    def path(self, folder: Path) -> Path:
        """Where the video lives in ``folder``."""
        return folder / self.file_name


#: The video of the 1-user latency target (``benchmarks/targets.py``).
FACE_720P_10S = BenchVideo("face_720p_10s", 1280, 720, 10.0)

#: 720p and 1080p of 5–15 s, and one 60 s video (issue "Load tests", item 1).
BENCH_VIDEOS = (
    FACE_720P_10S,
    BenchVideo("face_1080p_6s", 1920, 1080, 6.0),
    BenchVideo("face_720p_15s", 1280, 720, 15.0),
    BenchVideo("face_720p_60s", 1280, 720, 60.0),
)

#: A 1 s clip: a 0.5 s budget, the least time to wait at a busy server (not in the load test's
#: mix; ``benchmarks/analyze_jobs.py``).
SHORT_CLIP = BenchVideo("face_720p_1s", 1280, 720, 1.0)

#: What a phone records: a keyframe every second, no B-frames (not in the load test's mix).
PHONE_LIKE_VIDEO = BenchVideo("phone_720p_10s", 1280, 720, 10.0, gop_seconds=1.0, b_frames=False)

#: A face that comes and goes, as in edited video: on screen only in seconds 1-4, 6-7, 9-11
#: and 13-14 of 16. Sampled at 16 frames (one per second, at each second's middle), the face
#: is in 7 of them, none of them a keyframe of the served ``keyframe_stride`` 4 (frames 0, 4,
#: 8, 12 and 15): a recall check for faces seen only between keyframes (not in the load
#: test's mix; ``benchmarks/detector_keyframes.py``).
_BETWEEN_KEYFRAMES = ((1.0, 4.0), (6.0, 7.0), (9.0, 11.0), (13.0, 14.0))
FACE_COMES_AND_GOES = BenchVideo(
    "face_comes_and_goes_720p_16s", 1280, 720, 16.0, face_on_screen=_BETWEEN_KEYFRAMES
)

#: The same schedule for a second face beside one on screen all the time: what detection on
#: keyframes does not look for (the first face is carried to every frame and verified there).
SECOND_FACE_COMES_AND_GOES = BenchVideo(
    "second_face_comes_and_goes_720p_16s",
    1280,
    720,
    16.0,
    second_face_on_screen=_BETWEEN_KEYFRAMES,
)


def _frames(video: BenchVideo) -> Iterator[np.ndarray]:
    from skimage import data

    w, h = video.width, video.height
    background = cv2.resize(data.coffee(), (int(w * 1.5), int(h * 1.5)), cv2.INTER_CUBIC)
    side = h // 2
    face = cv2.resize(data.astronaut(), (side, side), interpolation=cv2.INTER_AREA)
    second = cv2.flip(cv2.resize(face, (side * 2 // 3,) * 2, interpolation=cv2.INTER_AREA), 1)
    count = round(video.seconds * video.fps)
    for i in range(count):
        t = i / video.fps
        bx = int((background.shape[1] - w) * (0.5 + 0.5 * math.sin(t / 3)))
        by = int((background.shape[0] - h) * (0.5 + 0.5 * math.cos(t / 4)))
        frame = background[by : by + h, bx : bx + w].copy()
        if any(start <= t < end for start, end in video.second_face_on_screen):
            frame[: second.shape[0], : second.shape[1]] = second
        shown = video.face_on_screen
        if shown is None or any(start <= t < end for start, end in shown):
            x = int((w - side) * (0.5 + 0.4 * math.sin(t)))
            y = int((h - side) * (0.5 + 0.3 * math.cos(t / 2)))
            frame[y : y + side, x : x + side] = face
        yield frame


def ensure_videos(folder: Path, videos: tuple[BenchVideo, ...] = BENCH_VIDEOS) -> list[Path]:
    """Create the benchmark videos in ``folder`` where missing; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for video in videos:
        path = video.path(folder)
        if not path.is_file():
            logger.info("writing %s", path)
            tmp = path.with_suffix(".tmp.mp4")
            write_video(
                tmp,
                _frames(video),
                fps=video.fps,
                codec="libx264",
                gop=round(video.gop_seconds * video.fps),
                b_frames=video.b_frames,
            )
            tmp.replace(path)
        paths.append(path)
    return paths
