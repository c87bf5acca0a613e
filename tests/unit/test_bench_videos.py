"""The benchmark videos' frames (fakescope/benchmarks/videos.py): faces on their schedules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fakescope.benchmarks.videos import SECOND_FACE_COMES_AND_GOES, BenchVideo, _frames


def _changed(video: BenchVideo, without: BenchVideo) -> tuple[list[bool], list[bool]]:
    """Per frame: whether the picture differs from ``without``'s anywhere, and in its corner."""
    pytest.importorskip("skimage.data", reason="scikit-image (dev extra) ships the pictures")
    anywhere, corner = [], []
    for ours, theirs in zip(_frames(video), _frames(without), strict=True):
        differs = np.any(ours != theirs, axis=2)
        anywhere.append(bool(differs.any()))
        corner.append(bool(differs[:4, :4].any()))
    return anywhere, corner


def test_bench_video_frames_show_each_face_on_its_schedule_only_when_faces_come_and_go():
    # 2 frames a second for 8 s, small: frame i is at i / 2 s
    video = dataclasses.replace(
        SECOND_FACE_COMES_AND_GOES,
        width=160,
        height=90,
        seconds=8.0,
        fps=2,
        face_on_screen=((2.0, 3.0),),
        second_face_on_screen=((1.0, 2.0), (5.0, 5.5)),
    )
    no_faces = dataclasses.replace(video, face_on_screen=(), second_face_on_screen=())
    anywhere, corner = _changed(video, no_faces)
    assert [i for i, c in enumerate(anywhere) if c] == [2, 3, 4, 5, 10]
    # the second face stands in the top left corner; the first never reaches it here
    assert [i for i, c in enumerate(corner) if c] == [2, 3, 10]
