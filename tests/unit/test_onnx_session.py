"""The ONNX Runtime settings shared by the served models and every in-process run."""

from __future__ import annotations

import onnxruntime as ort

from fakescope.pipeline.onnx_session import cpu_session_options


def test_cpu_session_options_let_idle_threads_sleep_when_created():
    options = cpu_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.intra_op_num_threads == 0  # ONNX Runtime's own choice


def test_cpu_session_options_use_the_thread_counts_when_given():
    options = cpu_session_options(intra_op_threads=1, inter_op_threads=2)
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 2)
