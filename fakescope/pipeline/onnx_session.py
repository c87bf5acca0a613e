"""The ONNX Runtime session settings every ONNX model of FakeScope runs with on the CPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime as ort


def cpu_session_options(
    intra_op_threads: int | None = None, inter_op_threads: int | None = None
) -> ort.SessionOptions:
    """Return session options: all graph optimisations, idle intra-op threads asleep.

    The served models (the embedded server's ONNX Runtime stand-in) and every in-process run
    (benchmarks, export checks, training data) use these, so an in-process measurement compares
    like with like. Idle intra-op threads sleep instead of spinning: several ONNX models and the
    python models share a few cores, and spinning threads burn each other's time
    (``benchmarks/README.md``, "What each lever bought"). ``None`` keeps ONNX Runtime's own
    thread counts.
    """
    import onnxruntime as ort  # imported here: only callers that run a model need it

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    if inter_op_threads is not None:
        options.inter_op_num_threads = inter_op_threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
