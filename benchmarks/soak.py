"""``make soak``: hold the embedded Triton at its measured capacity for an hour, watch for leaks.

gRPC and HTTP Locust users (half each) push the benchmark videos for ``--minutes`` (60 by
default) at the capacity ``make bench`` measured: the most users at which p95(processing /
duration) stayed within the limit with nothing refused (``benchmarks/results/summary.json``). A
sampler records the RSS of every process every ``--sample-seconds``: tritonserver, each python
stub, and the two load generators. The server runs supervised: if tritonserver dies, or stalls
(a model has requests waiting and finishes none for the watchdog's timeout,
:mod:`fakescope.serving.watchdog`; it is then killed), the time, the kind (``exit`` or
``stall``), the exit code and the models left waiting are recorded, its log is kept, and it is
restarted (as ``fakescope serve --restart`` does), so the run goes on and shows what a crash or
a hang costs. The report gives, per 5-minute window, the p95 ratio, the videos answered,
refused and lost (videos the users finish after the run's minutes count in the last window),
and each process group's RSS and the part of it that is shared memory (the python backend's
pools, which tritonserver and a stub both map: a page of them counts in both once touched);
the RSS growth after the first (warm-up) window, in all and without shared memory; and the
server's exits and stalls. Targets: no server exit or stall, RSS growth < 5 % after warm-up, 0
lost, p95 within the limit in every window, the warm-up's included (a video answered late then
is late for its user), and flat (the last window within 20 % of the first after warm-up). The
run exits 1 when one is missed. The client side is reported beside them, not judged: the load
generators' RSS growth, and the bytes of the clients' frame regions in ``/dev/shm``, which a
client that lost track of a region would leave growing.

A load generator that fails (its level raises: Locust wrote no records, or was cut short and
its records may lack videos, :func:`~.benchmarks.run.run_level`; or it recorded no video) fails
the run: it exits 2 once every level has ended, with the reason and no result, as the rest
would judge part of the load.

Results: ``benchmarks/results/soak.json``, ``soak.md`` and ``soak.png`` (not in ``make test``),
rendered before any is written, so a failed render leaves the last run's files together.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from fakescope.arguments import positive_int, positive_number
from fakescope.benchmarks.host_speed import WHAT as HOST_PROBE_WHAT
from fakescope.benchmarks.host_speed import HostProbe, read_cpu_ticks, steal_share
from fakescope.benchmarks.level_checks import level_fits
from fakescope.benchmarks.machine import machine_facts
from fakescope.benchmarks.result_files import code_version, fmt, write_result_files
from fakescope.benchmarks.run import (
    PRODUCT_LIMIT,
    RESULTS,
    add_server_arguments,
    locust_env,
    run_level,
)
from fakescope.client.analyze import DEFAULT_NUM_FRAMES, analyze
from fakescope.client.shared_memory import REGION_PREFIX
from fakescope.paths import SHM_DIR
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress
from fakescope.serving.watchdog import DEFAULT_STALL_TIMEOUT_S, Stall

logger = logging.getLogger(__name__)

WINDOW_S = 300
RSS_GROWTH_LIMIT = 0.05
P95_DRIFT_LIMIT = 0.20


def measured_capacity(summary_path: Path, limit: float) -> int:
    """Return the most users ``make bench`` carried within ``limit``, at that level and below.

    A user count fits when every protocol that ran it stayed within the limit with nothing
    refused or failed (:func:`~.benchmarks.level_checks.level_fits`); the capacity is the
    largest count below which every count fits too: a level that fits above one that missed is
    the host's luck at that minute, not capacity.

    Raises:
        ValueError: the fewest users ``make bench`` ran did not fit.

    """
    levels = json.loads(summary_path.read_text())["levels"]
    capacity = None
    for users in sorted({int(u) for by_users in levels.values() for u in by_users}):
        ran = [by_users[str(users)] for by_users in levels.values() if str(users) in by_users]
        if not all(level_fits(level, limit) for level in ran):
            break
        capacity = users
    if capacity is None:
        raise ValueError(f"{summary_path}: no level within the limit {limit}; run make bench")
    return capacity


def _group(process: psutil.Process, server_pid: int) -> str:
    """Name a process for the report: the server, a python stub (by model), or a load generator."""
    if process.pid == server_pid:
        return "tritonserver"
    cmdline = " ".join(process.cmdline())
    if "triton_python_backend_stub" in cmdline:
        # the stub's first argument is the model's path: .../<model>/<version>/model.py
        parts = Path(process.cmdline()[1]).parts
        return f"stub:{parts[-3]}" if len(parts) >= 3 else "stub"
    if "locust" in cmdline:
        return "locust:http" if "Http" in cmdline else "locust:grpc"
    return process.name()


def _is_load_generator(group: str) -> bool:
    return group.startswith("locust")


def client_regions_bytes(shm: Path = SHM_DIR) -> int:
    """Return the bytes of every client frame region in ``shm`` (``REGION_PREFIX`` files).

    A client that lost track of a region would leave its file there: the load generators'
    regions must stay at their few per user for the whole run.
    """
    total = 0
    for region in shm.glob(f"{REGION_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile by its client
            total += region.stat().st_size
    return total


class RssSampler(threading.Thread):
    """Every ``period_s``, the RSS of the server's process tree and of this process's children."""

    def __init__(self, server: EmbeddedTriton, period_s: float) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.period_s = period_s
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()

    def sample(self) -> dict[str, Any]:
        """One sample: seconds since the epoch, RSS and shared-memory RSS bytes per group.

        Also the bytes of the clients' frame regions in ``/dev/shm``
        (:func:`client_regions_bytes`) and the machine's 1-minute load.
        """
        server = self.server.process  # a new one after a restart
        mine = psutil.Process(os.getpid())
        roots = [mine]
        if server is not None and server.poll() is None:
            with contextlib.suppress(psutil.Error):
                roots.insert(0, psutil.Process(server.pid))
        server_pid = server.pid if server is not None else -1
        rss: dict[str, int] = {}
        shmem: dict[str, int] = {}
        for root in roots:
            for process in [root, *root.children(recursive=True)]:
                try:
                    name = _group(process, server_pid)
                    if root.pid == os.getpid() and not _is_load_generator(name):
                        continue  # this sampler and the server are counted elsewhere
                    rss[name] = rss.get(name, 0) + process.memory_info().rss
                    shmem[name] = shmem.get(name, 0) + shmem_rss_bytes(process.pid)
                except (psutil.Error, OSError):  # a process that ended meanwhile
                    continue
        return {
            "t": time.time(),
            "rss": rss,
            "rss_shmem": shmem,
            "client_regions": client_regions_bytes(),
            "load1": os.getloadavg()[0],
        }

    def run(self) -> None:
        """Sample until :meth:`stop`."""
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(self.period_s)

    def stop(self) -> None:
        """End the sampling (the last sample is taken first)."""
        self.samples.append(self.sample())
        self._stop.set()


def shmem_rss_bytes(pid: int) -> int:
    """Return the resident shared memory (``RssShmem``) of process ``pid``, in bytes.

    Raises:
        OSError: the process is gone (or its status unreadable).

    """
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssShmem:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    return 0


def windows(
    records: list[dict[str, Any]], samples: list[dict[str, Any]], start: float, minutes: int
) -> list[dict[str, Any]]:
    """Per ``WINDOW_S`` window: answered / refused / lost videos, ratio p95, RSS per group.

    Every record counts: the last window takes the videos finished after the run's minutes
    too (the users finish the videos they hold, a lost one among them), and its minutes end at
    the last of them.
    """
    rows = []
    count = max(1, minutes * 60 // WINDOW_S)
    last_finished = max((r["finished_at"] for r in records), default=start)
    for w in range(count):
        lo, hi = start + w * WINDOW_S, start + (w + 1) * WINDOW_S
        last = w == count - 1
        mine = [r for r in records if lo <= r["finished_at"] and (last or r["finished_at"] < hi)]
        end = max((w + 1) * WINDOW_S, last_finished - start) if last else (w + 1) * WINDOW_S
        ratios = [r["ratio"] for r in mine if r.get("ratio") is not None]
        # the samples keep to the window: the RSS while the users drain is not under the load
        in_window = [s for s in samples if lo <= s["t"] < hi]
        groups = sorted({g for s in in_window for g in s["rss"]})
        regions = [s["client_regions"] for s in in_window if "client_regions" in s]
        rows.append(
            {
                "window": w,
                "minutes": [w * WINDOW_S / 60, end / 60],
                "answered": len(ratios),
                "refused": sum(r["status"] == "rejected" for r in mine),
                "lost": sum(r["status"] == "error" for r in mine),
                "p95_ratio": float(np.percentile(ratios, 95)) if ratios else None,
                # the machine's 1-minute load: a busy neighbour shows here, not as a leak
                "load1": float(np.mean([s["load1"] for s in in_window])) if in_window else None,
                "rss_mib": {
                    g: float(np.mean([s["rss"].get(g, 0) for s in in_window])) / 2**20
                    for g in groups
                },
                # runs from before the split was sampled have none: 0
                "rss_shmem_mib": {
                    g: float(np.mean([s.get("rss_shmem", {}).get(g, 0) for s in in_window])) / 2**20
                    for g in groups
                },
                # runs from before the regions were sampled have none: None
                "client_regions_mib": float(np.mean(regions)) / 2**20 if regions else None,
            }
        )
    return rows


def _growth_per_process(
    first: dict[str, float], last: dict[str, float], load_generators: bool = False
) -> dict[str, float]:
    """Growth of each server process group, or (``load_generators``) each load generator's."""
    return {
        g: (last.get(g, 0.0) - mib) / mib
        for g, mib in first.items()
        if mib > 0 and _is_load_generator(g) == load_generators
    }


