"""The benchmark against the real server: what its Locust users send and record, and reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tritonclient.grpc as grpcclient

from fakescope import contract
from fakescope.benchmarks.run import locust_env, run_level, served_instances
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress
from tests.support.detector_queue import model_counts
from tests.support.media import make_face_video
from tests.support.servers import free_ports

#: Seconds a level's users get to finish after its run time: a hung level is stopped (and says
#: where it hung) well inside pytest's limit on one test, which would end the whole run.
LEVEL_STOP_S = 60


def test_locust_user_records_every_video_but_its_warm_up_when_a_level_runs(
    triton: EmbeddedTriton, tmp_path: Path
) -> None:
    video = make_face_video(tmp_path / "face.mp4", seconds=2.0, fps=10, codec="avc1")
    env = locust_env([video], triton.address, frames=4, limit=contract.PROCESSING_LIMIT_RATIO)
    before = model_counts(triton.metrics_url, contract.ENSEMBLE_MODEL)[1]

    records = run_level("grpc", 1, env, run_time_s=3, out=tmp_path, stop_timeout_s=LEVEL_STOP_S)

    answered = model_counts(triton.metrics_url, contract.ENSEMBLE_MODEL)[1] - before
    assert records and all(r["status"] == "ok" for r in records)
    assert all(r["video"] == video.name and r["ratio"] > 0 for r in records)
    # the server answered one video more than was recorded: the user's untimed first one
    assert answered == len(records) + 1


def test_locust_users_start_on_different_videos_when_a_level_starts_them_together(
    triton: EmbeddedTriton, tmp_path: Path
) -> None:
    videos = [
        make_face_video(tmp_path / f"{name}.mp4", seconds=2.0, fps=10, codec="avc1")
        for name in ("first", "second")
    ]
    env = locust_env(videos, triton.address, frames=4, limit=contract.PROCESSING_LIMIT_RATIO)

    # long enough for both users' untimed first videos and a timed one each on a busy machine
    records = run_level("grpc", 2, env, run_time_s=5, out=tmp_path, stop_timeout_s=LEVEL_STOP_S)

    by_user: dict[int, list[str]] = {}
    for record in sorted(records, key=lambda r: r["finished_at"]):
        by_user.setdefault(record["user"], []).append(record["video"])
    assert sorted(by_user) == [0, 1]
    names = [v.name for v in videos]
    for user, seen in by_user.items():
        # each user cycles the videos from its own place in the start order
        assert seen == [names[(user + i) % len(names)] for i in range(len(seen))], user


def test_served_instances_reports_the_kind_each_model_became_when_the_server_runs_on_a_cpu(
    triton: EmbeddedTriton,
) -> None:
    client = grpcclient.InferenceServerClient(triton.address.grpc_url)
    try:
        instances = served_instances(client)
    finally:
        client.close()

    assert instances[contract.ENSEMBLE_MODEL] == ["ensemble"]
    # the ONNX models ask for KIND_AUTO: without a GPU the server resolves it to the CPU
    assert instances["face_classifier"] == ["1 KIND_CPU"]
    assert {"mtcnn_pnet", "face_detector", "video_aggregator"} <= set(instances)
    assert all(groups and "KIND_AUTO" not in g for groups in instances.values() for g in groups)


# One Locust user run in its own process (the locustfile patches the process for gevent): a
# video decoded into its client's frames region fails to reach the server (none listens at
# the URL); then whether the region is still mapped once Locust has recorded the failure.
_FAILED_VIDEO_USER = """
import gc, json, os, sys
import gevent
from locust import events
from locust.env import Environment
from fakescope.benchmarks import locustfile
from fakescope.client.triton import DetectorClient

def client_regions_mapped():
    with open("/proc/self/maps", encoding="utf-8") as maps:
        return sum("fakescope_client_" in line for line in maps)

def run():  # in a greenlet, as Locust runs its users
    env = Environment(user_classes=[locustfile.GrpcVideoUser], events=events)
    env.create_local_runner()
    user = locustfile.GrpcVideoUser(env)
    user.client = DetectorClient(sys.argv[2], "grpc", retries=0)
    lend = user.client.frames_buffer
    lent = []

    def lend_and_count(shape):  # the frames' array, and the regions mapped once it is lent
        frames = lend(shape)
        lent.append(client_regions_mapped())
        return frames

    user.client.frames_buffer = lend_and_count
    user.videos = iter([sys.argv[1]])
    user.analyze_video()
    gc.collect()
    return {
        "statuses": [r["status"] for r in locustfile.RECORDS],
        "errors": [r.get("error", "") for r in locustfile.RECORDS],
        "failures": env.stats.total.num_failures,
        "mapped_when_lent": lent,
        "mapped": client_regions_mapped(),
    }

print(json.dumps(gevent.spawn(run).get(timeout=240)), flush=True)
os._exit(0)  # the runner's and gRPC's threads would keep the process alive
"""


def test_locust_user_frees_its_frames_when_locust_recorded_a_failed_video(
    tmp_path: Path,
) -> None:
    video = make_face_video(tmp_path / "face.mp4", seconds=1.0, fps=10, codec="avc1")
    (port,) = free_ports(1)
    address = ServerAddress("127.0.0.1", port, port, port)
    env = locust_env([video], address, frames=4, limit=contract.PROCESSING_LIMIT_RATIO)
    done = subprocess.run(
        [sys.executable, "-c", _FAILED_VIDEO_USER, str(video), address.grpc_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["statuses"] == ["error"] and outcome["failures"] == 1
    assert "cannot reach" in outcome["errors"][0], outcome  # the call failed, not the decode
    # the frames were decoded into a region, and nothing holds them once the failure is recorded
    assert outcome["mapped_when_lent"] and min(outcome["mapped_when_lent"]) >= 1, outcome
    assert outcome["mapped"] == 0
