"""The client's decoding pass with and without jumps to IDR keyframes: CPU and wall time.

The PyAV fast path (:mod:`fakescope.client.pyav_sampler`) decodes the reference frames of a
video in one pass when not every segment of the sample holds a keyframe; it now jumps over the
packets no pick needs, up to the next IDR keyframe. For each video the client's sample (its
default frame count and size) is taken with jumps (the client) and without
(:mod:`~fakescope.benchmarks.decode_settings`: interleaved, the median of ``--runs`` runs, the
same frames at the same indices both ways or the run fails). Videos: the committed samples, the
benchmark videos, a phone-like video (:data:`~fakescope.benchmarks.videos.PHONE_LIKE_VIDEO`: a
keyframe every second, no B-frames) and, where present, ``../shared/data/dfdc_sample``. Videos
sampled on keyframes alone (every segment holds one) do not take the pass and time the same both
ways.

Run: ``python -m fakescope.benchmarks.decode_jumps`` (writes
``benchmarks/results/decode_jumps.json`` and its table, ``decode_jumps.md``).
"""

from __future__ import annotations

from typing import Any

from fakescope.benchmarks.decode_settings import render_table, run_comparison
from fakescope.benchmarks.videos import PHONE_LIKE_VIDEO, ensure_videos
from fakescope.paths import PROJECT_ROOT

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "decode_jumps.json"
#: The compared settings of ``sample_with_pyav``; the first is the client's.
MODES: dict[str, dict[str, Any]] = {
    "jumps": {"jump_to_idr": True},
    "no_jumps": {"jump_to_idr": False},
}


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``decode_jumps.json`` as a table."""
    return render_table(
        result,
        title="Client decoding: the reference-frame pass with and without jumps to IDR keyframes",
        module="fakescope.benchmarks.decode_jumps",
        labels={"no_jumps": "no jumps", "jumps": "jumps"},
    )


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    return run_comparison(
        argv,
        description=__doc__.split("\n\n")[0],
        modes=MODES,
        result=RESULT,
        runs=7,
        render=render_markdown,
        extra_videos=lambda folder: ensure_videos(folder, (PHONE_LIKE_VIDEO,)),
    )


if __name__ == "__main__":
    raise SystemExit(main())
