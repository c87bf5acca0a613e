"""Where face_detector runs the MTCNN nets: time and CPU per video, in its process or via BLS.

Two embedded servers serve the same repository side by side, one with the nets in
``face_detector``'s own process (the embedded server's default) and one calling the ``mtcnn_*``
models through BLS (as the NGC image does; :mod:`fakescope.serving.detector_nets`), measured
by :mod:`fakescope.benchmarks.side_by_side`: the same frames to both, ``--runs`` interleaved
rounds after a warm-up. Per video and placement: the median wall seconds of the server call
(gRPC, frames through shared memory) and the mean of the server's CPU seconds per call
(tritonserver and its python stubs). Both placements must find the same faces, or the run fails.
Videos: the committed samples, the benchmark videos and, where present,
``../shared/data/dfdc_sample``.

Run: ``python -m fakescope.benchmarks.detector_nets`` (writes
``benchmarks/results/detector_nets.json`` and its table, ``detector_nets.md``).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from fakescope.benchmarks.arguments import check_runs
from fakescope.benchmarks.side_by_side import (
    Contender,
    add_arguments,
    describe_rounds,
    run_and_write,
    table_row,
)
from fakescope.paths import PROJECT_ROOT
from fakescope.serving.detector_nets import BLS, IN_PROCESS, PLACEMENTS

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "detector_nets.json"


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``detector_nets.json`` as a table."""
    method = result["method"]
    lines = [
        "# Where face_detector runs the MTCNN nets",
        "",
        f"Written by `python -m fakescope.benchmarks.detector_nets`; do not edit. Code "
        f"`{method['code_version']}`. The client's sample ({method['num_frames']} frames, long "
        f"side <= {method['max_side']}) sent to two embedded servers side by side, one call of "
        f"the ensemble over gRPC with shared memory; {describe_rounds(method)}, "
        f"seconds (call: median; server CPU: mean); load average before "
        f"{method['loadavg_before'][0]:.2f} on {method['cores']} cores. Both placements found "
        "the same faces in every video.",
        "",
        "| video | frames | faces | in process: call / server CPU | BLS: call / server CPU "
        "| in process vs BLS: call, CPU |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        table_row(row, (IN_PROCESS, BLS), "bls", faces=True, faults=False)
        for row in result["videos"]
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, result=RESULT, first_port=18500)
    args = parser.parse_args(argv)
    check_runs(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    contenders = {p: Contender(args.repository, detector_nets=p) for p in PLACEMENTS}
    run_and_write(
        args,
        contenders,
        (IN_PROCESS, BLS),
        render_markdown,
        suffix="bls",
        runtime_prefix="detector-nets",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
