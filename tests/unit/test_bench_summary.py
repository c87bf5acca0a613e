"""How `fakescope bench` turns timed runs into speed-ups (the figures its summary reports)."""

from __future__ import annotations

import functools
import mmap
from pathlib import Path

import pytest

from fakescope.benchmarks.run import (
    CLIENT_SAMPLE,
    PairLeads,
    compare_with_inprocess,
    cpu_per_video,
    render_markdown,
    speedup_summary,
    spread_rounds,
    summarize_level,
    time_paths,
)
from fakescope.benchmarks.targets import check_targets
from fakescope.cli import build_parser
from tests.support.bench_summaries import gpu_run_summary


def _recording_path(calls: list[str], name: str):
    """A timed path that records its name in ``calls`` and takes 1 s."""

    def run(video):
        calls.append(name)
        return 1.0, None

    return run


def test_speedup_reports_median_and_range_over_videos_when_runs_differ():
    base = {"a.mp4": [10.0, 12.0, 11.0], "b.mp4": [30.0, 30.0, 90.0], "c.mp4": [4.0, 4.0, 4.0]}
    ours = {"a.mp4": [1.0, 1.0, 3.0], "b.mp4": [2.0, 3.0, 3.0], "c.mp4": [2.0, 2.0, 2.0]}
    result = speedup_summary(base, ours)
    assert result["per_video"] == pytest.approx({"a.mp4": 11.0, "b.mp4": 10.0, "c.mp4": 2.0})
    assert result["median"] == pytest.approx(10.0)
    assert (result["min"], result["max"]) == pytest.approx((2.0, 11.0))


def test_time_paths_warms_every_path_up_then_interleaves_rounds_when_paths_are_measured():
    calls: list[tuple[str, str]] = []

    def path(name):
        def run(video):
            calls.append((name, video.name))
            return float(len(calls)), 0.5

        return run

    timed = time_paths(
        {"a": path("a"), "b": path("b")}, [Path("x.mp4"), Path("y.mp4")], {"a": 2, "b": 2}
    )
    warm_up = [("a", "x.mp4"), ("b", "x.mp4"), ("a", "y.mp4"), ("b", "y.mp4")]
    assert calls[:4] == warm_up  # every path on every video, not counted
    assert calls[4:] == warm_up * 2  # then each round takes every video through every path
    assert timed.seconds == {
        "a": {"x.mp4": [5.0, 9.0], "y.mp4": [7.0, 11.0]},
        "b": {"x.mp4": [6.0, 10.0], "y.mp4": [8.0, 12.0]},
    }


def test_time_paths_spreads_a_path_with_fewer_runs_over_the_rounds_when_counts_differ():
    calls: list[str] = []
    path = functools.partial(_recording_path, calls)
    timed = time_paths({"a": path("a"), "slow": path("slow")}, [Path("x.mp4")], {"a": 6, "slow": 2})
    assert calls[:2] == ["a", "slow"]  # the warm-up runs every path
    # six rounds; the slow path takes part in the first and the fourth
    assert calls[2:] == ["a", "slow", "a", "a", "a", "slow", "a", "a"]
    assert {name: len(runs["x.mp4"]) for name, runs in timed.seconds.items()} == {"a": 6, "slow": 2}
    assert {name: len(runs["x.mp4"]) for name, runs in timed.usage.items()} == {"a": 6, "slow": 2}


def test_time_paths_lets_the_pair_lead_in_turn_when_a_baseline_runs_before_their_turn():
    calls: list[str] = []
    path = functools.partial(_recording_path, calls)
    paths = {name: path(name) for name in ("served", "ort", "sample", "base")}
    runs = {"served": 6, "ort": 6, "sample": 6, "base": 3}
    time_paths(paths, [Path("x.mp4")], runs, pair=("served", "ort"))
    assert calls[:4] == ["served", "ort", "sample", "base"]  # the warm-up keeps the given order
    # the baseline takes part in rounds 0, 2 and 4; the pair's lead alternates after each path
    assert calls[4:] == [
        *("served", "ort", "sample", "base"),  # after base (the warm-up's)
        *("ort", "served", "sample"),  # after base
        *("served", "ort", "sample", "base"),  # after sample
        *("served", "ort", "sample"),  # after base
        *("ort", "served", "sample", "base"),  # after sample
        *("ort", "served", "sample"),  # after base
    ]


