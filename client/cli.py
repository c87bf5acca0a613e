"""The ``analyze`` subcommand: ``fakescope analyze VIDEO... [options]``.

Mounted by the top-level CLI with :func:`add_analyze_parser` (it sets ``func=run_analyze`` as
the parser default); also runnable alone as ``python -m fakescope.client.cli VIDEO...``.

Output: one block per video on stdout (label, probability, frames, faces, processing time,
ratio), followed by a ``WARNING`` line whenever the server's classifier is untrained; after
the verdicts, one ``note:`` line with the limitations the served classifier states (config
parameter ``limitations``, from its ONNX metadata), if it states any. Each block has a
``content credentials:`` line: what the video's C2PA manifest says, read beside the verdict and
never blended into its probability (:mod:`fakescope.client.content_credentials`; trusted
signers come from ``--trust-anchors PEM`` only). With ``--json``, one JSON object per video per
line on stdout (no NaN: ``null``; the limitations are the ``model_limitations`` field, the
credentials the ``content_credentials`` object). Errors go to stderr
as one line each, ``fakescope: error: <video>: <message>``, and the remaining videos are still
processed. A tqdm progress bar is drawn on stderr when there is more than one video and stderr
is a terminal.

``--jobs N`` analyses up to ``N`` videos at once, each in a worker thread with its own
:class:`~fakescope.client.triton.DetectorClient` (tritonclient's HTTP client is not
thread-safe, and each keeps its own shared-memory region): one video's decode, which is most of
the time on real video, runs while the server works on another's frames. The output is the
same, in the order the videos were given, whatever ``N``, except that the videos now wait for
each other at the server: a short one may be answered past its limit (half its duration), or
refused and reported as a server error, as under any other load. Hence one job by default. An
interrupt starts no further video; the ones in progress finish first (each within
``--timeout``).

Exit codes (module constants):

* ``0`` (:data:`EXIT_OK`) — every video analysed (a ``NO_FACE`` verdict is a success);
* ``2`` (:data:`EXIT_USAGE`) — usage error (argparse: bad option, ``--frames`` outside
  ``1..MAX_FRAMES_PER_REQUEST``, …);
* ``3`` (:data:`EXIT_BAD_INPUT`) — an input video could not be read;
* ``4`` (:data:`EXIT_UNREACHABLE`) — the server could not be reached (refused / timed out);
* ``5`` (:data:`EXIT_SERVER_ERROR`) — the server answered with an error.

With several failures the exit code is the **worst** one, i.e. the highest (5 > 4 > 3): a
server-side failure outranks an unreadable input because it can affect every video, while an
unreadable input affects only itself.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import queue
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from tqdm import tqdm

from fakescope import contract
from fakescope.allocator import set_up_memory
from fakescope.arguments import frame_count, positive_int, positive_number
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES, analyze
from fakescope.client.content_credentials import (
    JSON_FIELD,
    ContentCredentials,
    TrustAnchorsError,
    load_trust_anchors,
    read_content_credentials,
)
from fakescope.client.frames import VideoReadError
from fakescope.client.triton import (
    CALL_TIMEOUT_S,
    DEFAULT_URLS,
    SHARED_MEMORY_CHOICES,
    DetectorClient,
    ServerError,
    ServerUnreachableError,
)
from fakescope.client.verdict import LABEL_NO_FACE, Verdict
from fakescope.contract import MIN_FRAME_SIDE

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_OK",
    "EXIT_SERVER_ERROR",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "add_analyze_parser",
    "build_parser",
    "format_credentials",
    "format_verdict",
    "main",
    "run_analyze",
]

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
EXIT_BAD_INPUT: Final = 3
EXIT_UNREACHABLE: Final = 4
EXIT_SERVER_ERROR: Final = 5

PROG: Final = "fakescope"
#: Starts the one line, after the verdicts, that repeats the served model's stated limitations.
LIMITATIONS_PREFIX: Final = "note: the served classifier states its limitations: "
#: Videos analysed at once (``--jobs``). One: each video has the server to itself for its whole
#: budget. With more, a user's own videos wait for each other at the server, and a short one may
#: be answered past its limit or refused (exit 5), as under any load; what more jobs buy and cost:
#: ``python -m fakescope.benchmarks.analyze_jobs`` (``benchmarks/results/*/analyze_jobs.md``).
DEFAULT_JOBS: Final = 1

_DESCRIPTION: Final = (
    "Sample frames from each VIDEO, send them to the deepfake_detector ensemble on a Triton "
    "server and print a verdict per video."
)
_EPILOG: Final = (
    "exit codes: 0 ok (NO_FACE included), 2 usage error, 3 unreadable input video, "
    "4 server unreachable, 5 server error; with several failures, the highest."
)


def _max_side(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0 or 0 < value < MIN_FRAME_SIDE:
        raise argparse.ArgumentTypeError(
            f"must be 0 (no downscaling) or >= {MIN_FRAME_SIDE}, got {value}"
        )
    return value or None


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _trust_anchors(text: str) -> str:
    try:
        return load_trust_anchors(text)
    except TrustAnchorsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video file(s) to analyse")
    parser.add_argument(
        "--url",
        default=None,
        help=f"Triton server host:port (default {DEFAULT_URLS['grpc']} for grpc, "
        f"{DEFAULT_URLS['http']} for http)",
    )
    parser.add_argument(
        "--protocol",
        choices=("http", "grpc"),
        default="grpc",
        help="KServe v2 protocol (default: grpc)",
    )
    parser.add_argument(
        "--frames",
        type=frame_count,
        default=DEFAULT_NUM_FRAMES,
        metavar="N",
        help=f"frames sampled per video, 1..{contract.MAX_FRAMES_PER_REQUEST} "
        f"(default: {DEFAULT_NUM_FRAMES})",
    )
    parser.add_argument(
        "--max-side",
        type=_max_side,
        default=DEFAULT_MAX_SIDE,
        metavar="PX",
        help=f"downscale frames so the long side is at most PX (>= {MIN_FRAME_SIDE}) before "
        f"sending; 0: never (default: {DEFAULT_MAX_SIDE})",
    )
    parser.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        metavar="T",
        help="fake probability at or above which a video is FAKE (default: the served "
        "classifier's own threshold, calibrated on validation)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_number,
        default=CALL_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for the server per call (default: {CALL_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=DEFAULT_JOBS,
        metavar="N",
        help="videos analysed at once, each decoded while the server works on another; the "
        "output keeps the order given; the videos then wait for each other at the server, and "
        "a short one may be answered past its limit or refused (default: "
        f"{DEFAULT_JOBS})",
    )
    parser.add_argument(
        "--shared-memory",
        choices=tuple(SHARED_MEMORY_CHOICES),
        default="auto",
        help="send frames through system shared memory (auto: when the server is on loopback)",
    )
    parser.add_argument(
        "--trust-anchors",
        type=_trust_anchors,
        default=None,
        metavar="PEM",
        help="PEM file of the root certificates whose Content Credentials (C2PA) signers you "
        "trust (default: none, so a valid signature is reported as 'signed, signer not on "
        "your trust list')",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per video per line instead of text",
    )


def add_analyze_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``analyze`` subcommand to ``subparsers`` (from ``add_subparsers()``).

    The subparser gets ``func=run_analyze`` as a default, so a top-level CLI can dispatch with
    ``return args.func(args)``.
    """
    parser = subparsers.add_parser(
        "analyze",
        help="analyse video files for deepfaked faces",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    _configure(parser)
    parser.set_defaults(func=run_analyze)


def build_parser() -> argparse.ArgumentParser:
    """Build a standalone parser for ``python -m fakescope.client.cli VIDEO...``."""
    parser = argparse.ArgumentParser(
        prog=f"{PROG} analyze", description=_DESCRIPTION, epilog=_EPILOG
    )
    _configure(parser)
    return parser


def format_verdict(verdict: Verdict) -> str:
    """Format one verdict for humans: one line, plus a warning line if untrained."""
    if verdict.label == LABEL_NO_FACE or verdict.fake_probability is None:
        probability = "n/a"
    else:
        probability = f"{verdict.fake_probability:.3f}"
    ratio = "n/a" if verdict.ratio is None else f"{verdict.ratio:.2f}"
    line = (
        f"{verdict.video}: {verdict.label}  fake_probability={probability}  "
        f"frames={verdict.frames}  faces={verdict.faces}  "
        f"time={verdict.processing_seconds:.2f}s  ratio={ratio} "
        f"(of {verdict.duration_seconds:.2f}s video)"
    )
    if verdict.warning:
        line += f"\n  {verdict.warning}"
    return line


def format_credentials(credentials: ContentCredentials) -> str:
    """Format a video's Content Credentials as the indented line under its verdict."""
    return f"  content credentials: {credentials.one_line()}"


def _error(video: str, message: str) -> None:
    tqdm.write(f"{PROG}: error: {video}: {' '.join(message.split())}", file=sys.stderr)
    sys.stderr.flush()


@dataclass(frozen=True)
class _Outcome:
    """What analysing one video printed: its exit code and its block, or its error."""

    code: int
    text: str | None = None
    error: str | None = None
    #: the served classifier's limitations, as the client that answered read them
    limitations: str | None = None


def run_analyze(args: argparse.Namespace) -> int:
    """Analyse every ``args.videos``; print verdicts/errors; return the exit code."""
    # FFmpeg inside OpenCV prints its own multi-line complaints about broken files; our error
    # line says it once. Effective only before the first capture in this process; an explicit
    # OPENCV_FFMPEG_LOGLEVEL in the environment wins.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    # A POSIX file name is bytes, not always UTF-8: printed escaped (as stderr does), rather
    # than an encoding error that loses every verdict after it.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    # Every video is decoded into a new array (44 MB for 16 frames of 720p): with several
    # videos, each reuses the memory of one before it rather than mapping it afresh; the first
    # is faulted in with small pages, which spares it the kernel's wait for huge ones
    # (fakescope/allocator.py).
    set_up_memory()
    worst = EXIT_OK
    limitations: str | None = None
    show_bar = len(args.videos) > 1 and sys.stderr.isatty()
    try:
        with (
            _clients(args, min(args.jobs, len(args.videos))) as idle,
            ThreadPoolExecutor(max_workers=idle.qsize()) as pool,
            tqdm(
                total=len(args.videos),
                file=sys.stderr,
                disable=not show_bar,
                unit="video",
                leave=False,
            ) as bar,
        ):

            def analyze_with_an_idle_client(video: str) -> _Outcome:
                client = idle.get()  # one per worker thread: never waits
                try:
                    return _analyze_one(video, client, args)
                finally:
                    idle.put(client)

            outcomes = [pool.submit(analyze_with_an_idle_client, video) for video in args.videos]
            try:
                for video, outcome in zip(args.videos, outcomes, strict=True):
                    done = outcome.result()  # in the order given, whichever finished first
                    if done.error is not None:
                        _error(video, done.error)
                    if done.text is not None:
                        tqdm.write(done.text, file=sys.stdout)
                        sys.stdout.flush()
                    worst = max(worst, done.code)
                    limitations = limitations or done.limitations
                    bar.update(1)
            finally:  # on an interrupt, start no further video
                pool.shutdown(cancel_futures=True)
        if limitations:
            # once per run, after the verdicts (JSON carries it in each verdict)
            tqdm.write(f"{LIMITATIONS_PREFIX}{limitations}", file=sys.stdout)
    except _BadUrlError as exc:
        tqdm.write(f"{PROG}: error: --url {args.url!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return worst


class _BadUrlError(Exception):
    """``--url`` cannot make a client (raised before any video is read)."""


@contextmanager
def _clients(args: argparse.Namespace, count: int) -> Iterator[queue.SimpleQueue[DetectorClient]]:
    """``count`` clients of the server ``args`` name, in a queue; all closed on leaving."""
    made: list[DetectorClient] = []
    try:
        for _ in range(count):
            made.append(
                DetectorClient(
                    args.url,
                    args.protocol,
                    timeout_s=args.timeout,
                    shared_memory=SHARED_MEMORY_CHOICES[args.shared_memory],
                )
            )
    except (ValueError, OSError) as exc:
        for client in made:
            client.close()
        raise _BadUrlError(str(exc)) from exc
    idle: queue.SimpleQueue[DetectorClient] = queue.SimpleQueue()
    for client in made:
        idle.put(client)
    try:
        yield idle
    finally:
        for client in made:
            client.close()


def _analyze_one(video: str, client: DetectorClient, args: argparse.Namespace) -> _Outcome:
    try:
        verdict = analyze(
            video,
            client=client,
            num_frames=args.frames,
            max_side=args.max_side,
            threshold=args.threshold,
        )
    except VideoReadError as exc:
        return _Outcome(EXIT_BAD_INPUT, error=exc.detail)
    except ServerUnreachableError as exc:
        return _Outcome(EXIT_UNREACHABLE, error=str(exc))
    except ServerError as exc:
        return _Outcome(EXIT_SERVER_ERROR, error=str(exc))
    # Read beside the verdict, after it: evidence of its own, never part of the probability.
    credentials = read_content_credentials(video, args.trust_anchors)
    if args.json:
        fields = {**verdict.to_json_dict(), JSON_FIELD: credentials.to_dict()}
        return _Outcome(EXIT_OK, text=json.dumps(fields, allow_nan=False))
    return _Outcome(
        EXIT_OK,
        text=f"{format_verdict(verdict)}\n{format_credentials(credentials)}",
        limitations=client.model_facts().limitations,  # read for the verdict: no call
    )


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: parse ``argv`` and run; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(levelname)s: %(message)s")
    return run_analyze(args)


if __name__ == "__main__":
    sys.exit(main())
