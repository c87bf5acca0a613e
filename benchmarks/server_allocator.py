"""The server's allocator: freed memory kept for the next request against glibc's defaults.

Two embedded servers serve the same repository side by side: one started with
``GLIBC_TUNABLES`` set to :data:`fakescope.allocator.KEEP_FREED_MEMORY`, one with
glibc's defaults (``GLIBC_TUNABLES`` empty, as the embedded server starts), measured by
:mod:`fakescope.benchmarks.side_by_side`: the same frames to both, one warm-up each, then
``--runs`` interleaved rounds, the two leading in turn, with a pause before each call as between
a user's videos. Per video and server: the median wall seconds of the call (gRPC, frames
through shared memory), the mean server CPU seconds and the median MiB the server's processes
faulted in per call (tritonserver and its python stubs). Both must find the same faces, or the
run fails.

Run: ``python -m fakescope.benchmarks.server_allocator`` (writes
``benchmarks/results/server_allocator.json`` and its table, ``server_allocator.md``).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from fakescope.allocator import KEEP_FREED_MEMORY, TUNABLES_ENV
from fakescope.arguments import non_negative_number
from fakescope.benchmarks.arguments import check_runs
from fakescope.benchmarks.side_by_side import (
    Contender,
    add_arguments,
    describe_rounds,
    run_and_write,
    table_row,
)
from fakescope.paths import PROJECT_ROOT

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "server_allocator.json"
KEPT = "kept"
GLIBC_DEFAULT = "glibc_default"
#: The value of ``GLIBC_TUNABLES`` each server starts with ("": glibc's defaults).
TUNABLES = {KEPT: KEEP_FREED_MEMORY, GLIBC_DEFAULT: ""}


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``server_allocator.json`` as a table."""
    method = result["method"]
    lines = [
        "# The server's allocator: freed memory kept, or glibc's defaults",
        "",
        f"Written by `python -m fakescope.benchmarks.server_allocator`; do not edit. Code "
        f"`{method['code_version']}`. The client's sample ({method['num_frames']} frames, long "
        f"side <= {method['max_side']}) sent to two embedded servers side by side, one call of "
        f"the ensemble over gRPC with shared memory; {describe_rounds(method)}; call: median "
        f"seconds, server CPU: mean seconds, "
        f"faulted in: median MiB per call over tritonserver and its stubs; load average before "
        f"{method['loadavg_before'][0]:.2f} on {method['cores']} cores. Kept: "
        f"`{TUNABLES_ENV}={method['tunables'][KEPT]}`. Both found the same faces in every video.",
        "",
        "| video | frames | kept: call / server CPU / faulted in | glibc defaults: call / "
        "server CPU / faulted in | kept vs defaults: call, CPU |",
        "|---|---|---|---|---|",
    ]
    lines += [
        table_row(row, (KEPT, GLIBC_DEFAULT), "default", faces=False, faults=True)
        for row in result["videos"]
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, result=RESULT, first_port=18600)
    parser.add_argument(
        "--pause", type=non_negative_number, default=1.0, help="seconds before each timed call"
    )
    args = parser.parse_args(argv)
    check_runs(parser, args)
    if args.pause < 0:
        parser.error("--pause must be 0 or more")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    contenders = {
        name: Contender(args.repository, environment={TUNABLES_ENV: value})
        for name, value in TUNABLES.items()
    }
    run_and_write(
        args,
        contenders,
        (KEPT, GLIBC_DEFAULT),
        render_markdown,
        suffix="default",
        runtime_prefix="allocator",
        pause_s=args.pause,
        method={"pause_s": args.pause, "tunables": TUNABLES},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
