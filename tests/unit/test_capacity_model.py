"""The capacity model: its queueing against closed forms, the HPA algorithm, its result files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import simpy

from fakescope.benchmarks.capacity import __main__ as capacity_cli
from fakescope.benchmarks.capacity.cluster import (
    Cluster,
    Mix,
    constant_rate,
    diurnal_rate,
    poisson_arrivals,
)
from fakescope.benchmarks.capacity.experiments import build_model, open_run
from fakescope.benchmarks.capacity.hpa import Autoscaler, HpaBehavior, proposal
from fakescope.benchmarks.capacity.inputs import InputError, SpeedUp, load_measurements
from fakescope.benchmarks.capacity.report import DEFAULT_COMMAND, render_markdown
from fakescope.paths import PROJECT_ROOT


class ExponentialWork:
    """A one-kind workload with exponential work (the textbook M/M/c case), duration 1 s."""

    durations_s = (1.0,)

    def __init__(self, mean_s: float) -> None:
        self.mean_s = mean_s

    def draw(self, rng, kind=None):
        return 0, 1.0, float(rng.exponential(self.mean_s))


def mean_sojourn(speedup, mix, rate: float, seconds: float, seed: int) -> float:
    env = simpy.Environment()
    cluster = Cluster(env, speedup, slots=10**6, start_s=0.0, record_after=500.0)
    cluster.add_ready(1)
    rng = np.random.default_rng(seed)
    env.process(poisson_arrivals(env, cluster, mix, constant_rate(rate), rate, rng, seconds))
    env.run(until=seconds)
    return float(np.mean([j.finished - j.arrived for j in cluster.finished]))


def test_replica_matches_mg1_processor_sharing_when_speedup_is_flat():
    # M/G/1 processor sharing: mean sojourn = E[S] / (1 - rho) whatever the work's distribution;
    # deterministic 1-s work at 0.5 arrivals/s gives 2 s.
    mix = Mix(durations_s=(1.0,), median_s=(1.0,), sigma=(0.0,))
    measured = mean_sojourn(SpeedUp((1,), (1.0,)), mix, rate=0.5, seconds=20_000, seed=1)
    assert measured == pytest.approx(2.0, rel=0.08)


def test_replica_matches_mm2_when_speedup_doubles_at_two_jobs():
    # S(n) = min(n, 2) with exponential work is M/M/2's birth-death chain: Erlang C.
    rate, mu = 1.5, 1.0
    a, rho = rate / mu, rate / (2 * mu)
    erlang_c = (a**2 / 2 / (1 - rho)) / (1 + a + a**2 / 2 / (1 - rho))
    expected = 1 / mu + erlang_c / (2 * mu - rate)
    speedup = SpeedUp((1, 2), (1.0, 2.0))
    measured = mean_sojourn(speedup, ExponentialWork(1 / mu), rate, seconds=20_000, seed=2)
    assert measured == pytest.approx(expected, rel=0.08)


def test_speedup_interpolates_between_levels_and_stays_flat_when_past_the_last():
    speedup = SpeedUp((1, 2, 4), (1.0, 1.6, 1.8))
    assert speedup(0) == 0.0
    assert speedup(3) == pytest.approx(1.7)
    assert speedup(16) == pytest.approx(1.8)


def test_speedup_refuses_a_curve_when_it_does_not_start_at_one_user():
    with pytest.raises(InputError):
        SpeedUp((2, 4), (1.0, 1.5))


def test_mix_reproduces_median_and_p95_when_drawn_from_quantiles():
    mix = Mix.from_quantiles([6.0], [0.8], [1.0])
    rng = np.random.default_rng(3)
    work = np.array([mix.draw(rng)[2] for _ in range(20_000)])
    assert np.median(work) == pytest.approx(0.8, rel=0.02)
    assert np.quantile(work, 0.95) == pytest.approx(1.0, rel=0.03)


def test_diurnal_rate_averages_to_the_daily_volume_when_integrated_over_a_day():
    rate = diurnal_rate(100_000, peak_factor=2.0)
    t = np.linspace(0, 86_400, 10_001)[:-1]
    assert np.mean([rate(x) for x in t]) * 86_400 == pytest.approx(100_000, rel=1e-6)
    assert rate(0.0) == pytest.approx(2 * 100_000 / 86_400)


def test_hpa_proposal_keeps_replicas_when_metric_is_within_tolerance():
    assert proposal(4, metric=2.15, target=2.0, tolerance=0.1) == 4
    assert proposal(4, metric=1.85, target=2.0, tolerance=0.1) == 4
    assert proposal(4, metric=3.0, target=2.0, tolerance=0.1) == 6
    assert proposal(4, metric=0.9, target=2.0, tolerance=0.1) == 2


def test_hpa_holds_replicas_through_the_scale_down_window_when_load_drops():
    hpa = Autoscaler(HpaBehavior(target=2.0))  # scale-down window 300 s
    assert hpa.decide(0.0, current=10, metric=2.0) == 10
    decisions = [hpa.decide(t, current=10, metric=1.0) for t in range(15, 301, 15)]
    assert set(decisions) == {10}  # the t=0 proposal of 10 is still in the window
    assert hpa.decide(315.0, current=10, metric=1.0) == 5


def test_hpa_limits_scale_up_to_the_policy_when_load_jumps():
    hpa = Autoscaler(HpaBehavior(target=2.0))  # max(4 pods, 100 %) per period
    assert hpa.decide(0.0, current=2, metric=20.0) == 6
    assert hpa.decide(15.0, current=6, metric=20.0 * 2 / 6) == 12


def test_hpa_scale_up_waits_for_its_window_when_one_is_set():
    hpa = Autoscaler(HpaBehavior(target=2.0, scale_up_window_s=60.0))
    assert hpa.decide(0.0, current=4, metric=2.0) == 4
    # a spike: the lowest proposal of the last 60 s (4) wins until the window has passed
    assert hpa.decide(15.0, current=4, metric=4.0) == 4
    assert hpa.decide(60.0, current=4, metric=4.0) == 4
    assert hpa.decide(75.0, current=4, metric=4.0) == 8


def test_hpa_refuses_behaviour_when_target_is_not_positive():
    with pytest.raises(ValueError):
        HpaBehavior(target=0.0)


@pytest.fixture(scope="module")
def model():
    # the committed result files: missing or broken, they fail the tests that read them
    return build_model(load_measurements(), "grpc", slots=2)


def test_cluster_runs_more_replicas_when_more_videos_arrive(model):
    runs = [
        open_run(
            model,
            constant_rate(rate),
            rate,
            1800.0,
            300.0,
            seed=5,
            behavior=HpaBehavior(target=2.0),
            replicas=1,
        )
        for rate in (0.5, 2.0, 6.0)
    ]
    means = [r.mean_replicas for r in runs]
    assert means == sorted(means) and means[0] < means[-1]
    assert all(r.unfinished == 0 for r in runs)


def test_one_replica_breaks_the_limit_when_arrivals_pass_its_capacity(model):
    rate = 1.2 * model.capacity_per_replica()
    run = open_run(
        model,
        constant_rate(rate),
        rate,
        1200.0,
        300.0,
        seed=6,
        behavior=None,
        replicas=1,
        drain_s=0.0,
    )
    assert run.p95 > 0.5


#: The committed capacity pages, (result JSON, page, plot): on the bench videos (make capacity)
#: and on the DFDC sample videos (the command in its page).
PAGES = [
    (capacity_cli.RESULT_JSON, capacity_cli.PAGE, capacity_cli.PLOT),
    (
        PROJECT_ROOT / "docs" / "results" / "capacity-real-videos" / "capacity.json",
        PROJECT_ROOT / "docs" / "capacity-real-videos.md",
        PROJECT_ROOT / "docs" / "capacity-real-videos.png",
    ),
]


@pytest.mark.parametrize(("result", "page", "plot"), PAGES)
def test_committed_page_matches_rendering_when_rendered_from_committed_json(
    result: Path, page: Path, plot: Path
):
    doc = json.loads(result.read_text())
    assert page.read_text() == render_markdown(doc, page, result, plot)
    assert plot.is_file()
    assert {v["uploads_per_day"] for v in doc["daily_volumes"]} == {10_000, 100_000, 1_000_000}


def test_capacity_command_line_names_only_the_options_not_at_default_when_files_differ():
    parser = capacity_cli.build_parser()
    assert capacity_cli.command_line(parser.parse_args([])) == DEFAULT_COMMAND
    args = parser.parse_args(["--output", "docs/results/other/capacity.json"])
    expected = f"{DEFAULT_COMMAND} --output docs/results/other/capacity.json"
    assert capacity_cli.command_line(args) == expected


def test_capacity_cli_exits_2_naming_the_file_when_render_only_reads_a_broken_result(
    tmp_path: Path, capsys
):
    broken = tmp_path / "capacity.json"
    broken.write_text('{"uploads": [1, 2')  # cut short
    page = tmp_path / "capacity.md"
    code = capacity_cli.main(["--render-only", "--output", str(broken), "--page", str(page)])
    assert code == 2
    assert "capacity.json is not a capacity result" in capsys.readouterr().err
    assert not page.exists()


def test_capacity_cli_exits_2_when_an_input_file_is_missing(tmp_path: Path, capsys):
    code = capacity_cli.main(["--bench-summary", str(tmp_path / "none.json")])
    assert code == 2
    assert "none.json is missing" in capsys.readouterr().err


def test_replicas_for_rounds_up_to_whole_replicas_when_capacity_is_exceeded(model):
    capacity = model.capacity_per_replica()
    assert model.replicas_for(0.0) == 1
    assert model.replicas_for(capacity) == 1
    assert model.replicas_for(capacity * 1.01) == 2
    assert math.isclose(capacity, model.speedup(2) / model.mix.mean_work_s)
