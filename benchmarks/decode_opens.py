"""The client's sample with the video opened once or twice: CPU and wall time.

The PyAV fast path (:mod:`fakescope.client.pyav_sampler`) indexes the stream (demuxing, no
decoding) and then decodes the picks. It used to open the file again to decode; it now seeks
back in the container it indexed (and opens again only where the seek cannot land on the first
packet, as in MPEG-TS). Opening is not free: FFmpeg's probe of the stream decoded its first
frame, so it cost more the larger the frame (the client's open now decodes nothing:
:mod:`~fakescope.benchmarks.decode_probe`). For each video the client's sample (its default
frame count and size) is taken with one open (the client) and with two
(:mod:`~fakescope.benchmarks.decode_settings`: interleaved, the median of ``--runs`` runs, the
same frames at the same indices both ways or the run fails). Videos: the committed samples, the
benchmark videos and, where present, ``../shared/data/dfdc_sample``.

Run: ``python -m fakescope.benchmarks.decode_opens`` (writes
``benchmarks/results/decode_opens.json`` and its table, ``decode_opens.md``).
"""

from __future__ import annotations

from typing import Any

from fakescope.benchmarks.decode_settings import render_table, run_comparison
from fakescope.paths import PROJECT_ROOT

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "decode_opens.json"
#: The compared settings of ``sample_with_pyav``; the first is the client's.
MODES: dict[str, dict[str, Any]] = {"one_open": {"reopen": False}, "two_opens": {"reopen": True}}


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``decode_opens.json`` as a table."""
    return render_table(
        result,
        title="Client decoding: the video opened once (index and decode) or twice",
        module="fakescope.benchmarks.decode_opens",
        labels={"two_opens": "two opens", "one_open": "one open"},
    )


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    return run_comparison(
        argv,
        description=__doc__.split("\n\n")[0],
        modes=MODES,
        result=RESULT,
        runs=15,
        render=render_markdown,
    )


if __name__ == "__main__":
    raise SystemExit(main())
