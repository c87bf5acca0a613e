"""The served call at 1 user after the server has rested: what a pause costs the next call.

In ``make bench``'s comparison with in-process ONNX Runtime the served path is timed between
the other paths, so the server rests (the client decodes, the baselines run) between two of its
calls; at load it never rests. This measures what a rest costs: the 10 s 720p bench video is
analysed over and over on the embedded Triton, one gRPC user, each call after a pause of
``--pauses`` seconds (the client sleeps; its own decode of the video comes after the pause),
pauses interleaved round by round so the machine's drift falls on all alike. Per pause: the
median server call, ``face_detector``'s and ``face_scorer``'s time (Triton's statistics), the
CPU seconds the server's processes used for the call and the kernel's share of them (system
CPU: memory touched afresh is handed over there, at a price that grows on a virtual machine
whose host has taken back the guest's free memory in the meantime). Frames go through system
shared memory, as from a client on the server's host; ``--shared-memory off`` sends them in the
request body, as a client on another host must, and tritonserver receives every request's
frames into memory of its own.

Run: ``python -m fakescope.benchmarks.server_rest --output
benchmarks/results/<host>/server_rest.json`` (writes the JSON and its table, ``.md``).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from typing import Any

import tritonclient.grpc as grpcclient

from fakescope import contract
from fakescope.allocator import set_up_memory
from fakescope.benchmarks.arguments import (
    add_pause_arguments,
    add_shared_memory_argument,
    check_json_output,
    check_pauses,
    describe_transport,
)
from fakescope.benchmarks.machine import describe_cores_and_load, machine_facts
from fakescope.benchmarks.result_files import code_version, write_result
from fakescope.benchmarks.run import add_server_arguments
from fakescope.benchmarks.service_times import (
    RUNTIME_DIR,
    measure_run,
    process_group_system_cpu_seconds,
    running_server,
)
from fakescope.client.analyze import DEFAULT_NUM_FRAMES
from fakescope.client.triton import DetectorClient
from fakescope.paths import PROJECT_ROOT
from fakescope.serving.embedded import ServerAddress

logger = logging.getLogger(__name__)

#: The bench video every call analyses.
VIDEO = "face_720p_10s.mp4"
#: The stages the table shows (Triton's per-model seconds of each call).
STAGES = (contract.FACE_DETECTOR_MODEL, contract.FACE_SCORER_MODEL)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Time the served call after each pause; return the result document."""
    from fakescope.benchmarks.videos import ensure_videos  # needs scikit-image

    video = next(v for v in ensure_videos(args.videos_dir) if v.name == VIDEO)
    shared_memory = args.shared_memory == "on"
    # as every client that sends one video after another does (`fakescope analyze`, the web
    # service, the load generator): without it, each request's frames in the request body are
    # copied into memory faulted in afresh, and that client cost would count as the server's
    set_up_memory()
    facts = machine_facts()
    address = ServerAddress("127.0.0.1", args.http_port, args.grpc_port, args.metrics_port)
    calls: dict[str, list[dict[str, Any]]] = {str(p): [] for p in args.pauses}
    with running_server(args.repository, address, RUNTIME_DIR) as server:
        assert server.process is not None  # started
        pgid = server.process.pid
        stats_client = grpcclient.InferenceServerClient(address.grpc_url)
        client = DetectorClient(
            address.grpc_url, "grpc", shared_memory=shared_memory, timeout_s=120
        )
        try:
            for _ in range(2):  # warm-up: first-run costs of every model, not counted
                measure_run(video, client, stats_client, pgid, DEFAULT_NUM_FRAMES)
            for round_ in range(args.rounds):
                for pause in args.pauses:
                    time.sleep(pause)
                    system_before = process_group_system_cpu_seconds(pgid)
                    run = measure_run(video, client, stats_client, pgid, DEFAULT_NUM_FRAMES)
                    run["server_system_cpu_seconds"] = (
                        process_group_system_cpu_seconds(pgid) - system_before
                    )
                    calls[str(pause)].append(run)
                logger.info("round %d/%d", round_ + 1, args.rounds)
        finally:
            client.close()  # before the stop: tritonserver waits for connected gRPC clients
            stats_client.close()
    facts["load_average_at_end"] = list(os.getloadavg())
    return {
        "what": f"1 user, gRPC, {describe_transport(shared_memory)}, the embedded Triton; "
        "each call after the client slept the pause (its decode of the video after the pause); "
        "medians over rounds",
        "shared_memory": shared_memory,
        "client_keeps_freed_memory": True,
        "machine": facts,
        "code_version": code_version(),
        "video": VIDEO,
        "rounds": args.rounds,
        "pauses": {
            pause: {
                "infer_s": statistics.median(r["infer_seconds"] for r in runs),
                "server_cpu_s": statistics.median(r["server_cpu_seconds"] for r in runs),
                "server_system_cpu_s": statistics.median(
                    r["server_system_cpu_seconds"] for r in runs
                ),
                **{
                    f"{stage}_s": statistics.median(r["stage_seconds"][stage] for r in runs)
                    for stage in STAGES
                },
                "infer_runs_s": [r["infer_seconds"] for r in runs],
            }
            for pause, runs in calls.items()
        },
    }


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``server_rest.json`` as a table."""
    machine = result["machine"]
    first = next(iter(result["pauses"].values()))
    lines = [
        "# The served call after the server rested",
        "",
        f"Written by `python -m fakescope.benchmarks.server_rest`; do not edit. {result['what']}: "
        f"{result['rounds']} rounds on {result['video']}, {describe_cores_and_load(machine)}. "
        "Seconds; ratios against the first pause.",
        "",
        "| pause s | server call | face_detector | face_scorer | server CPU | of it system "
        "| call, CPU vs first |",
        "|---|---|---|---|---|---|---|",
    ]
    for pause, row in result["pauses"].items():
        lines.append(
            f"| {pause} | {row['infer_s']:.3f} "
            + " ".join(f"| {row[f'{stage}_s']:.3f}" for stage in STAGES)
            + f" | {row['server_cpu_s']:.3f} | {row['server_system_cpu_s']:.3f} "
            f"| {row['infer_s'] / first['infer_s']:.2f}x, "
            f"{row['server_cpu_s'] / first['server_cpu_s']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(parser, first_port=19000)
    parser.set_defaults(output=PROJECT_ROOT / "benchmarks" / "results" / "server_rest.json")
    add_pause_arguments(parser, pauses=[0.0, 0.5, 2.0, 5.0])
    add_shared_memory_argument(parser)
    args = parser.parse_args(argv)
    check_pauses(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    check_json_output(parser, args)
    write_result(args.output, measure(args), render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
