"""Locust users that push whole videos through the client path (decode + sample + infer).

Configured by environment variables (set by :mod:`fakescope.benchmarks.run`):

* ``FAKESCOPE_BENCH_VIDEOS`` — video paths separated by ``os.pathsep``; each user cycles them;
* ``FAKESCOPE_BENCH_URL_GRPC`` / ``FAKESCOPE_BENCH_URL_HTTP`` — the server;
* ``FAKESCOPE_BENCH_FRAMES`` — frames sampled per video;
* ``FAKESCOPE_BENCH_SHARED_MEMORY`` — ``on``/``off``: frames through system shared memory;
* ``FAKESCOPE_BENCH_DECODE_THREADS`` — decoding threads of the load generator (default: one
  per core);
* ``FAKESCOPE_BENCH_RETRIES`` — client retries of UNAVAILABLE answers (0 in overload runs);
* ``FAKESCOPE_BENCH_PREDECODED`` — ``1`` (overload runs): each video is decoded once, before
  the run, and every request reuses its frames; the decode time measured then is added to each
  request's processing time. At 16–32 users on the server's own 2 cores, the load generator's
  decoding would otherwise be the bottleneck, and its single event loop would delay the answers
  it measures (a server rejection that takes 20 ms was recorded as seconds), so the table would
  describe the load generator instead of the server's admission control. A rejected user then
  pauses ``REJECTED_PAUSE_S`` before its next video, as a real client backs off;
* ``FAKESCOPE_BENCH_RECORDS`` — JSON-lines file that receives one record per request
  (processing time, video duration, ratio, status, error, the user's start number);
* ``FAKESCOPE_BENCH_LIMIT`` — the product limit on p95(processing/duration); a run whose p95
  exceeds it exits non-zero (``environment.process_exit_code``);
* ``FAKESCOPE_BENCH_STACKS_SIGNAL`` — a signal number on which the load generator writes every
  thread's Python stack to stderr (sent to a level that outlived its limit, before it is
  stopped). A hung gRPC call waits in a thread of gevent's pool, where this shows it.

gevent safety: decoding is CPU-bound C code that would block the event loop, so it runs in
gevent's native thread pool; the inference call runs in the user's greenlet (gRPC with
``grpc.experimental.gevent``, HTTP with tritonclient's geventhttpclient), one client per user.
A decoding thread takes its frames' memory from the user's client (a shared-memory region), and
it logs: the client guards its regions with OS locks, and logging is given OS locks here, as
gevent's, contended by two native threads, can wait for ever
(:mod:`fakescope.client.native_threads`).
"""

from __future__ import annotations

import dataclasses
import faulthandler
import itertools
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.threadpool
import gevent.util
import grpc.experimental.gevent as grpc_gevent
from locust import User, events, task

from fakescope.allocator import set_up_memory
from fakescope.client.analyze import DEFAULT_NUM_FRAMES, DecodedVideo, decode_video, verdict_for
from fakescope.client.native_threads import logging_with_os_locks
from fakescope.client.triton import DEFAULT_RETRIES, DetectorClient, ServerError

logger = logging.getLogger(__name__)

logging_with_os_locks()  # before the decoding threads start
grpc_gevent.init_gevent()
if os.environ.get("FAKESCOPE_BENCH_STACKS_SIGNAL"):
    _stacks_signal = int(os.environ["FAKESCOPE_BENCH_STACKS_SIGNAL"])
    # faulthandler writes every native thread's stack at once (even with the event loop stuck
    # in C code), then hands the signal on to gevent's handler, which writes every greenlet's
    # when the loop next runs
    gevent.signal_handler(
        _stacks_signal, lambda: sys.stderr.write("\n".join(gevent.util.format_run_info()) + "\n")
    )
    faulthandler.register(_stacks_signal, all_threads=True, chain=True)
