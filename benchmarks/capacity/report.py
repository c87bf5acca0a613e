"""``docs/capacity.md`` and ``docs/capacity.png``, rendered from the result JSON alone.

Nothing here computes a figure: every number on the page is a field of ``capacity.json`` (or a
sum or ratio of fields, said so where it appears), so the page can be checked against it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fakescope.paths import PROJECT_ROOT

#: The command ``make capacity`` runs: the model on the default inputs, to the default files.
DEFAULT_COMMAND = "python -m fakescope.benchmarks.capacity"
REGENERATE = "make capacity"


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float, digits: int = 0) -> str:
    return f"{value * 100:.{digits}f} %"


def _signed_pct(value: float) -> str:
    return f"{round(value * 100):+d} %"  # an int: never "-0"


def _link(page: Path, target: Path) -> str:
    return os.path.relpath(target.resolve(), page.resolve().parent)


def _rel(path: Path) -> str:
    resolved = path.resolve()
    return (
        str(resolved.relative_to(PROJECT_ROOT))
        if resolved.is_relative_to(PROJECT_ROOT)
        else str(path)
    )


def _volumes(doc: dict[str, Any]) -> list[str]:
    limit = doc["limit"]
    lines = [
        "| uploads / day | mean → peak arrivals / s | static replicas for p95 ≤ "
        f"{limit} at the peak | HPA: most replicas (mean) | p95 / p50 ratio with the HPA | "
        "videos over the limit | GPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in doc["daily_volumes"]:
        hpa, static = v["hpa"], v["static_at_peak"]
        lines.append(
            f"| {v['uploads_per_day']:,} | {v['mean_rate_per_s']:.3f} → {v['peak_rate_per_s']:.3f}"
            f" | {static['replicas']} ({_pct(static['utilisation'])} busy; worst p95 "
            f"{_f(static['worst_run']['p95'])}) | {hpa['max_replicas']} "
            f"({hpa['mean_replicas']:.1f}) | {_f(hpa['p95'])} / {_f(hpa['p50'])} | "
            f"{_pct(hpa['over_limit_share'], 2)} of {hpa['videos']:,} | not measured |"
        )
    return lines


def _unfinished_sentence(doc: dict[str, Any]) -> str:
    runs = [v["hpa"] for v in doc["daily_volumes"]]
    runs += [v["static_at_peak"]["worst_run"] for v in doc["daily_volumes"]]
    left = sum(r["unfinished"] for r in runs)
    if left == 0:
        return "Every counted video got its verdict within the run."
    return f"{left} counted videos had no verdict by the end of their run (not in the p95)."


def _calibration(doc: dict[str, Any]) -> list[str]:
    cal = doc["calibration"]
    lines = [
        "| users | measured gRPC p50 / p95 | measured HTTP p50 / p95 | simulated p50 / p95 | "
        f"simulated p95, range of {doc['inputs']['bench_run_seconds']:.0f}-s windows | "
        "videos / min measured gRPC / simulated |",
        "|---|---|---|---|---|---|",
    ]
    for row in cal["levels"]:
        m, s = row["measured"], row["simulated"]
        cells = [
            f"{_f(m[p]['p50'])} / {_f(m[p]['p95'])}" if p in m else "n/a" for p in ("grpc", "http")
        ]
        lo, hi = s["p95_window_range"]
        lines.append(
            f"| {row['users']} | {cells[0]} | {cells[1]} | {_f(s['p50'])} / {_f(s['p95'])} | "
            f"{_f(lo)}–{_f(hi)} | {m['grpc']['videos_per_minute']:.0f} / "
            f"{s['videos_per_minute']:.0f} |"
        )
    return lines


PROTOCOL_NAMES = {"grpc": "gRPC", "http": "HTTP"}


def _error_sentence(doc: dict[str, Any]) -> str:
    errors = doc["calibration"]["errors"]
    fitted = doc["inputs"]["protocol"]
    parts = []
    for protocol, e in errors.items():
        role = "fitted" if protocol == fitted else "holdout"
        parts.append(
            f"{PROTOCOL_NAMES.get(protocol, protocol)} ({role}): p50 within "
            f"{_pct(e['p50_max_abs_relative'])} "
            f"(mean {_signed_pct(e['p50_mean_relative'])}), p95 within "
            f"{_pct(e['p95_max_abs_relative'])} (mean {_signed_pct(e['p95_mean_relative'])}); "
            f"the measured p95 lies inside the simulated window range at "
            f"{e['p95_inside_window_range']} of {e['levels']} levels"
        )
    return "; ".join(parts) + "."


def _videos_range(doc: dict[str, Any]) -> str:
    counts = [m["videos"] for r in doc["calibration"]["levels"] for m in r["measured"].values()]
    return f"{min(counts)}–{max(counts)}"


def _sweep(doc: dict[str, Any]) -> list[str]:
    lines = [
        "| arrivals / s | ≈ uploads / day at a steady rate | HPA p95 ratio | HPA replicas "
        "mean (most) | one replica p95 ratio |",
        "|---|---|---|---|---|",
    ]
    for row in doc["sweep"]:
        hpa, one = row["hpa"], row["one_replica"]
        one_cell = _f(one["p95"]) if one else "beyond its capacity"
        lines.append(
            f"| {row['rate_per_s']:.3f} | {row['rate_per_s'] * 86_400:,.0f} | {_f(hpa['p95'])} | "
            f"{hpa['mean_replicas']:.1f} ({hpa['max_replicas']}) | {one_cell} |"
        )
    return lines


def _targets(doc: dict[str, Any]) -> list[str]:
    middle = doc["daily_volumes"][1]["uploads_per_day"]
    lines = [
        f"At {middle:,} uploads a day, the same hours around the peak with other HPA targets:",
        "",
        "| target jobs / replica | most replicas (mean) | p95 / p50 ratio | over the limit |",
        "|---|---|---|---|",
    ]
    for row in doc["targets_at_middle_volume"]:
        hpa = row["hpa"]
        lines.append(
            f"| {row['target']:g} | {hpa['max_replicas']} ({hpa['mean_replicas']:.1f}) | "
            f"{_f(hpa['p95'])} / {_f(hpa['p50'])} | {_pct(hpa['over_limit_share'], 2)} |"
        )
    return lines


def _stages(doc: dict[str, Any]) -> list[str]:
    stages = doc["bottleneck"]["stages"]
    names = list(stages["share"])
    lines = [
        "| video | " + " | ".join(names) + " | total |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for video, row in stages["per_video_seconds"].items():
        cells = " | ".join(_f(row[n]) for n in names)
        lines.append(f"| {video} | {cells} | {_f(row['total'])} |")
    mean = stages["mean_seconds"]
    cells = " | ".join(f"{_f(mean[n])} ({_pct(stages['share'][n])})" for n in names)
    lines.append(f"| mean (share) | {cells} | {_f(mean['total'])} |")
    return lines


def _bottleneck_moves(doc: dict[str, Any]) -> list[str]:
    b = doc["bottleneck"]
    stages, cpu, net = b["stages"], b["cpu"], b["network"]
    a = {row["name"]: row["value"] for row in doc["assumptions"]}
    inputs = doc["inputs"]
    speedup = inputs["speedup"]
    largest = stages["largest"]
    share = stages["share"]
    ranked = sorted(share, key=lambda name: -share[name])
    biggest = doc["daily_volumes"][-1]
    ingress = net["ingress_mbit_s_at_peak"][str(biggest["uploads_per_day"])]
    hpa_p95 = biggest["hpa"]["p95"]
    network_wins = net["upload_ratio"] > hpa_p95
    return [
        "1. **One video, one replica** — the time splits "
        + ", ".join(f"{name} {_pct(share[name])}" for name in ranked if share[name] >= 0.05)
        + f", the rest under 5 % each; the {largest} is the largest. The classifier's share "
        "grows with the faces per video, the decode's with resolution and codec; the detector "
        "works on downscaled frames, so its share follows the frames sampled.",
        f"2. **One replica under load** — the 2 cores saturate: {speedup['factors'][-1]:.2f}× "
        f"the 1-user throughput at {speedup['users'][-1]} users, "
        f"{cpu['videos_per_s_measured_saturated']:.2f} videos/s measured. The CPU seconds of a "
        f"lone video ({cpu['decode_cpu_s']:.2f} s decode + {cpu['server_cpu_s']:.2f} s server) "
        f"would allow {cpu['videos_per_s_by_cpu']:.2f} videos/s: under load a video costs more "
        "CPU or the cores idle between stages. Past saturation the wait, not a stage, is the "
        "bottleneck: the one-replica curve in the plot.",
        f"3. **Many replicas** — compute scales with the HPA; the user's own upload does not. At "
        f"{a['upload_bitrate_mbit_s']:g} Mbit/s over a {a['uplink_mbit_s']:g} Mbit/s uplink the "
        f"upload alone takes {net['upload_ratio']:.2f} of the video's duration, whatever its "
        f"length, against a p95 ratio of {_f(hpa_p95)} for the processing at "
        f"{biggest['uploads_per_day']:,}/day: "
        + (
            "the network is then the larger part of what a user waits for."
            if network_wins
            else "processing stays the larger part."
        ),
        f"4. **Client decode, frames over the network** (a KServe client calling Triton "
        f"directly): 16 decoded frames are {net['frames_mbit_per_video']:.0f} Mbit per video "
        f"(measured), {net['frames_seconds_lan']:.2f} s on a {a['lan_mbit_s']:g} Mbit/s link "
        f"but {net['frames_seconds_uplink']:.1f} s over the {a['uplink_mbit_s']:g} Mbit/s "
        f"uplink — {net['frames_ratio_uplink_shortest']:.1f}× the duration of "
        f"{net['shortest_video']}: decode next to Triton, not at the uploader.",
        f"5. **The service's ingress** at {biggest['uploads_per_day']:,}/day's peak: "
        f"{ingress['video_files']:,.0f} Mbit/s of video files (mean duration "
        f"{net['mean_duration_s']:.2f} s × {a['upload_bitrate_mbit_s']:g} Mbit/s × arrivals), "
        f"{ingress['frames']:,.0f} Mbit/s if clients sent frames instead.",
        f"6. **With the models on an accelerator** (not measured): the CPU work left per video "
        f"is the decode, {cpu['decode_cpu_s']:.2f} s, so a {cpu['cores']}-core worker could "
        f"feed at most {cpu['videos_per_s_decode_only']:.1f} videos/s — an upper bound from "
        "this CPU, not a GPU measurement.",
    ]


def _assumptions(doc: dict[str, Any]) -> list[str]:
    lines = ["| assumption | value | why |", "|---|---|---|"]
    lines += [f"| `{r['name']}` | {r['value']} | {r['why']} |" for r in doc["assumptions"]]
    return lines


def render_markdown(doc: dict[str, Any], page: Path, result: Path, plot_path: Path) -> str:
    """Return ``docs/capacity.md`` for the result ``doc`` (read from ``result``)."""
    inputs, hpa = doc["inputs"], doc["hpa"]
    speedup = inputs["speedup"]
    kinds = inputs["kinds"]
    files = ", ".join(f"`{f}`" for f in inputs["files"])
    starts = ", ".join(f"{s:.2f}" for s in inputs["replica_start_runs"])
    load = inputs["service_times_load_start_end"]
    vs_bench = inputs["service_times_vs_bench_median"]
    command = doc["generated_by"]
    default = command == DEFAULT_COMMAND
    lines = [
        f"<!-- Generated by `{command}`{f' ({REGENERATE})' if default else ''} from "
        f"{_rel(result)}: do not edit by hand. -->",
        "",
        "# Capacity model",
        "",
        f"*Generated file.* `{REGENERATE if default else command}` reruns the model "
        f"({f'`{command}`: ' if default else ''}"
        f"simulation → [`{_rel(result)}`]({_link(page, result)}) → this page and its plot); "
        f"`{command} --render-only` re-renders them from the JSON. Inputs: {files} "
        "(a `fakescope bench` summary; `python -m fakescope.benchmarks.service_times` measures "
        "the stage split and the replica start).",
        "",
        "How many replicas FakeScope needs for a day's uploads, and what the users then wait, "
        f"as processing time / video duration (the product's limit is {doc['limit']}). A "
        "replica is the measured 2-core CPU box. **GPU: not measured** — "
        f"{doc['gpu']['why']}.",
        "",
        f"![p95 ratio and replicas against arrival rate]({_link(page, plot_path)})",
        "",
        "## Replicas and p95 ratio per daily volume",
        "",
        *_volumes(doc),
        "",
        f"*Static*: the fewest fixed replicas whose p95 stays within the limit at a constant peak "
        f"rate, in each of {doc['daily_volumes'][0]['static_at_peak']['seeds']} runs of "
        f"{doc['simulation']['static_s'] / 60:.0f} min (*busy*: arrivals / what the replicas' "
        "busy slots finish). *HPA*: the autoscaler sizing the cluster from "
        f"{doc['daily_volumes'][0]['window_from_peak_s'][0] / -3600:g} h before the daily peak "
        f"to {doc['daily_volumes'][0]['window_from_peak_s'][1] / 3600:g} h after it (arrivals "
        "rising to the peak), the first "
        f"{doc['simulation']['warmup_s'] / 60:.0f} min not counted. " + _unfinished_sentence(doc),
        "",
        "## The model",
        "",
        "- **Replica**: the 2-core box of `make bench` — the web worker that decodes the uploaded "
        "video *and* Triton, on the same cores (the bench's Locust users decoded beside the "
        "server too). The uploader sends the video file; the decode happens on the web "
        "workers, not on the uploader's side. (The Helm chart runs workers and Triton as "
        "separate pods; the replica here is the pair as measured together on 2 cores.)",
        f"- **Concurrency behaviour**: the videos a replica has in hand share it; with *n* in "
        "hand it does *S(n)* seconds of 1-user work per second, *S* being the measured "
        f"throughput at *n* closed-loop users over the 1-user throughput ({inputs['protocol']}): "
        + ", ".join(
            f"S({u}) = {f:.3f}" for u, f in zip(speedup["users"], speedup["factors"], strict=True)
        )
        + " (linear between, flat past the last).",
        f"- **Work per video**: its 1-user service time (decode + server call), lognormal with "
        f"the bench's 1-user median and p95 per video ({inputs['protocol']}): "
        + ", ".join(
            f"{k['name']} ({k['duration_s']:g} s) {k['p50_s']:.3f} / {k['p95_s']:.3f} s"
            for k in kinds
        )
        + f"; mean {inputs['mean_work_s']:.3f} s, so one replica with its "
        f"{inputs['slots_per_replica']} slots busy finishes "
        f"{inputs['capacity_per_replica_per_s']:.2f} videos/s.",
        "- **Arrivals**: Poisson, rate following a cosine day with the stated peak factor; each "
        "video drawn from the benchmark mix, each kind equally often.",
        f"- **Queue and slots**: uploads wait as pending jobs (one FIFO queue, the database); a "
        f"replica takes one while it has fewer than {inputs['slots_per_replica']} in hand.",
        f"- **Autoscaler**: the Kubernetes HPA algorithm — {hpa['formula']}; metric "
        f"{hpa['metric']}; target {hpa['target']:g}, tolerance {hpa['tolerance']:g}, sync "
        f"{hpa['sync_period_s']:g} s, scale-up window {hpa['scale_up_window_s']:g} s, "
        f"scale-down window {hpa['scale_down_window_s']:g} s, scale-up at most "
        f"max({hpa['scale_up_pods']} pods, {hpa['scale_up_percent']:g} %) per sync, "
        f"minReplicas {hpa['min_replicas']}, maxReplicas {hpa['max_replicas']}.",
        f"- **Replica start**: {inputs['replica_start_s']:.2f} s, the median of the measured "
        f"embedded-tritonserver starts to ready ({starts} s). A pod's scheduling and image pull "
        "come on top and are not measured here.",
        "",
        "## Calibration: one replica against the bench",
        "",
        f"The bench's closed loop (1/2/4/8 users back to back, {inputs['bench_run_seconds']:.0f} s "
        f"per level, load {inputs['bench_load_start_end'][0]:.2f} at start) simulated for "
        f"{doc['calibration']['simulated_seconds_per_level'] / 60:.0f} min per level on one "
        "replica:",
        "",
        *_calibration(doc),
        "",
        f"**Error**: {_error_sentence(doc)} The two protocols measured the same server and "
        f"videos and differ from each other by up to "
        f"{_pct(doc['calibration']['protocol_disagreement']['p50_max_relative'])} (p50) and "
        f"{_pct(doc['calibration']['protocol_disagreement']['p95_max_relative'])} (p95): the "
        "bench's own scatter. The throughput is fitted (it defines *S*); the ratio "
        f"quantiles are predictions. Each measured level holds {_videos_range(doc)} videos over "
        f"{inputs['bench_run_seconds']:.0f} s, so its p95 is itself uncertain: the window range "
        "is how far a level of that length spreads in the simulation.",
        "",
        "## p95 ratio against arrival rate",
        "",
        f"Constant Poisson arrivals, {doc['simulation']['sweep_s'] / 60:.0f} min each after a "
        f"{doc['simulation']['warmup_s'] / 60:.0f}-min warm-up; the HPA starts with the replicas "
        "whose busy slots keep up with the rate:",
        "",
        *_sweep(doc),
        "",
        *_targets(doc),
        "",
        "## Where the bottleneck moves",
        "",
        f"Stage split at 1 user (`{inputs['files'][1]}`, median of "
        f"{inputs['service_times_runs_per_video']} runs per video, code "
        f"`{inputs['service_times_code_version']}`, load {load[0]:.2f} → {load[1]:.2f}), "
        "seconds: *classifier* is `face_scorer` including `face_classifier`; *detector* is "
        "`face_detector` including the MTCNN nets; *transfer + ensemble* is the server call "
        "minus its steps.",
        "",
        *_stages(doc),
        "",
        "Those runs took "
        + ", ".join(f"{v} {x:.2f}×" for v, x in vs_bench.items())
        + " the bench's 1-user medians (another day and load): the model takes its times from "
        "the bench, the split from these runs.",
        "",
        *_bottleneck_moves(doc),
        "",
        "## Assumptions",
        "",
        *_assumptions(doc),
        "",
        "## Not modelled",
        "",
        "- GPU replicas (the one GPU run, `benchmarks/results/gpu-host/`, was slower than its "
        "machine's CPUs); uploads of other lengths or resolutions than the "
        "measured mix; the web front end's and the database's own load;",
        "- the worker's polling delay before it claims a job, pod scheduling and image pulls, "
        "failed replicas, retries and Triton's admission refusals (the queue holds every job);",
        "- more faces per frame than the measured videos hold: more classifier work.",
        "",
    ]
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> None:
    """Draw calibration, p95 ratio vs arrival rate and replicas vs arrival rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limit = doc["limit"]
    fig, (cal, ratio, reps) = plt.subplots(1, 3, figsize=(15, 4.6))
    rows = doc["calibration"]["levels"]
    users = [r["users"] for r in rows]
    for protocol, marker in (("grpc", "o"), ("http", "s")):
        for q in ("p50", "p95"):
            values = [r["measured"].get(protocol, {}).get(q) for r in rows]
            cal.plot(users, values, marker, mfc="none", label=f"measured {protocol} {q}")
    for q, style in (("p50", "--"), ("p95", "-")):
        cal.plot(users, [r["simulated"][q] for r in rows], style, c="k", label=f"simulated {q}")
    lo = [r["simulated"]["p95_window_range"][0] for r in rows]
    hi = [r["simulated"]["p95_window_range"][1] for r in rows]
    cal.fill_between(users, lo, hi, color="gray", alpha=0.25, label="simulated p95, 30-s windows")
    cal.axhline(limit, c="red", lw=1)
    cal.set(xscale="log", xlabel="closed-loop users (one replica)", ylabel="processing / duration")
    cal.set_xticks(users, [str(u) for u in users])
    cal.minorticks_off()
    cal.set_title("one replica: simulated vs make bench")
    cal.legend(fontsize=6)

    sweep = doc["sweep"]
    rates = [r["rate_per_s"] for r in sweep]
    ratio.plot(rates, [r["hpa"]["p95"] for r in sweep], "o-", label="HPA cluster p95")
    ratio.plot(rates, [r["hpa"]["p50"] for r in sweep], "x--", label="HPA cluster p50")
    one = [(r["rate_per_s"], r["one_replica"]["p95"]) for r in sweep if r["one_replica"]]
    ratio.plot(*zip(*one, strict=True), "s-", label="one replica p95")
    ratio.axhline(limit, c="red", lw=1, label=f"limit {limit}")
    reps.plot(rates, [r["hpa"]["mean_replicas"] for r in sweep], "o-", label="HPA mean")
    reps.plot(rates, [r["hpa"]["max_replicas"] for r in sweep], "^--", label="HPA most")
    for v in doc["daily_volumes"]:
        label = f"{v['uploads_per_day']:,}/day peak"
        for ax in (ratio, reps):
            ax.axvline(v["peak_rate_per_s"], c="gray", ls=":", lw=1)
        ratio.text(v["peak_rate_per_s"], 0.02, label, rotation=90, fontsize=7, va="bottom")
        reps.plot(v["peak_rate_per_s"], v["static_at_peak"]["replicas"], "k*", ms=9)
    reps.plot([], [], "k*", label="static replicas at the peak")
    ratio.set(xscale="log", xlabel="arrivals per second", ylabel="processing / duration")
    ratio.set_ylim(0, max(limit * 1.1, *(r["hpa"]["p95"] for r in sweep)))
    ratio.set_title("ratio against arrival rate, 2-core replicas")
    ratio.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 0.88))
    reps.set(xscale="log", yscale="log", xlabel="arrivals per second", ylabel="replicas")
    reps.set_title("replicas (GPU: not measured)")
    reps.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