def _without(rss: dict[str, float], shmem: dict[str, float]) -> dict[str, float]:
    return {g: mib - shmem.get(g, 0.0) for g, mib in rss.items()}


def verdict(
    rows: list[dict[str, Any]], limit: float, server_exits: list[dict[str, Any]]
) -> dict[str, Any]:
    """Judge the run: RSS growth after warm-up, lost and refused totals, p95 drift, targets.

    The RSS growth and the p95 drift are taken after the first window (the warm-up); the p95
    limit holds in every window, the warm-up's too, and a window that answered nothing misses it.
    """
    steady = rows[1:] if len(rows) > 1 else rows  # the first window is the warm-up
    first, last = steady[0], steady[-1]
    growth = _growth_per_process(first["rss_mib"], last["rss_mib"])
    first_private = _without(first["rss_mib"], first.get("rss_shmem_mib", {}))
    last_private = _without(last["rss_mib"], last.get("rss_shmem_mib", {}))
    private_growth = _growth_per_process(first_private, last_private)
    total_first, total_last = _server_mib(first, "rss_mib"), _server_mib(last, "rss_mib")
    private_first = total_first - _server_mib(first, "rss_shmem_mib")
    private_last = total_last - _server_mib(last, "rss_shmem_mib")
    p95s = [r["p95_ratio"] for r in steady if r["p95_ratio"] is not None]
    drift = (p95s[-1] - p95s[0]) / p95s[0] if len(p95s) > 1 and p95s[0] else None
    lost = sum(r["lost"] for r in rows)
    targets = {
        "server_never_exited": not server_exits,
        "server_rss_growth_below_5_percent": total_first > 0
        and (total_last - total_first) / total_first < RSS_GROWTH_LIMIT,
        "nothing_lost": lost == 0,
        # a video answered late in the warm-up is as late for its user as any other
        "p95_within_limit_every_window": all(
            r["p95_ratio"] is not None and r["p95_ratio"] <= limit for r in rows
        ),
        "p95_flat": drift is not None and drift <= P95_DRIFT_LIMIT,
    }
    return {
        "server_rss_growth": (total_last - total_first) / total_first if total_first else None,
        # the same without shared memory: what the processes hold privately
        "server_private_rss_growth": (private_last - private_first) / private_first
        if private_first > 0
        else None,
        "rss_growth_per_process": growth,
        "private_rss_growth_per_process": private_growth,
        # the client side (decoding, its frame regions), reported and not judged: Locust's
        # own bookkeeping grows with the requests it has made
        "load_generator_rss_growth_per_process": _growth_per_process(
            first["rss_mib"], last["rss_mib"], load_generators=True
        ),
        "load_generator_private_rss_growth_per_process": _growth_per_process(
            first_private, last_private, load_generators=True
        ),
        "client_regions_mib": [first.get("client_regions_mib"), last.get("client_regions_mib")],
        "answered": sum(r["answered"] for r in rows),
        "refused": sum(r["refused"] for r in rows),
        "lost": lost,
        "p95_drift": drift,
        "server_exits": len(server_exits),
        "server_stalls": sum(e.get("kind") == "stall" for e in server_exits),
        "targets": targets,
        "passed": all(targets.values()),
    }


