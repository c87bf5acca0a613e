"""The client's sample with the file opened with or without FFmpeg's decoding probe.

Opening a file runs FFmpeg's probe of its streams (``avformat_find_stream_info``), which by
default decodes an H.264 stream's first frames to learn what the PyAV fast path
(:mod:`fakescope.client.pyav_sampler`) does not need from it; the client opens with
:data:`~fakescope.client.pyav_sampler.PROBE_OPTIONS`, so that the probe decodes nothing. For
each video the client's sample (its default frame count and size) is taken both ways
(:mod:`~fakescope.benchmarks.decode_settings`: interleaved, the median of ``--runs`` runs, the
same frames at the same indices both ways or the run fails). Videos: the committed samples, the
benchmark videos and, where present, ``../shared/data/dfdc_sample``.

Run: ``python -m fakescope.benchmarks.decode_probe`` (writes
``benchmarks/results/decode_probe.json`` and its table, ``decode_probe.md``).
"""

from __future__ import annotations

from typing import Any

from fakescope.benchmarks.decode_settings import render_table, run_comparison
from fakescope.paths import PROJECT_ROOT

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "decode_probe.json"
#: The compared settings of ``sample_with_pyav``; the first is the client's.
MODES: dict[str, dict[str, Any]] = {
    "no_probe_decoding": {"probe_decodes": False},
    "probe_decoding": {"probe_decodes": True},
}


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``decode_probe.json`` as a table."""
    return render_table(
        result,
        title="Client decoding: the file opened with and without FFmpeg's decoding probe",
        module="fakescope.benchmarks.decode_probe",
        labels={"probe_decoding": "probe decodes", "no_probe_decoding": "probe decodes nothing"},
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
