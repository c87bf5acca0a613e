"""Carry face boxes from keyframes to the frames between them (detection on a subset).

The full MTCNN cascade runs only on keyframes; every other frame gets *proposals*: boxes of the
same face in the keyframes before and after it, matched by IoU and interpolated linearly, or
carried unchanged when a face is seen in only one of the two; a frame that gets none (neither
keyframe holds a face) is detected in full, since a face may be on screen only between two
keyframes. The cascade's last stage (O-Net) then verifies and refines each proposal on its own
frame. A proposal that fails (the face moved further than the interpolation guessed) is
followed from the nearer keyframe it was seen in by template matching over the whole frame
(:mod:`fakescope.pipeline.face_tracking`), and O-Net verifies that second guess. Where each
of the two keyframes holds a face the other does not match, most likely one face that moved
further than its width between them, the carried boxes are followed at once, without a first
verification where the face was. A frame where a face is still lost is searched again
*locally*: the whole cascade, but only in a window around its proposals and only for faces of
about their size (:func:`search_windows`); a frame where that finds nothing is re-detected in
full (see :func:`fakescope.pipeline.mtcnn.detect_faces`). What is not looked for: a face that
enters a frame between keyframes beside faces that are carried there and verified. Pure numpy:
no nets.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CARRY_MIN_SCORE",
    "Proposals",
    "SearchWindows",
    "box_iou",
    "keyframe_indices",
    "propose_boxes",
    "search_windows",
]

#: Two keyframe boxes belong to the same face when their IoU reaches this (faces move between
#: sampled frames, which are ~0.3-0.7 s apart; O-Net's refinement absorbs the residual offset).
MATCH_IOU = 0.3

#: Only keyframe faces O-Net is this sure of are carried to other frames. Real faces score
#: ~1.0; the rare face-like patches MTCNN accepts near its 0.7 threshold (seen at 0.78 on DFDC
#: sample videos) appear in single frames, so carrying them would only fail verification and
#: force needless re-detection of the frames around them.
CARRY_MIN_SCORE = 0.95

#: A lost frame is searched for faces of its proposals' size divided or multiplied by this
#: (a face's size changes far less than its position between sampled frames).
SEARCH_SIZE_SPAN = 2.0

#: ... and within its proposals' bounding box widened on every side by this many times their
#: largest side: by then following the face has failed (it changed size or pose), and such a
#: face is still near where it was guessed (DFDC faces move far less than a face width between
#: samples); a face gone further is found by the full detection after this search.
SEARCH_MARGIN = 1.5


def keyframe_indices(n_frames: int, stride: int) -> list[int]:
    """Return the frames detected in full: every ``stride``-th frame and the last one."""
    if n_frames < 0 or stride < 1:
        raise ValueError(f"need n_frames >= 0 and stride >= 1, got {n_frames} and {stride}")
    if n_frames == 0:
        return []
    return sorted({*range(0, n_frames, stride), n_frames - 1})


def box_iou(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    """IoU of every box of ``a`` ``[A, 4]`` with every box of ``b`` ``[B, 4]`` (x1, y1, x2, y2)."""
    a64, b64 = a[:, None, :4].astype(np.float64), b[None, :, :4].astype(np.float64)
    iw = np.minimum(a64[..., 2], b64[..., 2]) - np.maximum(a64[..., 0], b64[..., 0])
    ih = np.minimum(a64[..., 3], b64[..., 3]) - np.maximum(a64[..., 1], b64[..., 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a64[..., 2] - a64[..., 0]) * (a64[..., 3] - a64[..., 1])
    area_b = (b64[..., 2] - b64[..., 0]) * (b64[..., 3] - b64[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)


def _match(before: NDArray[np.float32], after: NDArray[np.float32]) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, highest IoU first, at IoU >= :data:`MATCH_IOU`."""
    if len(before) == 0 or len(after) == 0:
        return []
    iou = box_iou(before, after)
    pairs = []
    used_b: set[int] = set()
    used_a: set[int] = set()
    for flat in np.argsort(-iou, axis=None):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < MATCH_IOU:
            break
        if i not in used_b and j not in used_a:
            pairs.append((i, j))
            used_b.add(i)
            used_a.add(j)
    return pairs


@dataclass(frozen=True)
class Proposals:
    """Where each face of the keyframes is guessed to be in the frames between them.

    Attributes:
        frame_index: ``[P]`` the frame of each proposal.
        boxes: ``[P, 4]`` the guess (x1, y1, x2, y2): interpolated, or carried unchanged.
        source_frame: ``[P]`` the keyframe to follow the face from when the guess fails: the
            nearer of the two it was seen in (the earlier one when both are as near).
        source_boxes: ``[P, 4]`` the face's box in that keyframe.
        least_faces: ``[P]`` how many faces the proposal's frame holds at least: as many as the
            keyframe before it or the one after it, whichever holds more (the faces of one
            keyframe are distinct faces; a face seen in only one of them is proposed from
            there, so two proposals may be one face that moved).
        unmatched: ``[P]`` the proposal carries a face seen in only one of its keyframes while
            the other keyframe also holds a face seen only there: most likely one face that
            moved further than its width between them, so the carried box is a poor guess and
            the face is followed before its box is verified.

    """

    frame_index: NDArray[np.int64]
    boxes: NDArray[np.float32]
    source_frame: NDArray[np.int64]
    source_boxes: NDArray[np.float32]
    least_faces: NDArray[np.int64]
    unmatched: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.frame_index)


