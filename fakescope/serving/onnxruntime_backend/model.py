"""A python-based Triton backend named ``onnxruntime`` for the embedded (CPU) server.

The NGC Triton image serves the ONNX models with its real ONNX Runtime backend; the
``tritonserver`` in the ``nvidia-pytriton`` wheel ships only the python backend. Triton loads a
python-based backend from ``<backend-dir>/<backend name>/model.py``, so the embedded server installs
this file as ``backends/onnxruntime/model.py`` and the *same* ``config.pbtxt``
(``backend: "onnxruntime"``) serves both deployments. It honours the ORT backend's
``default_model_filename``, the ``intra_op_thread_count`` / ``inter_op_thread_count``
parameters and, on a GPU instance, ``cudnn_conv_algo_search`` (the model repository holds no
parameter the real backend would ignore: :mod:`fakescope.serving.repository_check`), and runs
one ONNX Runtime session per model instance on the whole dynamic batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from fakescope.pipeline.onnx_session import cpu_session_options
from fakescope.serving.model_config import load_model_config, onnx_model_settings


class TritonPythonModel:
    """Runs ``<model>/<version>/model.onnx`` with ONNX Runtime."""

    def initialize(self, args: dict[str, str]) -> None:
        """Create the session once and check that its tensors match ``config.pbtxt``."""
        config = load_model_config(args)
        try:
            settings = onnx_model_settings(config)
        except ValueError as exc:
            raise pb_utils.TritonModelException(str(exc)) from exc
        path = Path(args["model_repository"]) / args["model_version"] / settings.filename
        if not path.is_file():
            raise pb_utils.TritonModelException(f"{config['name']}: model file missing: {path}")
        # Sleeping idle threads are the stand-in's own CPU policy, not a config parameter (the
        # real backend has no such parameter): see cpu_session_options.
        options = cpu_session_options(settings.intra_op_threads, settings.inter_op_threads)
        providers: list = ["CPUExecutionProvider"]
        on_gpu = args.get("model_instance_kind") == "GPU"
        if on_gpu:
            cuda: dict[str, object] = {"device_id": int(args.get("model_instance_device_id", "0"))}
            if settings.cudnn_conv_algo_search is not None:
                cuda["cudnn_conv_algo_search"] = settings.cudnn_conv_algo_search
            providers = [("CUDAExecutionProvider", cuda), *providers]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types; name the file
            raise pb_utils.TritonModelException(
                f"{config['name']}: cannot load {path}: {exc}"
            ) from exc
        # ONNX Runtime falls back to the CPU when the CUDA provider cannot load (no
        # onnxruntime-gpu, CUDA libraries missing) and only logs it: a GPU instance must not
        # quietly serve from the CPU.
        if on_gpu and "CUDAExecutionProvider" not in self.session.get_providers():
            raise pb_utils.TritonModelException(
                f"{config['name']}: a GPU instance, but ONNX Runtime {ort.__version__} runs "
                f"{self.session.get_providers()} without CUDAExecutionProvider (install "
                "onnxruntime-gpu and the CUDA libraries it needs)"
            )
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        onnx_inputs = {t.name for t in self.session.get_inputs()}
        onnx_outputs = {t.name for t in self.session.get_outputs()}
        if set(self.input_names) != onnx_inputs or not set(self.output_names) <= onnx_outputs:
            raise pb_utils.TritonModelException(
                f"{config['name']}: config.pbtxt tensors {self.input_names} -> {self.output_names} "
                f"do not match {path.name}: {sorted(onnx_inputs)} -> {sorted(onnx_outputs)}"
            )
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests: list) -> list:
        """Run every request; with batching, all requests of the batch in one session call."""
        feeds = [
            {n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.input_names}
            for r in requests
        ]
        if self.batched and len(requests) > 1:
            sizes = [f[self.input_names[0]].shape[0] for f in feeds]
            merged = {n: np.concatenate([f[n] for f in feeds]) for n in self.input_names}
            outputs = self.session.run(self.output_names, merged)
            bounds = np.cumsum(sizes)[:-1]
            per_request = [np.split(o, bounds) for o in outputs]
            results = [[parts[i] for parts in per_request] for i in range(len(requests))]
        else:
            results = [self.session.run(self.output_names, f) for f in feeds]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(n, o) for n, o in zip(self.output_names, outs, strict=True)
                ]
            )
            for outs in results
        ]
