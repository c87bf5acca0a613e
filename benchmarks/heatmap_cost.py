"""What an occlusion heatmap costs: time per face, bytes kept per face, effect on a verdict.

Against a real embedded Triton serving the committed repository (started here on free loopback
ports), with the real client path:

* a 720p face video (the astronaut, :func:`fakescope.benchmarks.media.make_face_video`) is
  analysed as the web service does it (``decode_video`` + ``verdict_for``), and the classifier's
  crop of each face is cut as the web jobs keep it
  (:func:`fakescope.web.faces.classifier_crop_png`); the time to cut and encode it (on the job
  path, after the verdict) and its PNG size are recorded per face;
* per face, the heatmap as the web route makes it: :func:`occlusion_map` (``grid``² + 1 crops
  through Triton, in requests of at most the classifier's ``max_batch_size``) plus the overlay
  PNG; median of ``--repeats`` × faces, per protocol;
* the same video's verdict processing time (decode + inference) idle, and while heatmaps are
  computed back to back in another thread, alternating, median of ``--rounds`` each: a heatmap
  is never on a verdict's path, but on a shared CPU it takes cores from concurrent analyses.

Writes ``heatmap_cost.json`` (and ``heatmap_cost.md``, its table) under ``--output``:

    python -m fakescope.benchmarks.heatmap_cost --output benchmarks/results
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from fakescope.benchmarks.media import make_face_video
from fakescope.benchmarks.result_files import write_result_files
from fakescope.client.analyze import decode_video, verdict_for
from fakescope.client.occlusion import DEFAULT_GRID, DEFAULT_PATCH, occlusion_map
from fakescope.client.triton import DetectorClient, Protocol
from fakescope.paths import MODEL_REPOSITORY
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress
from fakescope.web.faces import classifier_crop_png
from fakescope.web.heatmaps import overlay_png

logger = logging.getLogger(__name__)

VIDEO_SECONDS = 10.0
VIDEO_SIZE = (1280, 720)
FRAMES = 16


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@contextlib.contextmanager
def _triton() -> Iterator[dict[str, str]]:
    """Start the embedded Triton on free loopback ports; yield its URL per protocol."""
    http, grpc, metrics = _free_ports(3)
    server = EmbeddedTriton(MODEL_REPOSITORY, ServerAddress("127.0.0.1", http, grpc, metrics))
    server.start()
    try:
        yield {"grpc": server.address.grpc_url, "http": server.address.http_url}
    finally:
        server.stop()


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "n": len(values),
    }


def _face_crops(
    video: Path, client: DetectorClient
) -> tuple[list[NDArray[np.uint8]], dict[str, Any]]:
    """Cut the video's face crops as the web jobs keep them; return them and their cost."""
    decoded = decode_video(video, FRAMES)
    verdict = verdict_for(video.name, decoded, client)
    framing = client.classifier_input()
    sx, sy = decoded.sampled.scale
    crops: list[NDArray[np.uint8]] = []
    seconds: list[float] = []
    sizes: list[int] = []
    for face in verdict.face_boxes:
        x1, y1, x2, y2 = face["box"]
        start = time.perf_counter()
        png = classifier_crop_png(
            decoded.sampled.frames[face["frame_index"]],
            (x1 / sx, y1 / sy, x2 / sx, y2 / sy),
            framing,
        )
        seconds.append(time.perf_counter() - start)
        sizes.append(len(png))
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        crops.append(np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8))
    if not crops:
        raise RuntimeError(f"no face found in {video}")
    return crops, {
        "faces": len(crops),
        "crop_seconds_per_face": _stats(seconds),
        "crop_png_bytes_per_face": _stats([float(s) for s in sizes]),
    }


def _heatmap_seconds(
    client: DetectorClient, crops: list[NDArray[np.uint8]], repeats: int
) -> list[float]:
    """Wall time of the web route's work per face: the map and its overlay PNG."""
    times = []
    for _ in range(repeats):
        for crop in crops:
            start = time.perf_counter()
            made = occlusion_map(client, crop)
            overlay_png(crop, made.drops)
            times.append(time.perf_counter() - start)
    return times


def _heatmaps_until(
    stop: threading.Event, url: str, crops: list[NDArray[np.uint8]], done: list[int]
) -> None:
    """Compute heatmaps back to back until ``stop`` is set; count them in ``done[0]``."""
    with DetectorClient(url, "grpc") as client:
        while not stop.is_set():
            occlusion_map(client, crops[done[0] % len(crops)])
            done[0] += 1


def _verdict_interference(
    video: Path, urls: dict[str, str], crops: list[NDArray[np.uint8]], rounds: int
) -> dict[str, Any]:
    """Verdict processing seconds idle vs while heatmaps run back to back (alternating)."""
    alone: list[float] = []
    beside: list[float] = []
    done = [0]
    with DetectorClient(urls["grpc"], "grpc") as client:
        duration = decode_video(video, FRAMES).sampled.duration_seconds
        for _ in range(rounds):
            verdict = verdict_for(video.name, decode_video(video, FRAMES), client)
            alone.append(verdict.processing_seconds)
            stop = threading.Event()
            worker = threading.Thread(
                target=_heatmaps_until, args=(stop, urls["grpc"], crops, done), name="heatmaps"
            )
            worker.start()
            try:
                time.sleep(0.2)  # the heatmaps are under way
                verdict = verdict_for(video.name, decode_video(video, FRAMES), client)
                beside.append(verdict.processing_seconds)
            finally:
                stop.set()
                worker.join()
    return {
        "video_seconds": round(duration, 3),
        "frames": FRAMES,
        "processing_seconds_alone": _stats(alone),
        "processing_seconds_beside_heatmaps": _stats(beside),
        "ratio_alone": round(statistics.median(alone) / duration, 4),
        "ratio_beside_heatmaps": round(statistics.median(beside) / duration, 4),
        "heatmaps_during_rounds": done[0],
    }


