"""Admission control on the real server: a burst beyond the queue is refused at once."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from fakescope import contract
from fakescope.benchmarks.run import REFUSAL_REASONS
from fakescope.client.triton import DetectorClient, ServerError
from fakescope.client.video import sample_frames
from fakescope.serving.embedded import EmbeddedTriton
from tests.support.detector_queue import analyze_in_thread, detector_counts, wait_until_waiting
from tests.support.media import make_face_video
from tests.support.servers import REPOSITORY

QUEUE_FULL = REFUSAL_REASONS["queue_full"]
QUEUE_TIMEOUT = REFUSAL_REASONS["queue_timeout"]
FRAMES_PER_REQUEST = 32
#: A video of the first deadline class (budget 4.5 s, under 5 s), with room to wait behind a
#: busy request on a slow machine.
SHORT_SECONDS = 9.0


def detector_queue_size() -> int:
    """``max_queue_size`` of the entry model's queue that a request without a priority joins.

    Read from the committed config: the default level's own policy, else the default policy.
    """
    config = text_format.Parse(
        (REPOSITORY / "face_detector" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    batching = config.dynamic_batching
    policy = batching.priority_queue_policy.get(
        batching.default_priority_level, batching.default_queue_policy
    )
    return int(policy.max_queue_size)


@pytest.fixture(scope="module")
def heavy_request(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """Frames with a face: the detector takes far longer on them than a refusal takes."""
    path = make_face_video(
        tmp_path_factory.mktemp("overload") / "face.mp4", seconds=3.2, fps=10, codec="avc1"
    )
    sampled = sample_frames(path, FRAMES_PER_REQUEST)
    return sampled.frames


def test_ensemble_refuses_the_excess_at_once_and_answers_the_rest_when_a_burst_overfills_the_queue(
    triton: EmbeddedTriton, heavy_request: np.ndarray
) -> None:
    admitted = detector_queue_size() + 1  # waiting + the one running
    burst = admitted + 3
    frames = heavy_request
    start = threading.Barrier(burst)
    # (seconds from sending to the answer, ok | rejected | error, detail)
    outcomes: list[tuple[float, str, str]] = []
    lock = threading.Lock()

    def one_user() -> None:
        # frames through shared memory: the burst reaches the server within milliseconds, so the
        # queue, not 12 clients pushing 20 MB each over gRPC, decides who waits
        with DetectorClient(
            triton.address.grpc_url, "grpc", retries=0, shared_memory=True, timeout_s=120
        ) as client:
            start.wait()
            sent = time.monotonic()
            try:
                result = client.infer(frames)
                outcome = ("ok", result.status)
            except ServerError as exc:
                kind = "rejected" if exc.status == "StatusCode.UNAVAILABLE" else "error"
                outcome = (kind, str(exc))
            with lock:
                outcomes.append((time.monotonic() - sent, *outcome))

    threads = [threading.Thread(target=one_user) for _ in range(burst)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    kinds = [kind for _, kind, _ in outcomes]
    assert "error" not in kinds, outcomes
    rejected = [o for o in outcomes if o[1] == "rejected"]
    answered = [o for o in outcomes if o[1] == "ok"]
    assert len(answered) + len(rejected) == burst  # every admitted video got its verdict
    assert all(detail == contract.STATUS_OK for _, _, detail in answered), answered
    queue_full = [o for o in rejected if QUEUE_FULL in o[2]]
    # the rest waited past the queue timeout (possible on a slow machine): also refused cleanly
    assert all(QUEUE_TIMEOUT in o[2] for o in rejected if o not in queue_full), rejected
    assert len(queue_full) >= burst - admitted - 1, outcomes  # one may slip in as one finishes
    assert len(queue_full) <= burst - admitted, outcomes  # the level's whole queue was used
    # refused on arrival, not after waiting: every queue-full refusal took less time than the
    # quickest verdict, which is one video's analysis
    assert max(t for t, _, _ in queue_full) < min(t for t, _, _ in answered), outcomes
    assert triton.is_ready()


def _wait_until_arrived(triton: EmbeddedTriton, count: int, completed_before: int) -> None:
    """Wait until ``count`` requests reached ``face_detector`` since ``completed_before``.

    While one waits the detector is never idle, so those that arrived are the ones waiting,
    the ones completed and the one running: a count that holds when requests finish meanwhile.
    """
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting, completed = detector_counts(triton)
        if waiting and waiting + completed - completed_before + 1 >= count:
            return
        time.sleep(0.01)
    pytest.fail(f"face_detector never had {count} requests arrive while one waited")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_ensemble_serves_the_shorter_video_first_when_both_wait_behind_a_running_one(
    triton: EmbeddedTriton, heavy_request: np.ndarray, protocol: str
) -> None:
    # three videos without a duration (the default level) take the detector: one runs, two
    # wait; then a 60 s video (30 s budget) queues, then a 9 s one (4.5 s budget, room to wait
    # behind the one running). The detector takes the 9 s video next although it arrived last,
    # ahead of the long one and of a default-level one that waited since before it. Three
    # 64-frame requests ahead keep one waiting however fast the detector runs; frames go
    # through shared memory, so each arrives within milliseconds.
    busy = np.concatenate([heavy_request, heavy_request])[: contract.MAX_FRAMES_PER_REQUEST]
    finished: list[str] = []
    lock = threading.Lock()

    def analyze(name: str, frames: np.ndarray, duration: float | None) -> None:
        with DetectorClient(
            getattr(triton.address, f"{protocol}_url"),
            protocol,
            retries=0,
            shared_memory=True,
            timeout_s=120,
        ) as client:
            client.infer(frames, duration_seconds=duration)
            with lock:
                finished.append(name)

    completed_before = detector_counts(triton)[1]
    users: list[threading.Thread] = []

    def arrive(count: int, name: str, frames: np.ndarray, duration: float | None) -> None:
        for _ in range(count):
            user = threading.Thread(target=analyze, args=(name, frames, duration))
            user.start()
            users.append(user)
        _wait_until_arrived(triton, len(users), completed_before)

    arrive(3, "busy", busy, None)
    arrive(1, "long", heavy_request, 60.0)
    arrive(1, "short", heavy_request, SHORT_SECONDS)
    for user in users:
        user.join()
    assert contract.request_priority(SHORT_SECONDS) < contract.request_priority(60.0)
    # in arrival order it would finish last; by deadline, right after the one running
    assert finished[-1] == "long", finished
    assert finished.index("short") < 3, finished  # ahead of a busy one that arrived first


def test_ensemble_refuses_a_video_instead_of_answering_it_late_when_its_budget_runs_out_waiting(
    triton: EmbeddedTriton, heavy_request: np.ndarray
) -> None:
    # two long requests take the detector: one runs, a 120 s video (60 s budget) waits; then a
    # 2 s video arrives whose decode took most of its 1 s budget, so it may wait only the
    # shortest wait. Its own deadline refuses it (its level would let it wait 5 s), and the
    # client does not retry it past its budget; the one with time to wait is answered.
    # Whichever of the two runs first, the hurried one arrives within milliseconds of its start,
    # most of a 64-frame analysis still ahead: frames go through shared memory, where 22-44 MB
    # over gRPC took so long that the running one could finish before the hurried one arrived.
    heaviest = np.concatenate([heavy_request, heavy_request])[: contract.MAX_FRAMES_PER_REQUEST]
    outcomes: dict[str, str] = {}
    url = triton.address.grpc_url
    users = [analyze_in_thread(url, heaviest, None, outcomes, "busy")]
    users.append(analyze_in_thread(url, heaviest, 120.0, outcomes, "patient"))
    wait_until_waiting(triton, 1)  # one of them runs, the other waits
    assert contract.queue_wait_seconds(2.0, 0.95) == contract.MIN_QUEUE_WAIT_S
    users.append(analyze_in_thread(url, heavy_request, 2.0, outcomes, "hurried", spent=0.95))
    for user in users:
        user.join()
    assert outcomes["busy"] == outcomes["patient"] == contract.STATUS_OK, outcomes
    assert outcomes["hurried"].startswith("StatusCode.UNAVAILABLE"), outcomes
    assert QUEUE_TIMEOUT in outcomes["hurried"], outcomes


def test_ensemble_answers_a_video_whose_budget_is_spent_when_the_detector_is_free(
    triton: EmbeddedTriton, heavy_request: np.ndarray
) -> None:
    # its decode took longer than its whole budget: it still gets the shortest wait, and a free
    # detector takes it (a late verdict then delays nobody)
    with DetectorClient(triton.address.grpc_url, "grpc", retries=0, timeout_s=120) as client:
        result = client.infer(heavy_request, duration_seconds=2.0, spent_seconds=5.0)
    assert result.status == contract.STATUS_OK
