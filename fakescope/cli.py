"""``fakescope`` — one command, several subcommands.

* ``fakescope serve``   run the embedded Triton on loopback until Ctrl-C / SIGTERM
* ``fakescope analyze`` analyze videos with a running server (see :mod:`fakescope.client.cli`)
* ``fakescope demo``    serve, analyze the bundled sample videos, stop
* ``fakescope export``  (re)build the ONNX models of the model repository (needs the train extra)

``--repository`` takes a folder or an S3 URL (``s3://HOST:PORT/BUCKET/PREFIX``; credentials from
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, see :mod:`fakescope.storage`): ``serve`` and
``demo`` hand it to tritonserver, ``export --checkpoint`` and ``rollback`` publish there
(``export --quantize``, the served classifier's int8 model, works on a folder).

Exit codes are those of :mod:`fakescope.client.cli` (0 ok, 2 usage, 3 unreadable input,
4 server unreachable, 5 server error), plus 6 when the server cannot start, and 130 when
``demo`` is interrupted (Ctrl-C); ``serve`` stopped by SIGINT or SIGTERM exits 0, while it
starts too.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from fakescope import contract
from fakescope.arguments import existing_file, frame_count, ipv4_address, port
from fakescope.benchmarks.run import add_bench_parser
from fakescope.client.analyze import DEFAULT_NUM_FRAMES
from fakescope.client.cli import EXIT_BAD_INPUT, add_analyze_parser
from fakescope.client.cli import main as analyze_main
from fakescope.client.frames import VideoReadError
from fakescope.extras import TRAINING_INSTALL_HINT, TRAINING_MODULES
from fakescope.paths import MODEL_REPOSITORY, PROJECT_ROOT
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress, ServerStartError
from fakescope.serving.repository_check import RepositoryError
from fakescope.serving.watchdog import DEFAULT_STALL_TIMEOUT_S
from fakescope.storage import S3Location, StorageError, is_s3_url, parse_s3_url
from fakescope.training.cli import add_training_parsers
from fakescope.web.cli import add_web_parsers

EXIT_SERVER_START = 6
#: Ctrl-C: the shell's code for a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130
#: ``export``/``rollback`` on S3: the storage refused or did not answer (nothing was switched).
EXIT_STORAGE = 4
#: A command needs the training extra, which is not installed.
EXIT_MISSING_DEPENDENCY = 2
DEFAULT_REPOSITORY = MODEL_REPOSITORY
SAMPLES_DIR = PROJECT_ROOT / "samples"


def repository_arg(text: str) -> Path | S3Location:
    """Parse ``--repository``: a folder, or an ``s3://`` URL (refused with its reason if bad)."""
    if not is_s3_url(text):
        return Path(text)
    try:
        return parse_s3_url(text)
    except StorageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def stall_timeout_arg(text: str) -> float:
    """Parse ``--stall-timeout``: seconds >= 0 (0 turns the watchdog off)."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not seconds >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 (off) or a positive number, got {text}")
    return seconds


REPOSITORY_HELP = "model repository: a folder or s3://HOST:PORT/BUCKET/PREFIX (default %(default)s)"


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repository", type=repository_arg, default=DEFAULT_REPOSITORY, help=REPOSITORY_HELP
    )
    parser.add_argument(
        "--host",
        type=ipv4_address,
        default=contract.DEFAULT_HOST,
        help="IPv4 address to bind (default loopback; anything else exposes the server: a warning)",
    )
    parser.add_argument("--http-port", type=port, default=contract.HTTP_PORT)
    parser.add_argument("--grpc-port", type=port, default=contract.GRPC_PORT)
    parser.add_argument("--metrics-port", type=port, default=contract.METRICS_PORT)


def _server(args: argparse.Namespace) -> EmbeddedTriton:

    address = ServerAddress(args.host, args.http_port, args.grpc_port, args.metrics_port)
    return EmbeddedTriton(args.repository, address)


class _SignalledWhileStartingError(Exception):
    """SIGINT or SIGTERM arrived while the server started (it is stopped on the way out)."""


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; exit non-zero if the server dies or cannot start."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _serve(_server(args), args)
    finally:  # a caller in the same process (a test, a script) gets its own handlers back
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _serve(server: EmbeddedTriton, args: argparse.Namespace) -> int:
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    def _stop_starting(signum: int, _frame: object) -> None:
        # Out of the start at once (a slow S3 endpoint or a slow model can hold it minutes);
        # a second signal, while the half-started server is stopped, only sets the flag.
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        raise _SignalledWhileStartingError(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, _stop_starting)
    signal.signal(signal.SIGINT, _stop_starting)
    try:
        server.start()
    except (ServerStartError, RepositoryError) as exc:
        print(f"fakescope: error: {exc}", file=sys.stderr)
        return EXIT_SERVER_START
    except _SignalledWhileStartingError as exc:
        print(f"FakeScope stopped while starting ({exc}).", flush=True)
        return 0
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    a = server.address
    pid = server.process.pid if server.process else "?"
    print(
        f"FakeScope (tritonserver pid {pid}) ready: HTTP http://{a.http_url}  gRPC {a.grpc_url}  "
        f"metrics http://{a.host}:{a.metrics_port}/metrics  (Ctrl-C stops)",
        flush=True,
    )
    try:
        gone = server.supervise(
            lambda: stopping, restart=args.restart, stall_timeout_s=args.stall_timeout
        )
    except (ServerStartError, RepositoryError) as exc:
        print(f"fakescope: error: restart failed: {exc}", file=sys.stderr)
        return EXIT_SERVER_START
    if gone is not None:
        what = (
            f"exited unexpectedly (code {gone.code})"
            if gone.stall is None
            else f"stalled: {gone.stall.describe()}; killed"
        )
        print(f"fakescope: error: tritonserver {what}; log: {server.log_path}", file=sys.stderr)
        return EXIT_SERVER_START
    server.stop()
    print("FakeScope stopped.", flush=True)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Start the server, analyze the bundled samples, print verdicts, stop."""
    videos = sorted(SAMPLES_DIR.glob("*.mp4"))
    if not videos:
        print(f"fakescope: error: no sample videos in {SAMPLES_DIR}", file=sys.stderr)
        return 3
    server = _server(args)
    try:
        server.start()
    except (ServerStartError, RepositoryError) as exc:
        print(f"fakescope: error: {exc}", file=sys.stderr)
        return EXIT_SERVER_START
    except KeyboardInterrupt:  # the half-started server was stopped on the way out
        print("fakescope: interrupted while the server started", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        a = server.address
        print(
            f"Triton ready at http://{a.http_url} (gRPC {a.grpc_url}); "
            f"analyzing {len(videos)} samples"
        )
        argv = [str(v) for v in videos] + ["--url", a.grpc_url, "--protocol", "grpc"]
        argv += ["--frames", str(args.frames)] + (["--json"] if args.json else [])
        return analyze_main(argv)
    except KeyboardInterrupt:
        print("fakescope: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        server.stop()


def run_export(args: argparse.Namespace) -> int:
    """Export a checkpoint as a new classifier version, or rebuild the placeholder models."""
    if args.framing_videos and not args.checkpoint:
        print("fakescope: error: --framing-videos needs --checkpoint", file=sys.stderr)
        return 2
    remote = isinstance(args.repository, S3Location)
    if args.quantize is not None:
        return _export_quantized(args, remote)
    if remote and not args.checkpoint:
        print(
            "fakescope: error: rebuilding the placeholder models works on a folder; "
            "give --checkpoint to publish a new classifier version to S3",
            file=sys.stderr,
        )
        return 2
    if args.checkpoint:
        from fakescope.export.classifier import CheckpointError
        from fakescope.export.versions import export_new_version

        if not remote and not (args.repository / contract.CLASSIFIER_MODEL).is_dir():
            print(
                f"fakescope: error: {args.repository} holds no {contract.CLASSIFIER_MODEL} "
                "model: not a FakeScope model repository",
                file=sys.stderr,
            )
            return 2
        try:
            if remote:
                from fakescope.export.s3_versions import export_to_s3

                version = export_to_s3(args.repository, args.checkpoint, args.framing_videos)
            else:
                version = export_new_version(args.repository, args.checkpoint, args.framing_videos)
        except CheckpointError as exc:  # unreadable, or weights that do not fit their arch
            print(f"fakescope: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except (ValueError, VideoReadError) as exc:  # framing video or framing
            print(f"fakescope: error: {exc}", file=sys.stderr)
            return 2
        except (StorageError, OSError) as exc:  # S3, or a local folder that cannot be written
            print(f"fakescope: error: {exc}", file=sys.stderr)
            return EXIT_STORAGE
        print(
            f"face_classifier version {version} written to {args.repository} (restart the server)"
        )
        return 0
    from fakescope.export.repository import build_repository

    build_repository(args.repository)
    print(f"model repository written to {args.repository}")
    return 0


def _export_quantized(args: argparse.Namespace, remote: bool) -> int:
    """``fakescope export --quantize DATA``: the served classifier's int8 model, if accepted."""
    if args.checkpoint:
        print("fakescope: error: give --checkpoint or --quantize, not both", file=sys.stderr)
        return 2
    if remote:
        print(
            "fakescope: error: --quantize works on a repository folder; publish the new "
            "version to S3 from there",
            file=sys.stderr,
        )
        return 2
    if not args.quantize.is_dir():
        print(f"fakescope: error: face-crop set not found: {args.quantize}", file=sys.stderr)
        return 2
    from fakescope.export.quantize import export_quantized_version

    try:
        version = export_quantized_version(args.repository, args.quantize)
    except (ValueError, FileNotFoundError) as exc:
        print(f"fakescope: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # built, judged and not accepted: nothing published
        print(f"fakescope: {exc}", file=sys.stderr)
        return 1
    print(
        f"face_classifier version {version} (int8) written to {args.repository} "
        "(restart the server)"
    )
    return 0


def run_model_card(args: argparse.Namespace) -> int:
    """Render a classifier version's model card again from its metadata and results."""
    from fakescope.export.versions import list_versions, render_card

    if args.version not in list_versions(args.repository):
        print(f"fakescope: error: no face_classifier version {args.version}", file=sys.stderr)
        return 2
    if args.results is not None and not args.results.is_dir():
        print(f"fakescope: error: results folder not found: {args.results}", file=sys.stderr)
        return 3
    try:
        card = render_card(args.repository, args.version, args.results, PROJECT_ROOT)
    except FileNotFoundError as exc:
        print(f"fakescope: error: {exc}", file=sys.stderr)
        return 3
    print(f"model card written: {card}")
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    """Retire the served classifier version; the highest earlier one with a model is served."""
    from fakescope.export.versions import rollback  # torch-backed: the train extra

    remote = isinstance(args.repository, S3Location)
    if remote != isinstance(args.retired_dir, S3Location) and args.retired_dir is not None:
        print(
            "fakescope: error: --retired-dir must be on the same kind of storage as "
            "--repository (both folders, or both s3:// URLs)",
            file=sys.stderr,
        )
        return 2
    try:
        if remote:
            from fakescope.export.s3_versions import rollback_on_s3

            version = rollback_on_s3(args.repository, args.retired_dir)
        else:
            version = rollback(args.repository, args.retired_dir)
    except ValueError as exc:
        print(f"fakescope: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:  # e.g. the config pins a version that has no files
        print(f"fakescope: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (StorageError, OSError) as exc:  # S3, or a folder that cannot be written
        print(f"fakescope: error: {exc}", file=sys.stderr)
        return EXIT_STORAGE
    print(f"face_classifier now serves version {version} (restart the server to load it)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the ``fakescope`` argument parser."""
    parser = argparse.ArgumentParser(prog="fakescope", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the embedded Triton server")
    _add_server_options(serve)
    serve.add_argument(
        "--restart",
        action="store_true",
        help="restart tritonserver if it dies or stalls (default: exit non-zero with a message)",
    )
    serve.add_argument(
        "--stall-timeout",
        type=stall_timeout_arg,
        default=DEFAULT_STALL_TIMEOUT_S,
        metavar="SECONDS",
        help="kill tritonserver when a model has had requests waiting this long while "
        "finishing none (its Prometheus metrics, read every few seconds; a hang its health "
        "endpoints do not show); then restart with --restart, else exit 6. 0 turns this off "
        "(default %(default)s)",
    )
    serve.set_defaults(func=run_serve)

    add_analyze_parser(sub)
    add_training_parsers(sub)
    add_web_parsers(sub)

    demo = sub.add_parser("demo", help="serve, analyze the bundled samples, stop")
    _add_server_options(demo)
    demo.add_argument("--frames", type=frame_count, default=DEFAULT_NUM_FRAMES)
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=run_demo)

    add_bench_parser(sub)

    export = sub.add_parser(
        "export", help="new classifier version from a checkpoint, or rebuild the ONNX models"
    )
    export.add_argument(
        "--repository", type=repository_arg, default=DEFAULT_REPOSITORY, help=REPOSITORY_HELP
    )
    export.add_argument("--checkpoint", type=existing_file, help="a training checkpoint (.pt)")
    export.add_argument(
        "--framing-videos",
        type=existing_file,
        nargs="+",
        default=(),
        metavar="VIDEO",
        help="real-face videos (not those you test on) to calibrate the served crop framing "
        "of a checkpoint trained on face crops",
    )
    export.add_argument(
        "--quantize",
        type=Path,
        metavar="FACE_CROPS",
        help="publish the served classifier's int8 model as the next version, built and judged "
        "on the face-crop set it was trained on (published only if AUC and LogLoss on its "
        "validation faces keep the float model's (fakescope.export.quantize.TOLERANCE))",
    )
    export.set_defaults(func=run_export)

    card = sub.add_parser(
        "model-card", help="write a classifier version's model card from its metadata + results"
    )
    card.add_argument("version", type=int, help="face_classifier version")
    card.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    card.add_argument(
        "--results",
        type=Path,
        default=None,
        help="folder of `fakescope evaluate` reports (*/metrics.json) of this version",
    )
    card.set_defaults(func=run_model_card)

    rollback = sub.add_parser("rollback", help="serve the previous classifier version")
    rollback.add_argument(
        "--repository", type=repository_arg, default=DEFAULT_REPOSITORY, help=REPOSITORY_HELP
    )
    rollback.add_argument(
        "--retired-dir",
        type=repository_arg,
        default=None,
        help="where the retired version goes (default .fakescope/retired beside the "
        "repository; an s3:// URL for a repository on S3)",
    )
    rollback.set_defaults(func=run_rollback)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fakescope`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in TRAINING_MODULES:
            raise
        print(
            f"fakescope: error: `fakescope {args.command}` needs module {missing!r}: "
            f"{TRAINING_INSTALL_HINT}",
            file=sys.stderr,
        )
        return EXIT_MISSING_DEPENDENCY


if __name__ == "__main__":
    sys.exit(main())
