"""What a benchmark records about the host it ran on."""

from __future__ import annotations

import os
import platform

import pytest

from fakescope.benchmarks.machine import (
    CPUINFO,
    cpu_facts,
    describe_cpu,
    describe_gpus,
    machine_facts,
    parse_gpu_query,
)

TWO_CPUS = """processor\t: 0
model name\t: AMD EPYC
cpu MHz\t\t: 2445.406
flags\t\t: fpu sse2 avx fma avx2 sha_ni

processor\t: 1
model name\t: Other CPU
cpu MHz\t\t: 1000.000
flags\t\t: fpu avx512f avx512_vnni
"""


def test_cpu_facts_reads_first_cpu_when_cpuinfo_lists_several():
    facts = cpu_facts(TWO_CPUS)
    assert facts == {
        "cpu_model": "AMD EPYC",
        "cpu_mhz": 2445,
        "cpu_vector_extensions": ["avx2", "fma"],
    }


def test_cpu_facts_reports_avx512_when_flags_have_it():
    cpuinfo = "model name : Xeon\nflags : avx2 avx512f avx512_vnni amx_tile\n"
    assert cpu_facts(cpuinfo)["cpu_vector_extensions"] == [
        "avx2",
        "avx512f",
        "avx512_vnni",
        "amx_tile",
    ]


def test_cpu_facts_reports_avx_vnni_when_flags_have_it():
    # AVX-VNNI without AVX-512 (Intel desktop cores since Alder Lake): int8 without saturation
    cpuinfo = "model name : Core\nflags : avx2 fma avx_vnni\n"
    assert cpu_facts(cpuinfo)["cpu_vector_extensions"] == ["avx2", "fma", "avx_vnni"]


def test_cpu_facts_leaves_clock_and_extensions_unknown_when_no_cpuinfo():
    facts = cpu_facts("")
    assert facts["cpu_mhz"] is None
    assert facts["cpu_vector_extensions"] is None


def test_describe_cpu_names_model_clock_and_extensions_when_known():
    assert describe_cpu(cpu_facts(TWO_CPUS)) == "AMD EPYC, 2445 MHz, avx2 fma"
    assert describe_cpu({"cpu_model": "x", "cpu_vector_extensions": []}) == "x, no AVX2"


def test_machine_facts_reads_this_machine_when_called():
    facts = machine_facts()
    assert facts["cores"] == os.cpu_count()
    assert facts["python"] == platform.python_version()
    assert isinstance(facts["gpus"], list)
    if not CPUINFO.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    this_cpu = cpu_facts(CPUINFO.read_text())
    assert this_cpu["cpu_model"] != "unknown"  # read from this machine, not the fallback
    # the clock is left out: a host that scales its frequency reads another one each time
    for key in ("cpu_model", "cpu_vector_extensions"):
        assert facts[key] == this_cpu[key], key


def test_parse_gpu_query_returns_one_gpu_per_line_when_nvidia_smi_lists_two():
    answer = "NVIDIA H200, 143771 MiB, 580.159.04\nNVIDIA H200, 143771 MiB, 580.159.04\n"
    gpus = parse_gpu_query(answer)
    assert (
        gpus == [{"name": "NVIDIA H200", "memory_total": "143771 MiB", "driver": "580.159.04"}] * 2
    )
    assert describe_gpus({"gpus": gpus}) == "2 × NVIDIA H200"


def test_describe_gpus_says_no_gpu_when_none_was_found():
    assert describe_gpus({"gpus": []}) == "no GPU"
    assert describe_gpus({}) == "no GPU"