# Decoding runs in a native thread pool of its own, as many threads as cores, as on a real
# client machine (32 simultaneous decodes on the server's 2 cores starve tritonserver's python
# stubs). Not the hub's pool: gRPC's gevent mode waits for every call in a thread of *that*
# pool, so bounding it to the cores made calls (rejections too) queue behind each other.
DECODE_POOL = gevent.threadpool.ThreadPool(
    int(os.environ.get("FAKESCOPE_BENCH_DECODE_THREADS", "0")) or os.cpu_count() or 2
)
gevent.get_hub().threadpool.maxsize = 256  # >= concurrent users: one waiting gRPC call each
# Every video is decoded into a new array (44 MB for 16 frames of 720p): kept for the next video
# rather than mapped afresh each time, with small pages, as by every long-running client
# (fakescope/allocator.py).
set_up_memory()

VIDEOS = [p for p in os.environ.get("FAKESCOPE_BENCH_VIDEOS", "").split(os.pathsep) if p]
FRAMES = int(os.environ.get("FAKESCOPE_BENCH_FRAMES", str(DEFAULT_NUM_FRAMES)))
SHARED_MEMORY = os.environ.get("FAKESCOPE_BENCH_SHARED_MEMORY", "on") == "on"
#: Client retries of UNAVAILABLE; the overload measurement sets 0 to see every rejection.
RETRIES = int(os.environ.get("FAKESCOPE_BENCH_RETRIES", str(DEFAULT_RETRIES)))
PREDECODED = os.environ.get("FAKESCOPE_BENCH_PREDECODED", "0") == "1"
RECORDS: list[dict[str, Any]] = []
#: Start order of this load generator's users: the i-th starts cycling the videos at offset i,
#: so a level's users spread over the mixed set. (An offset from the records so far gave every
#: user 0, as all of a level's users start before any video is done: all 8 decoded and sent the
#: same video together, a convoy no population of independent users makes.)
_USER_NUMBERS = itertools.count()
#: Seconds a user waits after a rejection before its next video (overload runs).
REJECTED_PAUSE_S = 1.0
#: video -> its frames and the seconds the one decode took, filled before an overload run.
_DECODED: dict[str, DecodedVideo] = {}


@events.test_start.add_listener
def _decode_once(**_kwargs: Any) -> None:
    if not PREDECODED:
        return
    for video in VIDEOS:
        _DECODED[video] = decode_video(video, FRAMES)


