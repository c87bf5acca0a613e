"""What the page shows: the verdict in plain words, and the timeline chart as inline SVG.

No chart library: :func:`timeline_svg` draws the per-frame scores as an SVG string (numbers
only are interpolated, so it is safe to embed unescaped). Frames without a face are drawn as
grey ticks under the axis, never as a score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["LIMITATIONS_NOTICE", "Wording", "clock", "describe", "percent", "timeline_svg"]

UNTRAINED_NOTICE: Final = (
    "Test mode: the detector's classifier has not been trained yet, so these scores are not "
    "findings. Do not report on them."
)

#: Starts the caveat that repeats what the served classifier says it cannot be trusted for.
LIMITATIONS_NOTICE: Final = "About this detector, in its makers' words: "


@dataclass(frozen=True)
class Wording:
    """Headline, explanation and tone (``fake``, ``real``, ``unknown``) of a verdict."""

    headline: str
    detail: str
    tone: str
    caveat: str | None


def percent(p: float | None) -> str:
    """``0.873`` → ``"87 %"``; ``None`` → ``"–"``."""
    return "–" if p is None else f"{round(100 * p)} %"


def clock(seconds: float | None, precise: bool = False) -> str:
    """``75.4`` → ``"1:15"``; with ``precise``, tenths: ``"1:15.4"``."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    if precise:
        tenths = round(seconds * 10)
        return f"{tenths // 600}:{tenths % 600 // 10:02d}.{tenths % 10}"
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"


def describe(verdict: dict[str, Any], timestamps: list[float] | None = None) -> Wording:
    """Put a verdict (``Verdict.to_json_dict()``) in words a journalist can use."""
    limitations = verdict.get("model_limitations")
    if not verdict.get("model_trained"):
        caveat: str | None = UNTRAINED_NOTICE
    elif limitations:
        caveat = f"{LIMITATIONS_NOTICE}{limitations}"
    else:
        caveat = None
    frames = verdict.get("frames") or 0
    faces = verdict.get("faces") or 0
    threshold = percent(verdict.get("threshold"))
    if verdict.get("label") == "NO_FACE":
        return Wording(
            "No face found",
            f"FakeScope only checks faces. It looked at {frames} moments of this video and "
            "found no face, so it cannot say whether the video was manipulated.",
            "unknown",
            caveat,
        )
    p = float(verdict["fake_probability"])
    scores = verdict.get("frame_scores") or []
    peak = ""
    finite = [(s, i) for i, s in enumerate(scores) if s is not None]
    if finite and timestamps and len(timestamps) == len(scores):
        best, index = max(finite)
        when = clock(timestamps[index], precise=True)
        peak = f" The most suspicious moment is at {when} ({percent(best)})."
    looked = f"It looked at {faces} face{'s' if faces != 1 else ''} in {frames} moments."
    if verdict.get("label") == "FAKE":
        strength = "Very likely" if p >= 0.9 else "Possibly"
        return Wording(
            f"{strength} manipulated",
            f"The faces in this video look synthetic to the detector: {percent(p)} (videos are "
            f"flagged from {threshold}). {looked}{peak} Check the original source before "
            "publishing.",
            "fake",
            caveat,
        )
    strength = "No sign of" if p < 0.1 else "Little sign of"
    return Wording(
        f"{strength} face manipulation",
        f"The detector found {'no' if p < 0.1 else 'little'} sign that the faces were generated "
        f"or swapped: {percent(p)} (videos are flagged from {threshold}). {looked}{peak} A clean "
        "result is not proof that the video is authentic: cuts, audio and context are not "
        "checked.",
        "real",
        caveat,
    )


def timeline_svg(
    scores: list[float | None],
    timestamps: list[float],
    *,
    duration: float | None,
    threshold: float = 0.5,
    width: int = 640,
    height: int = 180,
) -> str:
    """Return an ``<svg>`` chart of per-frame fake scores over time.

    x: seconds (0 … duration), y: score 0 … 100 %. A dashed line marks the threshold; each
    frame with a face is a dot (connected to its neighbours with a face); a frame without a
    face is a grey tick below the axis.
    """
    left, right, top, bottom = 44, 12, 12, 34
    pw, ph = width - left - right, height - top - bottom
    end = max([duration or 0.0, *timestamps, 1e-6])
    precise = end < 10

    def x(t: float) -> float:
        return round(left + pw * t / end, 1)

    def y(s: float) -> float:
        return round(top + ph * (1 - s), 1)

    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} '
        f'{height}" width="{width}" height="{height}" role="img" '
        f'aria-label="Fake score of each analysed frame over time">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot"/>',
    ]
    for level in (0.0, 0.5, 1.0):
        parts.append(
            f'<text x="{left - 6}" y="{y(level) + 4}" text-anchor="end" '
            f'class="axis">{round(level * 100)} %</text>'
        )
    parts.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{y(threshold)}" y2="{y(threshold)}" '
        'class="threshold"/>'
    )
    for t, anchor in ((0.0, "start"), (end / 2, "middle"), (end, "end")):
        parts.append(
            f'<text x="{x(t)}" y="{height - 8}" text-anchor="{anchor}" '
            f'class="axis">{clock(t, precise)}</text>'
        )
    run: list[str] = []
    runs: list[list[str]] = []
    for s, t in zip(scores, timestamps, strict=False):
        if s is None:
            if run:
                runs.append(run)
            run = []
            continue
        run.append(f"{x(t)},{y(s)}")
    if run:
        runs.append(run)
    for points in runs:
        if len(points) > 1:
            parts.append(f'<polyline points="{" ".join(points)}" class="line"/>')
    for i, (s, t) in enumerate(zip(scores, timestamps, strict=False)):
        if s is None:
            parts.append(
                f'<line x1="{x(t)}" x2="{x(t)}" y1="{top + ph + 3}" '
                f'y2="{top + ph + 9}" class="noface"><title>frame {i + 1} at '
                f"{clock(t, precise)}: no face</title></line>"
            )
        else:
            tone = "fake" if s >= threshold else "real"
            label = f"frame {i + 1} at {clock(t, precise)}: {percent(s)}"
            parts.append(
                f'<circle cx="{x(t)}" cy="{y(s)}" r="4" class="dot {tone}">'
                f"<title>{label}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)
