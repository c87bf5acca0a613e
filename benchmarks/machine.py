"""What machine a benchmark ran on: what a reader needs to compare runs made on different hosts.

The hosts behind this environment differ: the same code measured about 2× apart on two of them,
both reported as "AMD EPYC" with 2 cores. ONNX Runtime and PyTorch pick their kernels by the
CPU's vector extensions, so those (and the clock) are recorded beside the model name.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")
#: The vector extensions that change which CPU kernels ONNX Runtime and PyTorch run.
#: The VNNI ones (``avx512_vnni``, ``avx_vnni``) decide whether ONNX Runtime's int8 kernels can
#: saturate (``benchmarks/classifier_int8.py``).
VECTOR_EXTENSIONS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
)


def _first_cpu(cpuinfo: str) -> dict[str, str]:
    """Return the ``key: value`` lines of the first processor in ``/proc/cpuinfo`` text."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_facts(cpuinfo: str | None = None) -> dict[str, Any]:
    """Return the CPU's model name, clock (MHz) and which :data:`VECTOR_EXTENSIONS` it has.

    ``cpuinfo`` is ``/proc/cpuinfo``'s text (read when omitted); without it (not Linux) the
    model is :func:`platform.processor` and the rest unknown (``None``).
    """
    if cpuinfo is None:
        cpuinfo = CPUINFO.read_text() if CPUINFO.is_file() else ""
    fields = _first_cpu(cpuinfo)
    if not fields:
        return {
            "cpu_model": platform.processor() or "unknown",
            "cpu_mhz": None,
            "cpu_vector_extensions": None,
        }
    flags = set(fields.get("flags", "").split())
    mhz = fields.get("cpu MHz")
    return {
        "cpu_model": fields.get("model name", "unknown"),
        "cpu_mhz": round(float(mhz)) if mhz else None,
        "cpu_vector_extensions": [x for x in VECTOR_EXTENSIONS if x in flags],
    }


#: What ``nvidia-smi`` is asked about each GPU, in its ``--query-gpu`` names.
GPU_QUERY = ("name", "memory.total", "driver_version")


def parse_gpu_query(text: str) -> list[dict[str, str]]:
    """Return one ``{name, memory_total, driver}`` per line of ``nvidia-smi``'s CSV answer."""
    gpus = []
    for line in text.splitlines():
        if line.strip():
            name, memory, driver = (v.strip() for v in line.split(",", 2))
            gpus.append({"name": name, "memory_total": memory, "driver": driver})
    return gpus


def gpu_facts() -> list[dict[str, str]]:
    """Return the GPUs ``nvidia-smi`` lists (:func:`parse_gpu_query`); ``[]`` without one.

    A host without ``nvidia-smi`` has no GPU a benchmark could have used; one whose
    ``nvidia-smi`` fails is reported as such in the log and counted as none.
    """
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    query = [smi, f"--query-gpu={','.join(GPU_QUERY)}", "--format=csv,noheader"]
    try:
        answer = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("nvidia-smi failed, no GPU recorded: %s", exc)
        return []
    return parse_gpu_query(answer.stdout)


def machine_facts() -> dict[str, Any]:
    """Cores, CPU (:func:`cpu_facts`), GPUs (:func:`gpu_facts`), Python and load at the start."""
    return {
        "cores": os.cpu_count(),
        **cpu_facts(),
        "gpus": gpu_facts(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


def describe_cpu(machine: dict[str, Any]) -> str:
    """One phrase for a result table's header: ``AMD EPYC, 2445 MHz, avx2 fma``."""
    parts = [str(machine.get("cpu_model", "unknown"))]
    if machine.get("cpu_mhz"):
        parts.append(f"{machine['cpu_mhz']} MHz")
    extensions = machine.get("cpu_vector_extensions")
    if extensions is not None:
        parts.append(" ".join(extensions) or "no AVX2")
    return ", ".join(parts)


def describe_cores_and_load(machine: dict[str, Any]) -> str:
    """One phrase for a table's header: cores, CPU and the load average at start and end.

    ``2 cores (CPU, 2600 MHz), load average 0.20 at start and 0.30 at the end``; ``machine`` is
    :func:`machine_facts` with ``load_average_at_end`` added.
    """
    return (
        f"{machine['cores']} cores ({machine['cpu_model']}, {machine['cpu_mhz']} MHz), load "
        f"average {machine['load_average_at_start'][0]:.2f} at start and "
        f"{machine['load_average_at_end'][0]:.2f} at the end"
    )


def describe_gpus(machine: dict[str, Any]) -> str:
    """One phrase naming the GPUs (``1 × NVIDIA H200``), or ``no GPU``."""
    names = [g["name"] for g in machine.get("gpus") or []]
    if not names:
        return "no GPU"
    return ", ".join(f"{names.count(n)} × {n}" for n in dict.fromkeys(names))