class _VideoUser(User):
    """One platform user: analyzes videos back to back."""

    abstract = True
    protocol = "grpc"
    last_rejected = False
    number = 0  #: this user's place in the start order (set when it starts)

    def wait_time(self) -> float:
        """Back to back; a pause after a rejection (a real client backs off)."""
        return REJECTED_PAUSE_S if self.last_rejected else 0.0

    def on_start(self) -> None:
        """Open this user's own client and start cycling the videos at a user-specific offset."""
        url = os.environ[f"FAKESCOPE_BENCH_URL_{self.protocol.upper()}"]
        self.client = DetectorClient(
            url,
            self.protocol,  # type: ignore[arg-type]
            timeout_s=120,
            retries=RETRIES,
            shared_memory=SHARED_MEMORY,
        )
        self.client.model_facts()  # asked once, before the first timed video
        self.number = next(_USER_NUMBERS)
        offset = self.number % max(len(VIDEOS), 1)
        self.videos = itertools.islice(itertools.cycle(VIDEOS), offset, None)
        if not PREDECODED and VIDEOS:
            self._warm_up(VIDEOS[offset])

    def _warm_up(self, video: str) -> None:
        """Analyze ``video`` once, not counted: each timed video is a warm client's.

        A load generator's first video pays one-time costs of its process (the decoder's and
        the client's first calls, the file's first read) that no later video of a long-running
        client pays; at 1 user it was the slowest request of its level. Overload runs skip
        this: they decode before the run, and a warm-up burst is not what they measure.
        """
        try:
            verdict_for(video, self._decode(video), self.client)
        except Exception as exc:  # a refused warm-up is no measurement; the timed videos are
            logger.warning("warm-up video %s failed: %s", Path(video).name, exc)

    def _decode(self, video: str) -> DecodedVideo:
        """Decode ``video`` in a native thread, into this user's client's shared memory."""
        allocate = {"allocate": self.client.frames_buffer}
        decoded: DecodedVideo = DECODE_POOL.apply(decode_video, (video, FRAMES), allocate)
        return decoded

    def on_stop(self) -> None:
        """Close the client."""
        self.client.close()

    @task
    def analyze_video(self) -> None:
        """Decode + sample in a native thread, infer in this greenlet, report to Locust."""
        video = next(self.videos)
        start = time.perf_counter()
        # what Locust is told of a failure: the exception's repr, never the exception, whose
        # traceback holds the video's frames; Locust keeps the first exception of every kind
        # of failure for the whole run, which would keep that frames region lent, and the
        # client would send every later video through its other region or in the request
        error: str | None = None
        record: dict[str, Any] = {"protocol": self.protocol, "video": Path(video).name}
        decoded_at = start
        self.last_rejected = False
        try:
            if PREDECODED:  # as if this user had decoded it just now, unhurried
                decoded = _DECODED[video]
                start -= decoded.decode_seconds
            else:  # the wait for a decoding thread counts, as a real client waits for it
                decoded = self._decode(video)
                decoded = dataclasses.replace(decoded, decode_seconds=time.perf_counter() - start)
            decoded_at = time.perf_counter()
            verdict = verdict_for(video, decoded, self.client)
            elapsed = verdict.processing_seconds
            record.update(
                status=verdict.status,
                processing_seconds=elapsed,
                decode_seconds=verdict.decode_seconds,
                infer_seconds=verdict.infer_seconds,
                duration_seconds=verdict.duration_seconds,
                ratio=verdict.ratio,
            )
        except ServerError as exc:  # reported to Locust as a failure, and recorded
            error = repr(exc)
            elapsed = time.perf_counter() - start
            status = "rejected" if exc.overloaded else "error"
            self.last_rejected = status == "rejected"
            record.update(
                status=status,
                error=str(exc),
                processing_seconds=elapsed,
                infer_seconds=time.perf_counter() - decoded_at,
            )
        except Exception as exc:  # reported to Locust as a failure, and recorded
            error = repr(exc)
            elapsed = time.perf_counter() - start
            record.update(status="error", error=str(exc), processing_seconds=elapsed)
        record["user"] = self.number
        record["users"] = self.environment.runner.user_count if self.environment.runner else 0
        record["finished_at"] = time.time()  # wall clock: the soak's 5-minute windows
        RECORDS.append(record)
        events.request.fire(
            request_type=self.protocol,
            name=Path(video).name,
            response_time=elapsed * 1000.0,
            response_length=0,
            exception=error,
            context={"ratio": record.get("ratio")},
        )


class GrpcVideoUser(_VideoUser):
    """A platform calling Triton over gRPC (KServe v2)."""

    protocol = "grpc"


class HttpVideoUser(_VideoUser):
    """A platform calling Triton over HTTP (KServe v2)."""

    protocol = "http"


def p95(values: list[float]) -> float:
    """95th percentile (linear interpolation); NaN for no values."""
    import numpy as np

    return float(np.percentile(values, 95)) if values else float("nan")


@events.quitting.add_listener
def _on_quitting(environment: Any, **_kwargs: Any) -> None:
    path = os.environ.get("FAKESCOPE_BENCH_RECORDS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            for record in RECORDS:
                out.write(json.dumps(record) + "\n")
    limit = float(os.environ.get("FAKESCOPE_BENCH_LIMIT", "inf"))
    ratios = [r["ratio"] for r in RECORDS if r.get("ratio") is not None]
    if ratios and p95(ratios) > limit:
        environment.process_exit_code = 1
