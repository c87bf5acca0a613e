"""The command-line options and videos the in-process and side-by-side benchmarks share."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from fakescope.paths import BENCH_VIDEOS_DIR, PROJECT_ROOT

logger = logging.getLogger(__name__)

#: The labelled real DFDC videos beside the checkout, where the environment provides them.
DFDC_SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "dfdc_sample"
#: The DFDC face crops beside the checkout (training and validation), where provided.
DFDC_FACES = PROJECT_ROOT.parent / "shared" / "data" / "dfdc_faces"


def synthetic_videos(bench_dir: Path) -> list[Path]:
    """Return the committed samples and the benchmark videos (made in ``bench_dir`` if missing)."""
    from fakescope.benchmarks.videos import ensure_videos  # needs the bench extra

    return sorted((PROJECT_ROOT / "samples").glob("*.mp4")) + ensure_videos(bench_dir)


def default_videos(bench_dir: Path, shared: Path) -> list[Path]:
    """Return :func:`synthetic_videos` and, where present, the DFDC samples in ``shared``."""
    videos = synthetic_videos(bench_dir)
    if shared.is_dir():
        videos += sorted(shared.glob("*.mp4"))
    else:
        logger.warning("%s not found: measuring without real DFDC videos", shared)
    return videos


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--bench-videos`` and ``--dfdc-sample``, the folders :func:`default_videos` reads."""
    parser.add_argument("--bench-videos", type=Path, default=BENCH_VIDEOS_DIR)
    parser.add_argument("--dfdc-sample", type=Path, default=DFDC_SAMPLE)


def add_run_arguments(parser: argparse.ArgumentParser, *, runs: int, result: Path) -> None:
    """Add ``--runs`` (default ``runs``), ``--output`` (default ``result``) and the videos."""
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--output", type=Path, default=result)
    add_video_arguments(parser)


def check_runs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit through ``parser`` when ``--runs`` is below 1."""
    if args.runs < 1:
        parser.error("--runs must be at least 1")


def parse_run_arguments(
    parser: argparse.ArgumentParser, argv: list[str] | None, *, runs: int, result: Path
) -> argparse.Namespace:
    """Parse a measuring benchmark's command line and log its progress at INFO.

    Adds :func:`add_run_arguments` to ``parser`` (which may hold the benchmark's own options),
    parses ``argv`` and exits through ``parser`` when ``--runs`` is below 1
    (:func:`check_runs`).
    """
    add_run_arguments(parser, runs=runs, result=result)
    args = parser.parse_args(argv)
    check_runs(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args


def add_pause_arguments(
    parser: argparse.ArgumentParser, *, pauses: list[float], rounds: int = 15
) -> None:
    """Add ``--rounds`` and ``--pauses`` (seconds slept before each call, comma-separated)."""
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument(
        "--pauses",
        type=lambda s: [float(v) for v in s.split(",")],
        default=pauses,
        help="seconds slept before each call, comma-separated",
    )


def add_shared_memory_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--shared-memory on|off``: frames through system shared memory, or in the request.

    ``on`` is what a client on the server's host does; ``off`` is what a client on another
    host must do (the frames travel in the request body).
    """
    parser.add_argument(
        "--shared-memory",
        choices=("on", "off"),
        default="on",
        help="frames through system shared memory (client and server share this host), or in "
        "the request body (as from a client on another host)",
    )


def check_json_output(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit through ``parser`` unless ``--output`` names a ``.json`` result file."""
    if Path(args.output).suffix != ".json":
        parser.error("--output must name the .json result file")


def describe_transport(shared_memory: bool) -> str:
    """Say how a run's frames reached the server, as ``--shared-memory`` chose."""
    if shared_memory:
        return "frames through shared memory"
    return "frames in the request body, as from a client on another host"


def check_pauses(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit through ``parser`` when ``--rounds`` is below 1 or a pause is negative."""
    if args.rounds < 1 or not args.pauses or min(args.pauses) < 0:
        parser.error("--rounds must be at least 1 and --pauses non-negative")
