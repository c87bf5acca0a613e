"""The served model repository against an earlier commit's, side by side on the same frames.

What a change to the served models bought, measured in one run on one machine: one embedded
server serves ``--repository`` (this checkout's), the other the ``model_repository/`` of the
commit ``--before`` (taken from git), and :mod:`fakescope.benchmarks.side_by_side` sends both
the same frames: ``--runs`` interleaved rounds after a warm-up. Per video and server: the
median wall seconds of the call (gRPC, frames through shared memory), the mean server CPU
seconds and the median MiB faulted in per call. Both must find the same faces, or the run fails.

The earlier commit's python models import *this* checkout's ``fakescope`` package: a commit
whose models need another version of it cannot be compared this way (its server fails to
load, and the run stops with tritonserver's message). With ``--code`` the earlier server runs
that commit's package instead (its whole tree, taken from git, as the server's working
directory, where the python models look for modules first): what a change to the code the
server runs bought, such as the detector's.

Run: ``python -m fakescope.benchmarks.repository_ab --before <commit> [--code]`` (writes
``benchmarks/results/repository_ab.json`` and its table, ``repository_ab.md``).
"""

from __future__ import annotations

import argparse
import io
import logging
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from fakescope.benchmarks.arguments import check_runs
from fakescope.benchmarks.side_by_side import (
    BOX_TOLERANCE_PX,
    Contender,
    add_arguments,
    describe_rounds,
    run_and_write,
    table_row,
)
from fakescope.paths import PROJECT_ROOT

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "repository_ab.json"
THIS = "this"
BEFORE = "before"
#: The repository's folder in a commit's tree.
REPOSITORY_IN_GIT = "model_repository"


def resolve_commit(commit: str, root: Path = PROJECT_ROOT) -> str:
    """Return the full hash of ``commit``; raise ValueError when git does not know it."""
    found = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise ValueError(f"{commit!r} is not a commit of the git checkout at {root}")
    return found.stdout.strip()


def extract_repository(
    commit: str, target: Path, root: Path = PROJECT_ROOT, *, whole_tree: bool = False
) -> Path:
    """Write ``model_repository/`` as it is at ``commit`` under ``target``; return its path.

    ``whole_tree``: write the commit's whole tree (its ``fakescope`` package too), not only
    the repository.
    """
    paths = [] if whole_tree else [REPOSITORY_IN_GIT]
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", commit, *paths],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        message = archive.stderr.decode(errors="replace").strip()
        raise ValueError(f"commit {commit} has no {REPOSITORY_IN_GIT}/: {message}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    if not (target / REPOSITORY_IN_GIT).is_dir():
        raise ValueError(f"commit {commit} has no {REPOSITORY_IN_GIT}/")
    return target / REPOSITORY_IN_GIT


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``repository_ab.json`` as a table."""
    method = result["method"]
    before = method["before_commit"][:7]
    # results written before the option existed were checked at float rounding
    tolerance = method.get("box_tolerance_px", BOX_TOLERANCE_PX)
    ran_before = (
        f"`model_repository/` and the `fakescope` package of commit `{before}`"
        if method.get("before_code")
        else f"`model_repository/` of commit `{before}`, run by the same `fakescope` package"
    )
    lines = [
        "# The served repository against an earlier commit's",
        "",
        f"Written by `python -m fakescope.benchmarks.repository_ab`; do not edit. This: code "
        f"`{method['code_version']}`; before: {ran_before}. The client's sample "
        f"({method['num_frames']} frames, long side <= {method['max_side']}) sent to two "
        f"embedded servers side by side, one call of the ensemble over gRPC with shared "
        f"memory; {describe_rounds(method)}; call: median seconds, "
        f"server CPU: mean seconds, faulted in: median MiB per call over tritonserver and its "
        f"stubs; load average before {method['loadavg_before'][0]:.2f} on {method['cores']} "
        f"cores. Both found the same faces in every video, box coordinates at most "
        f"{tolerance:g} px apart "
        "(the largest difference per video in the result file).",
        "",
        f"| video | frames | faces | this: call / server CPU / faulted in | {before}: call / "
        f"server CPU / faulted in | this vs {before}: call, CPU |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        table_row(row, (THIS, BEFORE), "before", faces=True, faults=True)
        for row in result["videos"]
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file; exit 2 when ``--before`` is not a usable commit."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, result=RESULT, first_port=18800)
    parser.add_argument(
        "--before", required=True, help="the commit whose model_repository/ to compare with"
    )
    parser.add_argument(
        "--code",
        action="store_true",
        help="the earlier server runs the earlier commit's fakescope package too (a change to "
        "the code, not only to the repository)",
    )
    args = parser.parse_args(argv)
    check_runs(parser, args)
    try:
        before_commit = resolve_commit(args.before)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="fakescope-repository-ab-") as folder:
        try:
            earlier = extract_repository(before_commit, Path(folder), whole_tree=args.code)
        except ValueError as exc:
            parser.error(str(exc))
        # the earlier server's stubs import fakescope from its tree, before the venv's
        tree = earlier.parent if args.code else None
        run_and_write(
            args,
            {THIS: Contender(args.repository), BEFORE: Contender(earlier, working_dir=tree)},
            (THIS, BEFORE),
            render_markdown,
            suffix="before",
            runtime_prefix="repository-ab",
            method={"before_commit": before_commit, "before_code": args.code},
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