def propose_boxes(keyframes: list[int], key_boxes: dict[int, NDArray[np.float32]]) -> Proposals:
    """Proposals for every frame that is not a keyframe.

    Args:
        keyframes: ascending keyframe indices (from :func:`keyframe_indices`).
        key_boxes: each keyframe's detected boxes ``[K, 4]`` (x1, y1, x2, y2).

    Returns:
        The proposals: a face seen in both surrounding keyframes is interpolated linearly
        between them; one seen in only one of them is carried as it is there (it may have
        left, or been missed: verification decides).

    """
    frame_rows: list[int] = []
    box_rows: list[NDArray[np.float32]] = []
    source_rows: list[int] = []
    source_box_rows: list[NDArray[np.float32]] = []
    least_rows: list[int] = []
    unmatched_rows: list[bool] = []

    def add(
        frame: int,
        box: NDArray[np.float32],
        source: tuple[int, NDArray[np.float32]],
        unmatched: bool = False,
    ) -> None:
        frame_rows.append(frame)
        box_rows.append(box)
        source_rows.append(source[0])
        source_box_rows.append(source[1])
        unmatched_rows.append(unmatched)

    for before_key, after_key in itertools.pairwise(keyframes):
        before, after = key_boxes[before_key][:, :4], key_boxes[after_key][:, :4]
        pairs = _match(before, after)
        lone_before = sorted(set(range(len(before))) - {i for i, _ in pairs})
        lone_after = sorted(set(range(len(after))) - {j for _, j in pairs})
        # lone faces on both sides: most likely faces that moved far, not ones that came or went
        unmatched = bool(lone_before) and bool(lone_after)
        for frame in range(before_key + 1, after_key):
            t = np.float32((frame - before_key) / (after_key - before_key))
            nearer_before = frame - before_key <= after_key - frame
            for i, j in pairs:
                source = (before_key, before[i]) if nearer_before else (after_key, after[j])
                add(frame, before[i] + t * (after[j] - before[i]), source)
            for i in lone_before:
                add(frame, before[i].copy(), (before_key, before[i]), unmatched)
            for j in lone_after:
                add(frame, after[j].copy(), (after_key, after[j]), unmatched)
        # the same floor for every proposal between these two keyframes
        least_rows += [max(len(before), len(after))] * (len(frame_rows) - len(least_rows))
    if not box_rows:
        no_rows, no_boxes = np.zeros((0,), np.int64), np.zeros((0, 4), np.float32)
        return Proposals(no_rows, no_boxes, no_rows, no_boxes, no_rows, np.zeros((0,), bool))
    return Proposals(
        frame_index=np.asarray(frame_rows, np.int64),
        boxes=np.stack(box_rows).astype(np.float32),
        source_frame=np.asarray(source_rows, np.int64),
        source_boxes=np.stack(source_box_rows).astype(np.float32),
        least_faces=np.asarray(least_rows, np.int64),
        unmatched=np.asarray(unmatched_rows, bool),
    )


@dataclass(frozen=True)
class SearchWindows:
    """Where and for which face sizes lost frames are searched again.

    Attributes:
        origins: ``[L, 2]`` top-left corner (x, y) of each frame's window, in frame pixels.
        width: the windows' common width (one batch of equal crops: one P-Net call per level).
        height: the windows' common height.
        min_face: smallest face side searched for, in pixels.
        max_face: largest face side searched for, in pixels.

    """

    origins: NDArray[np.int64]
    width: int
    height: int
    min_face: float
    max_face: float


def search_windows(
    frame_size: tuple[int, int],
    lost: NDArray[np.int64],
    proposal_frames: NDArray[np.int64],
    proposals: NDArray[np.float32],
    min_face_size: float,
) -> SearchWindows:
    """Windows of one common size around each lost frame's proposals, and the sizes to search.

    Args:
        frame_size: ``(width, height)`` of the frames.
        lost: the lost frames (each has at least one proposal).
        proposal_frames: frame of every proposal.
        proposals: ``[P, >=4]`` the proposals (x1, y1, x2, y2, ...).
        min_face_size: the detector's smallest face; the search never goes below it.

    Each window is the bounding box of the frame's proposals widened by :data:`SEARCH_MARGIN`
    times their largest side, grown to the largest such box of all lost frames (clipped to the
    frame) and shifted inside the frame. Sizes span :data:`SEARCH_SIZE_SPAN` around the
    proposals' smallest and largest sides.

    """
    width, height = frame_size
    of_lost = np.isin(proposal_frames, lost)
    boxes, frames_of = proposals[of_lost, :4].astype(np.float64), proposal_frames[of_lost]
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    extents = []
    for frame in lost:
        own = frames_of == frame
        b, margin = boxes[own], SEARCH_MARGIN * float(sides[own].max())
        extents.append(
            (
                b[:, 0].min() - margin,
                b[:, 1].min() - margin,
                b[:, 2].max() + margin,
                b[:, 3].max() + margin,
            )
        )
    box = np.asarray(extents, np.float64).reshape(-1, 4)
    w = int(min(width, np.ceil((box[:, 2] - box[:, 0]).max())))
    h = int(min(height, np.ceil((box[:, 3] - box[:, 1]).max())))
    centre_x = (box[:, 0] + box[:, 2]) / 2
    centre_y = (box[:, 1] + box[:, 3]) / 2
    x0 = np.clip(np.round(centre_x - w / 2), 0, width - w).astype(np.int64)
    y0 = np.clip(np.round(centre_y - h / 2), 0, height - h).astype(np.int64)
    return SearchWindows(
        origins=np.stack([x0, y0], axis=1),
        width=w,
        height=h,
        min_face=max(float(min_face_size), float(sides.min()) / SEARCH_SIZE_SPAN),
        max_face=max(float(min_face_size), float(sides.max()) * SEARCH_SIZE_SPAN),
    )
