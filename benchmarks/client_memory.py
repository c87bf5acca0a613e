"""The client's decode with freed memory kept against glibc's defaults, after pauses.

A long-running client (the load generator, the web service, ``fakescope analyze`` on several
videos) decodes every video's sample into a new array: 44 MB for 16 frames of 720p, above
glibc's largest mmap threshold, so with glibc's defaults it is mapped afresh for every video and
unmapped after it, and on a virtual machine whose host takes freed memory back a video after a
pause pays the most (:mod:`fakescope.allocator`). Two worker processes decode the same video on
request, one after :func:`fakescope.allocator.keep_freed_memory` and one with glibc's defaults,
each in a worker thread as the load generator and the web service decode; the parent
interleaves them round by round, each call after a pause of ``--pauses`` seconds (besides the
pause, each worker waits while the other decodes). Per setting
and pause: the median wall and system CPU seconds of the decode and the slowest decode. Both
must return the same frames, or the run fails.

Run: ``python -m fakescope.benchmarks.client_memory --output
benchmarks/results/<host>/client_memory.json`` (writes the JSON and its table, ``.md``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fakescope.allocator import keep_freed_memory
from fakescope.benchmarks.arguments import add_pause_arguments, check_json_output, check_pauses
from fakescope.benchmarks.machine import describe_cores_and_load, machine_facts
from fakescope.benchmarks.result_files import code_version, write_result
from fakescope.client.analyze import DEFAULT_NUM_FRAMES, decode_video
from fakescope.paths import BENCH_VIDEOS_DIR, PROJECT_ROOT

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "client_memory.json"
#: The bench video every call decodes.
VIDEO = "face_720p_10s.mp4"
KEPT = "kept"
GLIBC_DEFAULT = "glibc_default"
SETTINGS = (KEPT, GLIBC_DEFAULT)
#: This module, as a worker process runs it (``__name__`` is ``__main__`` there).
_MODULE = "fakescope.benchmarks.client_memory"
#: The line a worker reads to decode once more; anything else ends it.
_GO = "decode"


def serve_decodes(setting: str, video: Path) -> None:
    """Worker: decode ``video`` each time stdin says so; print its timing as one JSON line."""
    if setting == KEPT and not keep_freed_memory():
        raise SystemExit("no glibc mallopt here: nothing to compare")
    pool = ThreadPoolExecutor(max_workers=1)  # a worker thread, as the load generator decodes
    for line in sys.stdin:
        if line.strip() != _GO:
            break
        before = resource.getrusage(resource.RUSAGE_SELF)
        began = time.perf_counter()
        decoded = pool.submit(decode_video, video, DEFAULT_NUM_FRAMES).result()
        wall = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_SELF)
        frames = decoded.sampled.frames
        digest = hashlib.sha256(frames.tobytes()).hexdigest()
        answer = {
            "wall_s": wall,
            "system_cpu_s": after.ru_stime - before.ru_stime,
            "user_cpu_s": after.ru_utime - before.ru_utime,
            "frames_sha256": digest,
        }
        sys.stdout.write(json.dumps(answer) + "\n")  # the parent's protocol, not a log line
        sys.stdout.flush()
    pool.shutdown()


class _Worker:
    """One worker process of :func:`serve_decodes`."""

    def __init__(self, setting: str, video: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", _MODULE, "--worker", setting, "--video", str(video)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def decode(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(_GO + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"decode worker exited with {self.process.wait()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def measure(video: Path, pauses: list[float], rounds: int) -> dict[str, Any]:
    """Interleave both workers' decodes after each pause; return the result document."""
    facts = machine_facts()
    workers = {setting: _Worker(setting, video) for setting in SETTINGS}
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        setting: {str(p): [] for p in pauses} for setting in SETTINGS
    }
    try:
        for worker in workers.values():  # warm-up: the first decode's one-time costs
            worker.decode()
        for round_ in range(rounds):
            for pause in pauses:
                for setting, worker in workers.items():
                    time.sleep(pause)
                    samples[setting][str(pause)].append(worker.decode())
            logger.info("round %d/%d", round_ + 1, rounds)
    finally:
        for worker in workers.values():
            worker.close()
    digests = {
        s["frames_sha256"] for by_pause in samples.values() for r in by_pause.values() for s in r
    }
    if len(digests) != 1:
        raise RuntimeError("the two settings decoded different frames")
    facts["load_average_at_end"] = list(os.getloadavg())
    return {
        "what": "The client's sample of one video, decoded in a worker thread of a long-running "
        "process; medians over rounds",
        "machine": facts,
        "code_version": code_version(),
        "video": video.name,
        "rounds": rounds,
        "pauses": {
            str(pause): {
                setting: {
                    "wall_s": statistics.median(s["wall_s"] for s in runs),
                    "system_cpu_s": statistics.median(s["system_cpu_s"] for s in runs),
                    "slowest_wall_s": max(s["wall_s"] for s in runs),
                    "wall_runs_s": [s["wall_s"] for s in runs],
                }
                for setting in SETTINGS
                for runs in [samples[setting][str(pause)]]
            }
            for pause in pauses
        },
    }


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``client_memory.json`` as a table."""
    machine = result["machine"]
    lines = [
        "# The client's decode: freed memory kept, or glibc's defaults",
        "",
        "Written by `python -m fakescope.benchmarks.client_memory`; do not edit. "
        f"{result['what']}: {result['rounds']} rounds on {result['video']}, the two settings "
        f"interleaved, each call after the pause; {describe_cores_and_load(machine)}. Seconds: "
        "decode (median) / system CPU (median) / slowest decode. Both settings decoded the same "
        "frames.",
        "",
        "| pause s | kept | glibc defaults | kept vs defaults: decode, slowest |",
        "|---|---|---|---|",
    ]
    for pause, row in result["pauses"].items():
        kept, default = row[KEPT], row[GLIBC_DEFAULT]
        cells = [
            f"{r['wall_s']:.3f} / {r['system_cpu_s']:.3f} / {r['slowest_wall_s']:.3f}"
            for r in (kept, default)
        ]
        lines.append(
            f"| {pause} | {cells[0]} | {cells[1]} "
            f"| {kept['wall_s'] / default['wall_s']:.2f}x, "
            f"{kept['slowest_wall_s'] / default['slowest_wall_s']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file (or, with ``--worker``, serve one setting's decodes)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=RESULT)
    add_pause_arguments(parser, pauses=[0.0, 2.0])
    parser.add_argument("--videos-dir", type=Path, default=BENCH_VIDEOS_DIR)
    parser.add_argument("--worker", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if args.video is None:
            parser.error("--worker needs --video")
        serve_decodes(args.worker, args.video)
        return 0
    check_pauses(parser, args)
    check_json_output(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from fakescope.benchmarks.videos import ensure_videos  # needs scikit-image

    video = next(v for v in ensure_videos(args.videos_dir) if v.name == VIDEO)
    write_result(args.output, measure(video, args.pauses, args.rounds), render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