def _server_mib(row: dict[str, Any], key: str) -> float:
    """Sum ``row[key]`` (MiB per group) over the server's processes, load generators left out."""
    return sum(v for g, v in row.get(key, {}).items() if not _is_load_generator(g))


def render_markdown(result: dict[str, Any]) -> str:
    """Render the soak report as Markdown (generated; quoted by benchmarks/README.md)."""
    v = result["verdict"]
    lines: list[str | None] = [
        "# Soak run",
        "",
        "Written by `make soak` (`python -m fakescope.benchmarks.soak`); do not edit. "
        f"{result['users']} users ({result['users_grpc']} gRPC + {result['users_http']} HTTP) "
        f"for {result['minutes']} min on the benchmark videos; RSS sampled every "
        f"{result['sample_seconds']} s. The p95 limit is checked in every window; RSS growth "
        "and p95 drift are taken after the first. The first window is the warm-up."
        # runs from before the soak recorded its code say nothing of it
        + (f" Code `{result['code_version']}`." if "code_version" in result else ""),
        "",
        "| minutes | answered | refused | lost | p95 ratio | server RSS MiB "
        "| of it shared memory MiB | load (1 min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["windows"]:
        p95 = "—" if row["p95_ratio"] is None else f"{row['p95_ratio']:.3f}"
        # a window without a sample (the sampler ended with the run) has no RSS, not 0 MiB
        sampled = row["load1"] is not None
        rss = fmt(_server_mib(row, "rss_mib") if sampled else None, 0)
        shmem = fmt(_server_mib(row, "rss_shmem_mib") if sampled else None, 0)
        lines.append(
            f"| {row['minutes'][0]:.0f}–{row['minutes'][1]:.0f} | {row['answered']} "
            f"| {row['refused']} | {row['lost']} | {p95} | {rss} | {shmem} "
            f"| {fmt(row['load1'], 1)} |"
        )
    growth = v["server_rss_growth"]
    private = v.get("server_private_rss_growth")
    drift = v["p95_drift"]
    lines += [
        "",
        f"- Server RSS growth after warm-up: {growth * 100:+.1f} %" if growth is not None else None,
        f"- The same without shared memory (the python backend's pools, counted in tritonserver "
        f"and in a stub alike): {private * 100:+.1f} %"
        if private is not None
        else None,
        f"- p95 drift, first to last window after warm-up: {drift * 100:+.1f} %"
        if drift is not None
        else None,
        f"- Answered {v['answered']}, refused {v['refused']}, lost {v['lost']}.",
        describe_host_probe(result.get("host_probe")),
        "- Server exits and stalls (restarted each time): "
        + (", ".join(describe_server_exit(e) for e in result["server_exits"]) or "none"),
        "- Targets: "
        + ", ".join(
            f"{k.replace('_', ' ')}: {'met' if ok else 'NOT met'}" for k, ok in v["targets"].items()
        ),
        "",
        "Per process (RSS growth after warm-up): "
        + ", ".join(
            f"{g} {x * 100:+.1f} %" for g, x in sorted(v["rss_growth_per_process"].items())
        ),
        "",
    ]
    per_process = v.get("private_rss_growth_per_process")
    if per_process:  # runs from before the split was sampled have none
        lines += [
            "Per process, without shared memory: "
            + ", ".join(f"{g} {x * 100:+.1f} %" for g, x in sorted(per_process.items())),
            "",
        ]
    lines += _client_side_lines(v)
    return "\n".join(line for line in lines if line is not None) + "\n"


def _client_side_lines(v: dict[str, Any]) -> list[str]:
    """Render the load generators' growth and their frame regions, where the run sampled them."""
    growth = v.get("load_generator_rss_growth_per_process")
    if not growth:  # runs from before the client side was reported
        return []
    private = v.get("load_generator_private_rss_growth_per_process", {})
    parts = [
        f"{g} {x * 100:+.1f} % ({private[g] * 100:+.1f} % without shared memory)"
        if g in private
        else f"{g} {x * 100:+.1f} %"
        for g, x in sorted(growth.items())
    ]
    lines = [
        "Load generators, the client side (decoding, frames in shared memory), reported and "
        "not judged (Locust's own bookkeeping grows with its requests; RSS growth after "
        "warm-up): " + ", ".join(parts),
        "",
    ]
    first, last = v.get("client_regions_mib") or (None, None)
    if first is not None and last is not None:
        lines += [
            f"The clients' frame regions in `/dev/shm`: {first:.0f} MiB in the first window "
            f"after warm-up, {last:.0f} MiB in the last.",
            "",
        ]
    return lines


def describe_host_probe(host: dict[str, Any] | None) -> str | None:
    """Return the report's line on the host's speed before and after the load.

    ``None`` for runs from before the probe. The steal share is "n/a" on a machine whose
    ``/proc/stat`` gives none.
    """
    if not host:
        return None
    steal = host["steal_share"]
    stolen = "n/a" if steal is None else f"{steal * 100:.1f} %"
    return (
        f"- Host probe before / after the load: {host['before']['median_ms']:.1f} / "
        f"{host['after']['median_ms']:.1f} ms ({host['what']}); steal: {stolen} of the run's "
        f"CPU time."
    )


def describe_server_exit(event: dict[str, Any]) -> str:
    """Describe one server exit or stall for the report.

    E.g. ``minute 28.1, stall (face_detector 4 pending), killed``. Entries of runs from before
    stalls were recorded have no ``kind``: they are exits.
    """
    if event.get("kind") != "stall":
        return f"minute {event['minute']:.1f}, exit code {event['code']}"
    pending = event.get("pending") or {}
    waiting = ", ".join(f"{m} {n} pending" for m, n in sorted(pending.items()))
    return f"minute {event['minute']:.1f}, stall ({waiting or 'metrics unanswered'}), killed"


def plot(result: dict[str, Any], samples: list[dict[str, Any]], path: Path) -> None:
    """RSS per process group over time, and p95 per window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = result["started_at"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    groups = sorted({g for s in samples for g in s["rss"]})
    for g in groups:
        top.plot(
            [(s["t"] - start) / 60 for s in samples],
            [s["rss"].get(g, 0) / 2**20 for s in samples],
            label=g,
        )
    top.set_ylabel("RSS (MiB)")
    top.legend(fontsize=7, ncol=2)
    rows = [r for r in result["windows"] if r["p95_ratio"] is not None]
    bottom.plot([r["minutes"][1] for r in rows], [r["p95_ratio"] for r in rows], "o-")
    bottom.axhline(result["limit"], color="red", linestyle="--", label="product limit")
    bottom.set_ylabel("p95 processing / duration")
    bottom.set_xlabel("minutes")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class LoadGeneratorError(RuntimeError):
    """A soak's load generator failed: its level raised, or recorded no video."""


#: The soak's exit code when a load generator failed: no verdict, the load was not what was asked.
LOAD_GENERATOR_FAILED = 2


def run_levels(
    plan: dict[str, int], run: Callable[[str, int], list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """Run ``run(protocol, users)`` for every protocol of ``plan`` at once; return the records.

    One thread per protocol, all ended before this returns.

    Raises:
        LoadGeneratorError: a level raised, or recorded no video, naming each such protocol
            and why: a soak judged on the levels that ran would judge part of the load it was
            asked to carry.

    """
    records: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, Exception] = {}

    def level(protocol: str, users: int) -> None:
        try:
            records[protocol] = run(protocol, users)
        except Exception as exc:  # reported by the caller's thread, after every level ended
            errors[protocol] = exc

    threads = [threading.Thread(target=level, args=item) for item in plan.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = [
        f"{protocol} ({users} users): "
        + (
            f"{type(errors[protocol]).__name__}: {errors[protocol]}"
            if protocol in errors
            else "no video recorded"
        )
        for protocol, users in plan.items()
        if protocol in errors or not records.get(protocol)
    ]
    if failed:
        raise LoadGeneratorError("load generator failed: " + "; ".join(failed))
    return records


def run_soak(args: argparse.Namespace) -> int:
    """Run the soak; write the result files; return 1 when a target is missed.

    Returns :data:`LOAD_GENERATOR_FAILED`, with no result written, when a load generator failed
    (:func:`run_levels`).
    """
    from fakescope.benchmarks.videos import ensure_videos

    version = code_version()  # the code that runs, before anything can change the checkout
    users: int = args.users  # resolved by main: given, or the measured capacity
    users_grpc, users_http = (users + 1) // 2, users // 2
    videos = ensure_videos(args.videos_dir)
    out: Path = args.output
    raw = out / "soak-raw"
    raw.mkdir(parents=True, exist_ok=True)
    address = ServerAddress("127.0.0.1", args.http_port, args.grpc_port, args.metrics_port)
    probe = HostProbe()
    server = EmbeddedTriton(args.repository, address)
    server.start()
    assert server.process is not None
    env = locust_env(videos, address, frames=DEFAULT_NUM_FRAMES, limit=args.limit)
    sampler = RssSampler(server, args.sample_seconds)
    exits: list[dict[str, Any]] = []
    done = threading.Event()

    def gone(kind: str, code: int | None, pending: dict[str, int]) -> None:
        kept = raw / f"tritonserver-{kind}-{len(exits)}.log"
        shutil.copyfile(server.log_path, kept)
        exits.append(
            {"t": time.time(), "kind": kind, "code": code, "pending": pending, "log": kept.name}
        )

    def exited(code: int | None) -> None:
        gone("exit", code, {})

    def stalled(stall: Stall) -> None:
        gone("stall", None, stall.pending)

    supervisor = threading.Thread(
        target=server.supervise,
        args=(done.is_set,),
        kwargs={
            "restart": True,
            "max_restarts": 10,
            "on_exit": exited,
            "on_stall": stalled,
            "stall_timeout_s": args.stall_timeout,
        },
        daemon=True,
    )
    host: dict[str, Any] = {"what": HOST_PROBE_WHAT}
    try:
        for video in videos:  # first-run costs, as in make bench
            analyze(video, url=address.grpc_url, protocol="grpc")
        # the host's speed before and after the hour: a p95 that drifts on a host that
        # changed speed under the load says nothing of the server
        host["before"] = probe.read()
        ticks = read_cpu_ticks()
        started = time.time()
        sampler.start()
        supervisor.start()
        seconds = args.minutes * 60
        plan = {p: n for p, n in (("grpc", users_grpc), ("http", users_http)) if n}
        records = run_levels(plan, lambda p, n: run_level(p, n, env, seconds, raw))
        sampler.stop()
        host["steal_share"] = steal_share(ticks, read_cpu_ticks())
        host["after"] = probe.read()
    except LoadGeneratorError as failed:
        sampler.stop()
        logger.error("soak failed, no result written: %s", failed)
        return LOAD_GENERATOR_FAILED
    finally:
        done.set()
        if supervisor.is_alive():
            supervisor.join()
        server.stop()
    everything = [r for rs in records.values() for r in rs]
    rows = windows(everything, sampler.samples, started, args.minutes)
    result = {
        "code_version": version,
        "machine": machine_facts(),
        "started_at": started,
        "minutes": args.minutes,
        "users": users,
        "users_grpc": users_grpc,
        "users_http": users_http,
        "sample_seconds": args.sample_seconds,
        "limit": args.limit,
        "windows": rows,
        "host_probe": host,
        "stall_timeout_s": args.stall_timeout,
        "server_exits": [
            {"minute": (e["t"] - started) / 60, **{k: v for k, v in e.items() if k != "t"}}
            for e in exits
        ],
        "verdict": verdict(rows, args.limit, exits),
    }
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    write_result_files(
        {
            out / "soak.md": render_markdown(result),
            out / "soak.json": json.dumps(result, indent=2) + "\n",
        },
        {out / "soak.png": lambda path: plot(result, sampler.samples, path)},
    )
    logger.info("soak: %s", json.dumps(result["verdict"]))
    return 0 if result["verdict"]["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the soak."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=positive_int, default=60)
    parser.add_argument(
        "--users", type=positive_int, default=None, help="default: measured capacity (--summary)"
    )
    parser.add_argument("--summary", type=Path, default=RESULTS / "summary.json")
    parser.add_argument("--limit", type=positive_number, default=PRODUCT_LIMIT)
    parser.add_argument("--sample-seconds", type=positive_number, default=10.0)
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=DEFAULT_STALL_TIMEOUT_S,
        help="seconds a model may have requests waiting while finishing none before the "
        "server is killed and restarted (0: off; default %(default)s)",
    )
    add_server_arguments(parser, first_port=18100)
    args = parser.parse_args(argv)
    if not args.stall_timeout >= 0:
        parser.error(f"--stall-timeout must be 0 (off) or positive, got {args.stall_timeout}")
    if args.users is None:  # before the server starts: a soak without users measures nothing
        try:
            args.users = measured_capacity(args.summary, args.limit)
        except (OSError, ValueError, KeyError) as exc:
            parser.error(f"no --users given, and no capacity read from --summary: {exc}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return run_soak(args)


if __name__ == "__main__":
    raise SystemExit(main())
