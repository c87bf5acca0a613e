"""Every serving limit is defined once; the places that must repeat it agree with its home.

Homes: ``contract.MAX_FRAMES_PER_REQUEST`` (the client checks it without a server);
``face_detector`` ``max_frame_side`` and ``max_request_pixels``; each model's ``max_batch_size``
(read by ``face_detector`` for R-/O-Net); the python stubs' shared memory, derived from the
request limit by :mod:`fakescope.serving.embedded` and repeated in ``docker-compose.yml``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from fakescope import contract
from fakescope.client.analyze import DEFAULT_MAX_SIDE
from fakescope.client.shared_memory import MAX_REGIONS
from fakescope.serving.embedded import PYTHON_SHM_START_BYTES, python_shm_growth_bytes
from fakescope.serving.model_config import (
    FRAME_CHANNELS,
    config_parameters,
    max_batch_size,
    max_request_bytes,
)
from fakescope.web.settings import Settings
from tests.support.servers import REPOSITORY

COMPOSE = REPOSITORY.parent / "docker-compose.yml"


def _config(model: str) -> model_config_pb2.ModelConfig:
    text = (REPOSITORY / model / "config.pbtxt").read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _detector_parameters() -> dict[str, str]:
    return config_parameters(REPOSITORY / contract.FACE_DETECTOR_MODEL / "config.pbtxt")


def _docker_bytes(size: str) -> int:
    """Bytes of a Docker size string such as ``2gb`` (binary multiples, as Docker reads them)."""
    match = re.fullmatch(r"(\d+)\s*([bkmg]?)b?", size.strip().lower())
    assert match, f"not a Docker size: {size!r}"
    return int(match.group(1)) * 1024 ** "bkmg".index(match.group(2) or "b")


def _compose_backend_config(name: str) -> int:
    command = yaml.safe_load(COMPOSE.read_text())["services"]["triton"]["command"]
    values = [
        c.rsplit("=", 1)[1] for c in command if c.startswith(f"--backend-config=python,{name}=")
    ]
    assert len(values) == 1, f"docker-compose.yml sets python {name} {len(values)} times"
    return int(values[0])


def test_face_detector_config_leaves_frame_count_to_contract_when_parsed():
    assert "max_frames" not in _detector_parameters()


def test_face_detector_limits_admit_client_default_request_when_parsed():
    params = _detector_parameters()
    side = int(params["max_frame_side"])
    assert contract.MIN_FRAME_SIDE <= DEFAULT_MAX_SIDE <= side
    # The limit is MAX_FRAMES_PER_REQUEST 16:9 frames at the client's default long side.
    default_frame = DEFAULT_MAX_SIDE * (DEFAULT_MAX_SIDE * 9 // 16)
    assert int(params["max_request_pixels"]) == contract.MAX_FRAMES_PER_REQUEST * default_frame
    assert max_request_bytes(REPOSITORY) == int(params["max_request_pixels"]) * FRAME_CHANNELS


@pytest.mark.parametrize("model", [contract.RNET_MODEL, contract.ONET_MODEL])
def test_max_batch_size_matches_protobuf_parse_when_reading_mtcnn_configs(model):
    read = max_batch_size(REPOSITORY / model / "config.pbtxt")
    assert read == _config(model).max_batch_size
    assert read >= 1  # face_detector splits candidates into batches of this size


def test_max_batch_size_names_file_when_config_states_none(tmp_path: Path):
    config = tmp_path / "config.pbtxt"
    config.write_text('name: "m"\n# max_batch_size: 8\ndynamic_batching { }\n')
    with pytest.raises(ValueError, match=re.escape(str(config))):
        max_batch_size(config)


def test_face_scorer_chunk_fits_classifier_batch_when_configs_parsed():
    chunk = int(
        config_parameters(REPOSITORY / contract.FACE_SCORER_MODEL / "config.pbtxt")["chunk_size"]
    )
    assert 1 <= chunk <= _config(contract.CLASSIFIER_MODEL).max_batch_size


def test_face_detector_crops_of_a_request_fit_its_frames_bytes_when_configs_parsed():
    detector = config_parameters(REPOSITORY / contract.FACE_DETECTOR_MODEL / "config.pbtxt")
    classifier = config_parameters(REPOSITORY / contract.CLASSIFIER_MODEL / "config.pbtxt")
    side = int(classifier[contract.INPUT_SIZE_PARAMETER])
    faces = contract.MAX_FRAMES_PER_REQUEST * int(detector["max_faces_per_frame"])
    # FACE_CROPS of a request at the limit: within the one growth step sized for its FRAMES
    assert faces * side * side * FRAME_CHANNELS <= max_request_bytes(REPOSITORY)


def test_docker_compose_shm_matches_embedded_server_when_parsed():
    start = _compose_backend_config("shm-default-byte-size")
    growth = _compose_backend_config("shm-growth-byte-size")
    assert start == PYTHON_SHM_START_BYTES
    assert growth == python_shm_growth_bytes(REPOSITORY)
    assert growth > max_request_bytes(REPOSITORY)  # a request at the limit: one growth step
    python_instances = sum(
        sum(group.count or 1 for group in config.instance_group) or 1
        for config in (_config(p.parent.name) for p in REPOSITORY.glob("*/config.pbtxt"))
        if config.backend == "python"
    )
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    # the web service's analysis threads each hold at most MAX_REGIONS frames regions in the
    # same /dev/shm (its `ipc`), each at most twice the largest request (client/shared_memory.py)
    environment = services["web"]["environment"]
    web_threads = int(environment.get("FAKESCOPE_WEB_WORKERS", Settings().workers))
    web_regions = web_threads * MAX_REGIONS * 2 * max_request_bytes(REPOSITORY)
    shm_size = _docker_bytes(str(services["triton"]["shm_size"]))
    assert shm_size >= python_instances * (start + growth) + web_regions


def test_face_detector_declares_the_clients_priority_levels_when_parsed():
    batching = _config(contract.FACE_DETECTOR_MODEL).dynamic_batching
    assert batching.priority_levels == contract.PRIORITY_LEVELS
    assert 1 <= batching.default_priority_level <= contract.PRIORITY_LEVELS
    # every priority a client can send names a level the detector has
    durations = [0.5, 9.9, 10.0, 29.9, 30.0, 3600.0]
    assert {contract.request_priority(d) for d in durations} == set(
        range(1, contract.PRIORITY_LEVELS + 1)
    )


def test_face_detector_queues_leave_each_deadline_class_time_to_answer_when_parsed():
    batching = _config(contract.FACE_DETECTOR_MODEL).dynamic_batching
    default = batching.default_queue_policy
    levels = batching.priority_queue_policy
    assert set(levels) <= set(range(2, contract.PRIORITY_LEVELS + 1))  # only declared levels
    assert contract.PRIORITY_LEVELS in levels  # the class served last has its own policy
    for level, policy in levels.items():
        smallest_budget_us = contract.PRIORITY_BUDGET_BOUNDS_S[level - 2] * 1e6
        if level < contract.PRIORITY_LEVELS:
            # an admitted video that waited the whole timeout still has time to be analysed
            # (a request without a priority joins such a level, its budget unknown)...
            assert policy.default_timeout_microseconds < smallest_budget_us, level
        else:
            # ...while only a caller who knows the budget sends the last priority, with its
            # own deadline: the level's timeout is a cap that must not refuse the level's
            # shortest videos while their own budget is still running
            assert policy.default_timeout_microseconds > smallest_budget_us, level
        # the late are refused, not answered after their limit
        assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT, level
        assert policy.max_queue_size >= default.max_queue_size, level
    # served last, the longest class may wait longest
    longest = levels[contract.PRIORITY_LEVELS].default_timeout_microseconds
    assert longest == max(p.default_timeout_microseconds for p in [default, *levels.values()])


@pytest.mark.parametrize(
    ("duration", "priority"),
    [(None, 0), (1.0, 1), (6.0, 1), (9.99, 1), (10.0, 2), (15.0, 2), (29.9, 2), (30.0, 3), (60, 3)],
)
def test_request_priority_puts_shorter_budgets_first_when_duration_is_known(duration, priority):
    assert contract.request_priority(duration) == priority


def test_face_detector_queues_take_each_requests_own_wait_when_parsed():
    # the client sends each video's wait (queue_wait_seconds); a policy that does not allow the
    # override keeps its level's timeout, which past capacity answered short videos late. Triton
    # takes a request's timeout only when it is shorter than the policy's, so a policy without
    # one (0: wait for ever) would ignore it too.
    batching = _config(contract.FACE_DETECTOR_MODEL).dynamic_batching
    policies = [batching.default_queue_policy, *batching.priority_queue_policy.values()]
    assert all(policy.allow_timeout_override for policy in policies)
    assert all(policy.default_timeout_microseconds > 0 for policy in policies)


@pytest.mark.parametrize(
    ("duration", "spent", "wait"),
    [
        (None, 0.0, None),  # unknown: the queue's own timeout
        (10.0, 0.0, 5.0 - contract.ANALYSIS_RESERVE_S),
        (10.0, 1.5, 3.5 - contract.ANALYSIS_RESERVE_S),
        (60.0, 0.5, 29.5 - contract.ANALYSIS_RESERVE_S),
        (6.0, 3.0, contract.MIN_QUEUE_WAIT_S),  # budget spent on the decode
        (1.0, 0.45, contract.MIN_QUEUE_WAIT_S),  # less left than the shortest wait
    ],
)
def test_queue_wait_seconds_leaves_the_analysis_its_reserve_when_the_budget_allows(
    duration, spent, wait
):
    assert contract.queue_wait_seconds(duration, spent) == pytest.approx(wait)
