"""What reading Content Credentials (C2PA) costs, on the benchmark videos, signed and unsigned.

For each benchmark video (:data:`fakescope.benchmarks.videos.BENCH_VIDEOS`: 720p/1080p, 6–60 s,
made once per machine) and a copy signed here with a test CA (a declared AI-generated
manifest), :func:`~fakescope.client.content_credentials.read_content_credentials` is timed
``--repeats`` times (after one warm-up read) without and with a trust list; the median and
maximum are recorded with the video's duration and the share of the processing budget (the
product limit: half the video's duration) that the median takes. The C2PA library hashes every
byte of a signed file, so the cost grows with the file's size: one more file, a signed video
padded to ``--padding-mib`` MiB, gives the hashing rate and, from it, the time for an upload at
the web service's size limit. No Triton is needed: reading is local.

Writes ``content_credentials_cost.json`` under ``--output``:

    python -m fakescope.benchmarks.content_credentials_cost --output benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fakescope.benchmarks.c2pa_media import (
    AI_GENERATED,
    append_media_padding,
    make_test_ca,
    manifest,
    sign_video,
)
from fakescope.benchmarks.videos import BENCH_VIDEOS, ensure_videos
from fakescope.client.content_credentials import (
    DEFAULT_MAX_MANIFEST_BYTES,
    DEFAULT_TIMEOUT_S,
    read_content_credentials,
)
from fakescope.contract import PROCESSING_LIMIT_RATIO
from fakescope.files import write_text_atomically
from fakescope.paths import BENCH_VIDEOS_DIR, PROJECT_ROOT
from fakescope.web.settings import Settings

logger = logging.getLogger(__name__)

#: The product limit: processing may take at most this fraction of the video's duration.
RATIO_LIMIT = PROCESSING_LIMIT_RATIO
#: The web service's default upload limit.
UPLOAD_LIMIT_BYTES = Settings().max_upload_bytes


def _timed(path: Path, repeats: int, anchors: str | None) -> dict[str, Any]:
    read_content_credentials(path, anchors)  # warm-up: page cache, library state
    seconds = []
    status = None
    for _ in range(repeats):
        start = time.perf_counter()
        status = read_content_credentials(path, anchors).status
        seconds.append(time.perf_counter() - start)
    return {
        "status": status,
        "median_ms": round(1000 * statistics.median(seconds), 3),
        "max_ms": round(1000 * max(seconds), 3),
    }


def measure(videos_dir: Path, repeats: int, padding_mib: int, work: Path) -> dict[str, Any]:
    """Time reading on every benchmark video, unsigned and signed, and the hashing rate."""
    signer = make_test_ca()
    anchors = signer.ca_pem.decode("ascii")
    load_at_start = list(os.getloadavg())
    rows = []
    signed_copies = []
    for video, path in zip(BENCH_VIDEOS, ensure_videos(videos_dir), strict=True):
        signed = sign_video(path, work / f"signed-{path.name}", signer, manifest(AI_GENERATED))
        signed_copies.append(signed)
        budget_ms = 1000 * RATIO_LIMIT * video.seconds
        cases = {
            "unsigned": _timed(path, repeats, None),
            "signed_no_trust_list": _timed(signed, repeats, None),
            "signed_with_trust_list": _timed(signed, repeats, anchors),
        }
        for case in cases.values():
            case["share_of_budget"] = round(case["median_ms"] / budget_ms, 6)
        row: dict[str, Any] = {
            "video": video.name,
            "duration_seconds": video.seconds,
            "size_bytes": path.stat().st_size,
            "signed_size_bytes": signed.stat().st_size,
            "processing_budget_ms": budget_ms,
            **cases,
            "max_share_of_budget": max(c["share_of_budget"] for c in cases.values()),
        }
        rows.append(row)
        logger.info("%s: %s", video.name, row)
    padded = append_media_padding(signed_copies[0], work / "padded.mp4", padding_mib)
    timing = _timed(padded, max(3, repeats // 4), None)
    size = padded.stat().st_size
    rate = size / (timing["median_ms"] / 1000)
    return {
        "what": "read_content_credentials (fakescope/client/content_credentials.py): the "
        "container walk, then c2pa-python's Reader with validation, on each benchmark video "
        "unsigned and signed (test CA, declared AI-generated manifest); median of repeats "
        "after one warm-up read",
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": list(os.getloadavg()),
        },
        "c2pa_python": _version("c2pa-python"),
        "repeats": repeats,
        "ratio_limit": RATIO_LIMIT,
        "limits": {
            "max_manifest_bytes": DEFAULT_MAX_MANIFEST_BYTES,
            "timeout_seconds": DEFAULT_TIMEOUT_S,
        },
        "videos": rows,
        "hashing": {
            "file": f"{rows[0]['video']} signed, padded with {padding_mib} MiB (one more mdat)",
            "size_bytes": size,
            **timing,
            "bytes_per_second": round(rate),
            "upload_limit_bytes": UPLOAD_LIMIT_BYTES,
            "estimated_ms_at_upload_limit": round(1000 * UPLOAD_LIMIT_BYTES / rate, 1),
        },
    }


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Measure and write ``content_credentials_cost.json``; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "benchmarks" / "results")
    parser.add_argument("--videos-dir", type=Path, default=BENCH_VIDEOS_DIR)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--padding-mib", type=int, default=128)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.padding_mib < 1:
        parser.error("--repeats and --padding-mib must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="c2pa-cost-") as work:
        result = measure(args.videos_dir, args.repeats, args.padding_mib, Path(work))
    out = args.output / "content_credentials_cost.json"
    write_text_atomically(out, json.dumps(result, indent=2) + "\n")
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
