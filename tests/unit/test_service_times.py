"""How the service-time measurement reads Triton's statistics and the server's CPU time."""

from __future__ import annotations

import mmap
import os
import subprocess
import time
from pathlib import Path

import pytest

from fakescope.benchmarks.result_files import code_version
from fakescope.benchmarks.service_times import (
    Snapshot,
    admission_split,
    build_parser,
    interleaved,
    model_input_seconds,
    model_requests,
    model_seconds,
    process_group_cpu_seconds,
    process_group_minor_faults,
    request_split,
    stage_split,
)


def test_model_seconds_sums_versions_when_a_model_has_several():
    # the shape of get_inference_statistics(as_json=True): 64-bit counters as strings
    stats = {
        "model_stats": [
            {
                "name": "face_classifier",
                "version": "3",
                "inference_stats": {"success": {"ns": "2000000000"}},
            },
            {
                "name": "face_classifier",
                "version": "4",
                "inference_stats": {"success": {"ns": "500000000"}},
            },
            {"name": "face_detector", "version": "1", "inference_stats": {"success": {}}},
        ]
    }
    assert model_seconds(stats) == {"face_classifier": 2.5, "face_detector": 0.0}


def test_model_input_seconds_reads_compute_input_not_success_when_a_model_has_both():
    stats = {
        "model_stats": [
            {
                "name": "face_detector",
                "version": "1",
                "inference_stats": {
                    "success": {"count": "2", "ns": "300000000"},
                    "compute_input": {"count": "2", "ns": "16000000"},
                },
            },
            {"name": "video_aggregator", "version": "1", "inference_stats": {}},
        ]
    }
    assert model_input_seconds(stats) == {"face_detector": 0.016, "video_aggregator": 0.0}


def test_request_split_counts_each_stage_models_calls_when_counters_grow():
    stats = {
        "model_stats": [
            {"name": "mtcnn_pnet", "version": "1", "inference_stats": {"success": {"count": "7"}}},
            {"name": "mtcnn_rnet", "version": "1", "inference_stats": {"success": {"count": "2"}}},
        ]
    }
    before = Snapshot({}, 0.0, {"mtcnn_pnet": 3.0})
    after = Snapshot({}, 0.0, model_requests(stats))
    split = request_split(before, after)
    assert (split["mtcnn_pnet"], split["mtcnn_rnet"], split["face_detector"]) == (4.0, 2.0, 0.0)


def test_stage_split_reports_each_stage_model_when_counters_grow():
    before = Snapshot({"face_detector": 1.0, "face_scorer": 2.0}, 10.0)
    after = Snapshot({"face_detector": 1.25, "face_scorer": 2.5, "face_classifier": 0.4}, 11.0)
    split = stage_split(before, after)
    assert split["face_detector"] == pytest.approx(0.25)
    assert split["face_scorer"] == pytest.approx(0.5)
    assert split["face_classifier"] == pytest.approx(0.4)
    assert split["video_aggregator"] == 0.0


def test_process_group_cpu_seconds_counts_this_process_when_it_burns_cpu():
    group = os.getpgid(0)
    before = process_group_cpu_seconds(group)
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    assert process_group_cpu_seconds(group) - before >= 0.2


def test_process_group_minor_faults_counts_pages_when_this_process_maps_memory():
    group = os.getpgid(0)
    before = process_group_minor_faults(group)
    pages = mmap.mmap(-1, 64 * 1024 * 1024)  # anonymous: each page faults on first touch
    # small pages, as the count assumes: with transparent huge pages "always" one fault
    # would map 512 of them
    pages.madvise(mmap.MADV_NOHUGEPAGE)
    try:
        for offset in range(0, len(pages), mmap.PAGESIZE):
            pages[offset] = 1
    finally:
        pages.close()
    assert process_group_minor_faults(group) - before >= 64 * 1024 * 1024 // mmap.PAGESIZE


def test_service_times_parser_exits_2_when_a_video_file_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--videos", str(tmp_path / "none.mp4")])
    assert info.value.code == 2
    assert "no such video file" in capsys.readouterr().err


def test_interleaved_visits_every_video_once_per_round_when_given_rounds():
    a, b = Path("a.mp4"), Path("b.mp4")
    assert list(interleaved([a, b], 2)) == [a, b, a, b]


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)
    return done.stdout.decode().strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git checkout with one committed benchmark file."""
    _git(tmp_path, "init", "-q")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "run.py").write_text("x = 1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    return tmp_path


def test_code_version_stays_clean_when_only_new_results_are_uncommitted(checkout: Path):
    (checkout / "benchmarks" / "results").mkdir()
    (checkout / "benchmarks" / "results" / "summary.json").write_text("{}\n")
    # not "-dirty", and not "unknown" either
    assert code_version(checkout) == _git(checkout, "rev-parse", "HEAD")


def test_code_version_is_dirty_when_timed_code_changed(checkout: Path):
    (checkout / "benchmarks" / "run.py").write_text("x = 2\n")
    assert code_version(checkout).endswith("-dirty")


def _stats(detector_queue: tuple[int, int], ensemble: tuple[int, int]) -> dict:
    """Triton statistics JSON: (count, ns) of face_detector's queue and the ensemble's success."""
    return {
        "model_stats": [
            {
                "name": "face_detector",
                "version": "1",
                "inference_stats": {
                    "queue": {"count": str(detector_queue[0]), "ns": str(detector_queue[1])}
                },
            },
            {
                "name": "deepfake_detector",
                "version": "1",
                "inference_stats": {"success": {"count": str(ensemble[0]), "ns": str(ensemble[1])}},
            },
        ]
    }


def test_admission_split_parts_queue_and_analysis_when_videos_were_answered():
    before = _stats((2, 1_000_000_000), (2, 3_000_000_000))
    # 4 more videos: 2 s queued in all (0.5 s each), 6 s in the ensemble (1.5 s each)
    after = _stats((6, 3_000_000_000), (6, 9_000_000_000))
    split = admission_split(before, after)
    assert split["videos"] == 4
    assert split["entry_queue_seconds"] == pytest.approx(0.5)
    assert split["after_queue_seconds"] == pytest.approx(1.0)


def test_admission_split_reports_none_when_no_video_was_answered():
    stats = _stats((2, 1_000_000_000), (2, 3_000_000_000))
    split = admission_split(stats, stats)
    assert split == {"videos": 0.0, "entry_queue_seconds": None, "after_queue_seconds": None}