def measure(protocols: list[Protocol], repeats: int, rounds: int) -> dict[str, Any]:
    """Run every measurement; return the result document."""
    load_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="fakescope-heatmap-") as tmp:
        video = make_face_video(
            Path(tmp) / "face720.mp4", seconds=VIDEO_SECONDS, size=VIDEO_SIZE, codec="h264"
        )
        with _triton() as urls:
            with DetectorClient(urls["grpc"], "grpc") as client:
                crops, kept = _face_crops(video, client)
                spec = client.classifier_input()
            per_protocol = {}
            for protocol in protocols:
                with DetectorClient(urls[protocol], protocol) as client:
                    _heatmap_seconds(client, crops[:1], 1)  # warm-up, not counted
                    per_protocol[protocol] = _stats(_heatmap_seconds(client, crops, repeats))
            interference = _verdict_interference(video, urls, crops, rounds)
    crops_per_map = DEFAULT_GRID**2 + 1
    return {
        "what": "occlusion heatmap of one face: occlusion_map + overlay PNG, as the web route",
        "grid": DEFAULT_GRID,
        "patch_pixels": round(DEFAULT_PATCH * spec.input_size),
        "classifier_version": spec.version,
        "input_size": spec.input_size,
        "crops_scored_per_face": crops_per_map,
        "requests_per_face": math.ceil(crops_per_map / spec.max_batch_size),
        "max_batch_size": spec.max_batch_size,
        "repeats_per_face": repeats,
        "heatmap_seconds_per_face": per_protocol,
        "kept_per_face_at_analysis": kept,
        "verdict_beside_heatmaps": interference,
        "machine": {
            "cores": os.cpu_count(),
            "load_average_at_start": load_start,
            "load_average_at_end": list(os.getloadavg()),
        },
        "command": "python -m fakescope.benchmarks.heatmap_cost --output benchmarks/results",
    }


def markdown(result: dict[str, Any]) -> str:
    """Render the result as a short Markdown table (written beside the JSON)."""
    lines = [
        "# Heatmap cost (written by `fakescope.benchmarks.heatmap_cost` from heatmap_cost.json)",
        "",
        f"Classifier v{result['classifier_version']} ({result['input_size']} px), grid "
        f"{result['grid']}×{result['grid']}, patch {result['patch_pixels']} px: "
        f"{result['crops_scored_per_face']} crops in {result['requests_per_face']} requests "
        f"(max batch {result['max_batch_size']}) per face; "
        f"{result['machine']['cores']} cores, load "
        f"{result['machine']['load_average_at_start'][0]:.2f} at start.",
        "",
        "| what | median | min | max | n |",
        "|---|---|---|---|---|",
    ]
    kept = result["kept_per_face_at_analysis"]
    v = result["verdict_beside_heatmaps"]
    rows = [
        (f"heatmap per face, {protocol} (s)", stats)
        for protocol, stats in result["heatmap_seconds_per_face"].items()
    ]
    rows += [
        ("crop cut + PNG per face at analysis (s)", kept["crop_seconds_per_face"]),
        ("crop PNG kept per face (bytes)", kept["crop_png_bytes_per_face"]),
        ("verdict processing, alone (s)", v["processing_seconds_alone"]),
        ("verdict processing, heatmaps running (s)", v["processing_seconds_beside_heatmaps"]),
    ]
    for label, st in rows:
        lines.append(f"| {label} | {st['median']} | {st['min']} | {st['max']} | {st['n']} |")
    lines += [
        "",
        f"Verdict of a {v['video_seconds']} s 720p video ({v['frames']} frames): ratio "
        f"{v['ratio_alone']} alone, {v['ratio_beside_heatmaps']} while heatmaps ran back to back "
        "(the product limit is 0.5).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure and write ``heatmap_cost.json`` and ``heatmap_cost.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocols", default="grpc,http")
    parser.add_argument("--repeats", type=int, default=3, help="maps per face")
    parser.add_argument("--rounds", type=int, default=5, help="verdicts alone / beside maps")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    protocols: list[Protocol] = []
    for name in (p.strip() for p in args.protocols.split(",") if p.strip()):
        if name not in ("grpc", "http"):
            parser.error(f"--protocols must list grpc and/or http, got {args.protocols!r}")
        protocols.append("grpc" if name == "grpc" else "http")
    if not protocols:
        parser.error("--protocols is empty")
    if args.repeats < 1 or args.rounds < 1:
        parser.error("--repeats and --rounds must be >= 1")
    result = measure(protocols, args.repeats, args.rounds)
    args.output.mkdir(parents=True, exist_ok=True)
    write_result_files(
        {
            args.output / "heatmap_cost.md": markdown(result),
            args.output / "heatmap_cost.json": json.dumps(result, indent=1) + "\n",
        }
    )
    logger.info("wrote %s:\n%s", args.output / "heatmap_cost.json", markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
