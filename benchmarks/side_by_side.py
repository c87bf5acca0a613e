"""Two embedded servers side by side, sent the same frames in interleaved rounds.

The harness of the benchmarks that compare two ways of serving on one machine in one run
(:mod:`~fakescope.benchmarks.detector_nets`, :mod:`~fakescope.benchmarks.server_allocator`,
:mod:`~fakescope.benchmarks.repository_ab`): each :class:`Contender` is an embedded tritonserver
of its own (its repository, its detector-net placement, its environment); each video is decoded
once (the client's sample) and its frames go to every server, one warm-up each, then ``runs``
rounds in which every server answers once, so a change in the machine's load spreads over all
of them. The two lead in turn (:class:`~fakescope.benchmarks.turns.PairLeads`), and the pause,
where a benchmark asks for one, comes before each call: a call straight after a pause or after
the other server's is timed under other conditions, and neither server may always take them
(:func:`timed_rounds`). Per video and server: the median wall seconds of the call (gRPC, frames
through shared memory), the mean server CPU seconds and the median MiB faulted in per call
(tritonserver and its python stubs). Both servers must find the same faces, boxes within
``--box-tolerance-px`` (float rounding only, unless a run says otherwise), or the run fails.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fakescope.arguments import port
from fakescope.benchmarks.arguments import add_run_arguments, default_videos
from fakescope.benchmarks.result_files import code_version, write_result
from fakescope.benchmarks.service_times import (
    process_group_cpu_seconds,
    process_group_minor_faults,
)
from fakescope.benchmarks.turns import PairLeads
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES
from fakescope.client.triton import DetectorClient, RawResult
from fakescope.client.video import sample_frames
from fakescope.paths import MODEL_REPOSITORY, PROJECT_ROOT
from fakescope.serving.detector_nets import IN_PROCESS, NetsPlacement
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress

logger = logging.getLogger(__name__)

#: Box coordinates of two servers may differ by float rounding only (pixels).
BOX_TOLERANCE_PX = 1e-2
#: Ports each server takes (HTTP, gRPC, metrics), from ``--first-port`` on.
PORTS_PER_SERVER = 3
_MIB = 1024 * 1024
#: The ``method`` key of a result whose rounds :func:`timed_rounds` timed: the two servers lead
#: in turn, each call after the pause. Results from before ran the same server first in every
#: round, straight after the round's pause.
LEADS_IN_TURN = "leads_in_turn"
#: One timed call of a server: wall seconds, the server's CPU seconds, MiB it faulted in.
Timing = tuple[float, float, float]


@dataclass(frozen=True)
class Contender:
    """One way of serving: the repository, where the detector's nets run, extra environment.

    ``working_dir``: the server's working directory, where its python models find modules first
    (``None``: this process's).
    """

    repository: Path
    detector_nets: NetsPlacement = IN_PROCESS  # the embedded server's default
    environment: Mapping[str, str] = field(default_factory=dict)
    working_dir: Path | None = None


def timed_infer(
    client: DetectorClient, server: EmbeddedTriton, frames: NDArray[np.uint8], duration: float
) -> tuple[RawResult, float, float]:
    """Send ``frames`` once; return the answer, wall seconds and the server's CPU seconds."""
    assert server.process is not None
    cpu = process_group_cpu_seconds(server.process.pid)
    start = time.perf_counter()
    answer = client.infer(frames, duration_seconds=duration)
    wall = time.perf_counter() - start
    return answer, wall, process_group_cpu_seconds(server.process.pid) - cpu


def timed_call(
    client: DetectorClient, server: EmbeddedTriton, frames: NDArray[np.uint8], duration: float
) -> Timing:
    """Send ``frames`` once; return wall and server CPU seconds and the MiB the server faulted in.

    The faults are the minor page faults of the server's process group (tritonserver and its
    python stubs) during the call.
    """
    assert server.process is not None
    faults = process_group_minor_faults(server.process.pid)
    _, wall, cpu = timed_infer(client, server, frames, duration)
    faults = process_group_minor_faults(server.process.pid) - faults
    return wall, cpu, faults * resource.getpagesize() / _MIB


def check_same_faces(
    video: str, here: RawResult, there: RawResult, tolerance_px: float = BOX_TOLERANCE_PX
) -> float:
    """Return the largest box difference (pixels) of two servers' answers for ``video``.

    Raises RuntimeError when they hold different faces: another count, another frame, or a box
    coordinate more than ``tolerance_px`` apart.
    """
    if here.face_boxes.shape != there.face_boxes.shape or not np.array_equal(
        here.face_boxes[:, 0], there.face_boxes[:, 0]
    ):
        raise RuntimeError(f"{video}: the two servers found different faces")
    if len(here.face_boxes) == 0:
        return 0.0
    largest = float(np.max(np.abs(here.face_boxes[:, 1:5] - there.face_boxes[:, 1:5])))
    if not largest <= tolerance_px:
        raise RuntimeError(
            f"{video}: the two servers found different faces (a box {largest:.3g} px apart, "
            f"more than {tolerance_px:g})"
        )
    return largest


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Run the block with ``values`` set in this process's environment (a server inherits it)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def consecutive_addresses(first_port: int, count: int) -> list[ServerAddress]:
    """Return loopback addresses of ``count`` servers, ``PORTS_PER_SERVER`` ports each."""
    return [
        ServerAddress(
            "127.0.0.1",
            *range(first_port + PORTS_PER_SERVER * i, first_port + PORTS_PER_SERVER * (i + 1)),
        )
        for i in range(count)
    ]


@contextlib.contextmanager
def running_side_by_side(
    contenders: Mapping[str, Contender], addresses: Sequence[ServerAddress], runtime_prefix: str
) -> Iterator[dict[str, EmbeddedTriton]]:
    """Start one embedded server per contender, at its address; stop them all afterwards."""
    if len(addresses) != len(contenders):
        raise ValueError(
            f"{len(contenders)} contenders need as many addresses, got {len(addresses)}"
        )
    servers = {
        name: EmbeddedTriton(
            contender.repository,
            address,
            runtime_dir=PROJECT_ROOT / ".fakescope" / f"runtime-{runtime_prefix}-{name}",
            detector_nets=contender.detector_nets,
            working_dir=contender.working_dir,
        )
        for (name, contender), address in zip(contenders.items(), addresses, strict=True)
    }
    try:
        for name, server in servers.items():
            with _environment(contenders[name].environment):
                server.start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def timed_rounds(
    pair: tuple[str, str],
    video: str,
    runs: int,
    call: Callable[[str], Timing],
    pause: Callable[[], None],
) -> dict[str, list[Timing]]:
    """Time ``runs`` rounds of one video on the two servers of ``pair``; each one's timings.

    ``call(name)`` times one call of that server; ``pause()`` comes before every call, so each
    one follows the same pause, not just a round's first. The two lead in turn, balanced over
    the server that ran just before (:class:`~fakescope.benchmarks.turns.PairLeads`; the
    warm-up ran ``pair`` in its order, the second last).
    """
    leads = PairLeads(pair)
    previous = pair[1]
    timings: dict[str, list[Timing]] = {name: [] for name in pair}
    for _ in range(runs):
        for name in leads.order(list(pair), video, previous):
            pause()
            timings[name].append(call(name))
            previous = name
    return timings


def measure(
    videos: list[Path],
    servers: Mapping[str, EmbeddedTriton],
    runs: int,
    pause_s: float = 0.0,
    box_tolerance_px: float = BOX_TOLERANCE_PX,
) -> list[dict[str, Any]]:
    """Per video: its size, its faces, and per server the call, server CPU and faults.

    ``servers``: the two compared, timed in rounds (:func:`timed_rounds`). ``pause_s`` is
    slept before each timed call, as between one user's videos; the servers' boxes may differ
    by ``box_tolerance_px`` (:func:`check_same_faces`).

    Raises:
        ValueError: ``servers`` are not two.
        RuntimeError: the servers found different faces.

    """
    if len(servers) != 2:
        raise ValueError(f"side by side compares two servers, got {len(servers)}")
    first, second = servers
    clients = {
        name: DetectorClient(s.address.grpc_url, "grpc", shared_memory=True, timeout_s=120)
        for name, s in servers.items()
    }
    rows = []
    try:
        for video in videos:
            sampled = sample_frames(video, DEFAULT_NUM_FRAMES, DEFAULT_MAX_SIDE)
            frames, duration = sampled.frames, sampled.duration_seconds
            answers = [
                timed_infer(clients[name], servers[name], frames, duration)[0] for name in servers
            ]  # the warm-up
            box_difference = max(
                [0.0]
                + [
                    check_same_faces(video.name, answers[0], other, box_tolerance_px)
                    for other in answers[1:]
                ]
            )
            timings = timed_rounds(
                (first, second),
                video.name,
                runs,
                lambda name, frames=frames, duration=duration: timed_call(
                    clients[name], servers[name], frames, duration
                ),
                lambda: time.sleep(pause_s),
            )
            row: dict[str, Any] = {
                "video": video.name,
                "size": list(sampled.frame_size),
                "faces": len(answers[0].face_scores),
                "largest_box_difference_px": box_difference,
            }
            for name, timed in timings.items():
                walls, cpus, faulted = zip(*timed, strict=True)
                row[name] = {
                    "wall_s": statistics.median(walls),
                    # the mean: /proc counts CPU time in ticks of 10 ms, a median stays on them
                    "server_cpu_s": statistics.mean(cpus),
                    "faulted_mib": statistics.median(faulted),
                }
            logger.info("%s: %s", video.name, row)
            rows.append(row)
    finally:
        for client in clients.values():
            client.close()
    return rows


def describe_rounds(method: Mapping[str, Any]) -> str:
    """Return how a result's timed rounds ran, for its table (``method``: the result's).

    E.g. ``7 interleaved runs after a warm-up, the two servers leading in turn, each call after
    a 1.0 s pause``; a result from before :data:`LEADS_IN_TURN` says what it did then.
    """
    text = f"{method['runs']} interleaved runs after a warm-up"
    pause = method.get("pause_s")
    if not method.get(LEADS_IN_TURN):
        return text + (f", {pause} s apart" if pause is not None else "")
    text += ", the two servers leading in turn"
    return text + (f", each call after a {pause} s pause" if pause else "")


def add_ratios(rows: list[dict[str, Any]], this: str, other: str, suffix: str) -> None:
    """Add ``wall_vs_<suffix>`` and ``cpu_vs_<suffix>`` (``this`` over ``other``) to each row."""
    for row in rows:
        row[f"wall_vs_{suffix}"] = row[this]["wall_s"] / row[other]["wall_s"]
        row[f"cpu_vs_{suffix}"] = row[this]["server_cpu_s"] / row[other]["server_cpu_s"]


def table_row(
    row: dict[str, Any], names: tuple[str, str], suffix: str, *, faces: bool, faults: bool
) -> str:
    """Render one video of a result as a Markdown row.

    Video, frame size, the faces when ``faces``, each server's ``call / server CPU`` (and
    ``/ faulted in`` when ``faults``), then the ratios :func:`add_ratios` added with ``suffix``.
    """
    cells = [row["video"], "x".join(str(v) for v in row["size"])]
    if faces:
        cells.append(str(row["faces"]))
    for name in names:
        cell = f"{row[name]['wall_s']:.3f} / {row[name]['server_cpu_s']:.3f}"
        cells.append(cell + (f" / {row[name]['faulted_mib']:.0f}" if faults else ""))
    cells.append(f"{row[f'wall_vs_{suffix}']:.2f}x, {row[f'cpu_vs_{suffix}']:.2f}x")
    return f"| {' | '.join(cells)} |"


def _pixels(text: str) -> float:
    """Parse a distance in pixels: a finite number >= 0 (argparse ``type``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of pixels: {text!r}") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser, *, result: Path, first_port: int) -> None:
    """Add the options every side-by-side benchmark has: runs, output, repository, ports, videos."""
    add_run_arguments(parser, runs=7, result=result)
    parser.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument(
        "--first-port",
        type=port,
        default=first_port,
        help=f"{PORTS_PER_SERVER} ports per server from here",
    )
    parser.add_argument(
        "--box-tolerance-px",
        type=_pixels,
        default=BOX_TOLERANCE_PX,
        help="how far apart two servers' box coordinates may lie and still be the same faces "
        "(default: float rounding only; a change of the models' arithmetic can move a box by "
        "a few pixels)",
    )


def run_and_write(
    args: argparse.Namespace,
    contenders: Mapping[str, Contender],
    compared: tuple[str, str],
    render: Callable[[dict[str, Any]], str],
    *,
    suffix: str,
    runtime_prefix: str,
    pause_s: float = 0.0,
    method: Mapping[str, Any] | None = None,
) -> None:
    """Measure ``contenders`` on the videos of ``args`` and write the result to ``args.output``.

    The rows get the ratios of ``compared[0]`` over ``compared[1]`` (:func:`add_ratios` with
    ``suffix``); the result's ``method`` holds the run's facts and ``method``.
    """
    loadavg = os.getloadavg()
    videos = default_videos(args.bench_videos, args.dfdc_sample)
    addresses = consecutive_addresses(args.first_port, len(contenders))
    with running_side_by_side(contenders, addresses, runtime_prefix) as servers:
        rows = measure(videos, servers, args.runs, pause_s, args.box_tolerance_px)
    add_ratios(rows, *compared, suffix)
    facts = {
        "runs": args.runs,
        "num_frames": DEFAULT_NUM_FRAMES,
        "max_side": DEFAULT_MAX_SIDE,
        "cores": os.cpu_count(),
        "loadavg_before": list(loadavg),
        "code_version": code_version(),
        "box_tolerance_px": args.box_tolerance_px,
        LEADS_IN_TURN: True,
        **(method or {}),
    }
    write_result(args.output, {"videos": rows, "method": facts}, render)