def test_pair_leads_alternate_per_video_when_the_same_path_ran_before():
    leads = PairLeads(("a", "c"))
    names = ["a", "b", "c"]
    assert leads.order(names, "x.mp4", "c") == ["a", "b", "c"]
    assert leads.order(names, "y.mp4", "c") == ["a", "b", "c"]  # each video counts on its own
    assert leads.order(names, "x.mp4", "c") == ["c", "b", "a"]
    assert leads.order(names, "x.mp4", "b") == ["a", "b", "c"]  # and after each other path
    assert leads.order(names, "x.mp4", "c") == ["a", "b", "c"]


def test_time_paths_records_the_page_faults_of_each_run_when_a_path_touches_fresh_memory():
    pages = 8192  # 32 MiB of 4 KiB pages, mapped afresh in each run

    def touch(video):
        block = mmap.mmap(-1, pages * mmap.PAGESIZE)
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1
        block.close()
        return 0.0, None

    def idle(video):
        return 0.0, None

    timed = time_paths({"touch": touch, "idle": idle}, [Path("x.mp4")], {"touch": 2, "idle": 2})
    for usage in timed.usage["touch"]["x.mp4"]:
        assert usage["page_faults"] >= pages
    for usage in timed.usage["idle"]["x.mp4"]:
        assert usage["page_faults"] < pages // 8


@pytest.mark.parametrize(
    ("runs", "rounds", "expected"), [(5, 15, {0, 3, 6, 9, 12}), (4, 4, {0, 1, 2, 3}), (1, 7, {0})]
)
def test_spread_rounds_spaces_runs_evenly_when_counts_are_valid(runs, rounds, expected):
    assert spread_rounds(runs, rounds) == expected


@pytest.mark.parametrize(("runs", "rounds"), [(0, 5), (6, 5), (-1, 5)])
def test_spread_rounds_raises_when_runs_are_outside_the_rounds(runs, rounds):
    with pytest.raises(ValueError, match=r"runs must be in 1\.\.5"):
        spread_rounds(runs, rounds)


def test_render_markdown_tables_levels_and_speedups_when_summary_is_complete():
    level = {
        "ratio": {"p50": 0.05, "p95": 0.1},
        "videos_per_minute": 90.0,
        "requests": 45,
        "accepted": 45,
        "rejected": 0,
        "failures": 0,
        "cpu_seconds_per_video": {"load_generator": 0.61, "server": 0.655},
        "host_probe": {"median_ms": 66.44},
        "steal_share": 0.0123,
    }
    summary = {
        "mode": "load",
        "frames": 16,
        "limit": 0.5,
        "run_time_seconds_per_level": 30,
        "shared_memory": "on",
        "videos": ["a.mp4", "b.mp4"],
        "machine": {"load_average_at_start": [0.4, 0.3, 0.2], "cores": 2},
        "levels": {"grpc": {"1": level}, "http": {"1": level}},
        "host_probe_what": "R-Net on fixed windows",
        "host_probe_before_inprocess": {"median_ms": 65.06},
        "triton_overhead": 0.031,
        "speedup_ceiling_vs_like_for_like_baseline": {
            "median": 2.5,
            "min": 2.0,
            "max": 3.0,
            "per_video": {"a.mp4": 2.5},
        },
        "speedup_vs_seed_pipeline": {
            "median": 40.0,
            "min": 20.0,
            "max": 60.5,
            "per_video": {"a.mp4": 40.0},
        },
        "inprocess": {
            "served": {"what": "the served path", "ratio": {"p50": 0.05}, "timed_runs": 15},
            "seed_pipeline": {
                "what": "the seed",
                "ratio": {"p50": 0.8},
                "timed_runs": 5,
                "seconds": {"a.mp4": 8.0},
                "process_usage": {
                    "a.mp4": {"user_cpu_s": 13.2, "system_cpu_s": 2.5, "page_faults": 1.0e6}
                },
            },
        },
        "passed": True,
        "failures": [],
    }
    text = render_markdown(summary)
    assert "| 1 | 0.050 / 0.100 | 0.050 / 0.100 | 90 | 45 / 0 / 0 |" in text
    assert "+3.1 %" in text
    assert "seed pipeline: 40.0× median over videos (20.0–60.5×; a.mp4 40.0×)" in text
    assert "decode and sample alone): 2.5× median over videos (2.0–3.0×; a.mp4 2.5×)" in text
    assert (
        "| http | 1 | 45 | 45 | 0 | 0 | 90 | 0.100 | n/a / n/a | 0.61 / 0.66 | 66.4 | 1.2 |" in text
    )
    # a summary without probe readings (older runs) still renders
    no_probe = {k: v for k, v in level.items() if k not in ("host_probe", "steal_share")}
    old_run = dict(summary, levels={"grpc": {"1": no_probe}})
    assert "| 0.61 / 0.66 | n/a | n/a |" in render_markdown(old_run)
    assert "first video is an untimed warm-up" in text
    # how the frames travelled: a run with them in the request body says so
    assert "; frames through shared memory; videos: a.mp4, b.mp4; load average" in text
    body = render_markdown(dict(summary, shared_memory="off"))
    assert "; frames in the request body, as from a client on another host;" in body
    # each path says how often it was timed; older runs kept one count for every path
    assert "`served` ratio p50 0.050: the served path (median of 15 runs per video)" in text
    assert "`seed_pipeline` ratio p50 0.800: the seed (median of 5 runs per video)" in text
    older_paths = {"timed_runs": 3, "served": {"what": "the served path", "ratio": {"p50": 0.05}}}
    older_text = render_markdown(dict(summary, inprocess=older_paths))
    assert "the served path (median of 3 runs per video)" in older_text
    # the pair that trades places is named where the run recorded it (older runs did not)
    assert "run first in turn" not in text
    paired = dict(summary["inprocess"], pair_leads_in_turn=["served", "ort"])
    assert "`served` and `ort` run first in turn" in render_markdown(
        dict(summary, inprocess=paired)
    )
    # what the process used per run; a path or an older run without it has no row
    assert "| seed_pipeline | a.mp4 | 8.00 | 13.20 | 2.50 | 1000.0 | 2.5 |" in text
    assert "| served |" not in text
    few_faults = {"a.mp4": {"user_cpu_s": 0.2, "system_cpu_s": 0.01, "page_faults": 40.0}}
    seed_few = dict(summary["inprocess"]["seed_pipeline"], process_usage=few_faults)
    few_text = render_markdown(dict(summary, inprocess={"seed_pipeline": seed_few}))
    assert "| seed_pipeline | a.mp4 | 8.00 | 0.20 | 0.01 | 0.0 | n/a |" in few_text
    assert "system µs per fault" not in older_text
    assert "running: R-Net on fixed windows; before the in-process comparison: 65.1 ms." in text
    # overload runs decode before the run and send no warm-up video
    assert "warm-up" not in render_markdown(dict(summary, mode="overload"))
    # the measured commit, where the run recorded it (older runs did not)
    assert "Written by `fakescope bench` from `summary.json`; limit" in text
    versioned = render_markdown(dict(summary, code_version="abc123-dirty"))
    assert "from `summary.json` (code `abc123-dirty`); limit" in versioned
    # the targets, as the run checked them, close the page; an older run has none
    assert "targets" not in text
    checked = dict(summary, targets=check_targets(summary))
    assert render_markdown(checked).endswith(
        "| seed speed-up | >= 25x, median over videos | 40.0x (20.0-60.5x) | met |\n"
    )


def test_cpu_per_video_splits_the_level_cpu_by_side_when_videos_were_analysed():
    cpu = cpu_per_video(12.0, 9.0, 30)
    assert cpu == {"videos": 30, "load_generator": 0.4, "server": 0.3, "total": 0.7}


def test_cpu_per_video_has_no_figures_when_no_video_was_analysed():
    assert cpu_per_video(1.0, 2.0, 0)["total"] is None


def test_compare_with_inprocess_bounds_the_like_for_like_speedup_by_decoding_when_it_was_timed():
    inprocess = {
        "served": {"runs": {"a.mp4": [0.5, 0.5, 0.5]}},
        "onnxruntime_inprocess": {"runs": {"a.mp4": [0.4, 0.4, 0.4]}},
        CLIENT_SAMPLE: {"runs": {"a.mp4": [0.25, 0.3, 0.2]}},
        "like_for_like_baseline": {"runs": {"a.mp4": [0.75, 0.75, 0.75]}},
    }
    summary = {"inprocess": inprocess}
    compare_with_inprocess(summary)
    assert summary["speedup_vs_like_for_like_baseline"]["median"] == pytest.approx(1.5)
    # even a server that took no time would leave the decode: 0.75 s over 0.25 s at best
    assert summary["speedup_ceiling_vs_like_for_like_baseline"]["median"] == pytest.approx(3.0)
    del inprocess[CLIENT_SAMPLE]
    older = {"inprocess": inprocess}
    compare_with_inprocess(older)
    assert "speedup_ceiling_vs_like_for_like_baseline" not in older


def test_summarize_level_counts_the_answered_videos_of_each_file_when_some_were_refused():
    records = [
        {"video": "a.mp4", "status": "ok", "ratio": 0.1, "processing_seconds": 1.0},
        {"video": "a.mp4", "status": "ok", "ratio": 0.3, "processing_seconds": 3.0},
        {"video": "b.mp4", "status": "ok", "ratio": 0.2, "processing_seconds": 2.0},
        {"video": "b.mp4", "status": "rejected", "infer_seconds": 0.02},
    ]
    level = summarize_level(records, run_time_s=60)
    assert (level["accepted"], level["rejected"], level["failures"]) == (3, 1, 0)
    assert level["ratio"]["count"] == 3
    assert level["ratio_per_video"]["a.mp4"]["count"] == 2
    assert level["ratio_per_video"]["b.mp4"] == pytest.approx(
        {"count": 1, "p50": 0.2, "p95": 0.2, "max": 0.2}
    )
    assert level["rejection_ms"]["count"] == 1


def test_summarize_level_counts_late_answers_and_refusals_by_reason_when_past_capacity():
    full = "in ensemble 'deepfake_detector', Exceeds maximum queue size"
    expired = "in ensemble 'deepfake_detector', Request timeout expired"
    records = [
        {"video": "a.mp4", "status": "ok", "ratio": 0.49, "processing_seconds": 2.9},
        {"video": "a.mp4", "status": "ok", "ratio": 0.55, "processing_seconds": 3.3},
        {"video": "b.mp4", "status": "rejected", "infer_seconds": 0.02, "error": full},
        {"video": "b.mp4", "status": "rejected", "infer_seconds": 2.1, "error": expired},
        {"video": "b.mp4", "status": "rejected", "infer_seconds": 2.2, "error": expired},
        {"video": "b.mp4", "status": "rejected", "infer_seconds": 0.1, "error": "503"},
    ]
    level = summarize_level(records, run_time_s=60)
    assert level["late"] == 1  # past the product's limit of half the duration
    assert level["rejected_by_reason"] == {"queue_full": 1, "queue_timeout": 2, "other": 1}
    # per file, zeros included: a file never refused or never late still has its count
    assert level["late_per_video"] == {"a.mp4": 1, "b.mp4": 0}
    assert level["rejected_per_video"] == {"a.mp4": 0, "b.mp4": 4}


def test_render_markdown_names_the_gpu_and_where_models_ran_when_a_gpu_run_says_so():
    summary = gpu_run_summary(
        detector_nets="bls",
        served_instances={"deepfake_detector": ["ensemble"], "mtcnn_pnet": ["1 KIND_GPU"]},
    )
    text = render_markdown(summary)
    assert "on 16 cores (unknown; 1 × NVIDIA H200)." in text
    assert "- MTCNN nets: bls; instances as served: deepfake_detector ensemble; " in text
    assert "mtcnn_pnet 1 KIND_GPU" in text
    # a run from before GPUs were recorded says none
    older = dict(summary, machine={"load_average_at_start": [0.3] * 3, "cores": 2})
    assert "(unknown; no GPU)." in render_markdown(older)


def test_bench_parser_takes_video_files_when_they_exist(tmp_path: Path) -> None:
    video = tmp_path / "real.mp4"
    video.write_bytes(b"not decoded by the parser")
    args = build_parser().parse_args(["bench", "--videos", str(video)])
    assert args.videos == [video]
    assert build_parser().parse_args(["bench"]).videos is None  # the bench videos then


def test_bench_parser_exits_with_a_message_when_a_video_file_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["bench", "--videos", str(tmp_path / "gone.mp4")])
    assert exited.value.code == 2
    assert f"no such video file: {tmp_path / 'gone.mp4'}" in capsys.readouterr().err
