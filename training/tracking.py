"""Experiment tracking with ClearML — offline by default, a real server when configured.

Every ``fakescope train`` / ``fakescope evaluate`` run is one ClearML Task
(:func:`start_run`): hyperparameters, scalars per epoch, plots, the checkpoint as an
``OutputModel`` and the data version. Without a server (no ``CLEARML_API_HOST`` /
``CLEARML_API_ACCESS_KEY`` in the environment, or ``offline=True``) the SDK runs in offline
mode and, when the task closes, writes a session zip under
``$CLEARML_CACHE_DIR/offline/`` (default ``~/.clearml/cache/offline/``) that
``clearml-task import`` / ``Task.import_offline_session(zip)`` uploads to a server later.

Library code reports through the module functions (:func:`report_scalar`, …), which use
``Task.current_task()`` and do nothing when no task is running, so training and evaluation work
the same with or without ClearML.

Three honest limitations of clearml 2.1.12 offline, handled here:

* ``OutputModel.update_weights`` fails offline (``'DummyModel' object has no attribute
  'locked'``) before reaching its own offline code path; :func:`report_output_model` then calls
  that offline path (``_update_weights_offline``, which copies the file into the session) directly.
* The code is stored as a standalone script (``Task.force_store_standalone_script``): ClearML's
  repository detection would start ``git``; the commit is recorded by FakeScope itself.
* The script section is detected before ``Task.init`` returns, not in ClearML's background
  thread (:func:`_detect_script_inline`): an offline task has no script section until that
  thread sets one, and a ``git`` call of that thread can hang until the task closes (the
  reporting process ``Task.init`` forks inherits its pipe).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PROJECT",
    "TrackedRun",
    "clearml_online",
    "report_artifact",
    "report_figure",
    "report_hyperparameters",
    "report_output_model",
    "report_scalar",
    "report_text",
    "start_run",
]

logger = logging.getLogger(__name__)

PROJECT = "FakeScope"
_SERVER_VARIABLES = ("CLEARML_API_HOST", "CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY")


def clearml_online() -> bool:
    """Whether the standard ``CLEARML_*`` variables point at a server (host and credentials)."""
    return all(os.environ.get(v) for v in _SERVER_VARIABLES)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """ClearML prints status lines on stdout; keep stdout for the CLI's own (JSON) output."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


@contextlib.contextmanager
def _detect_script_inline() -> Iterator[None]:
    """Make ``Task.init`` fill the task's script section before it returns, without a thread.

    With the setting ``sdk.development.vcs_repo_detect_async`` (true by default), clearml
    2.1.12 fills the section in a thread (``Task._update_repository``, clearml/task.py:4587).
    Offline, the section is ``None`` until that thread sets it (backend_interface/task/task.py:352)
    and ``Dataset.add_files`` appends to it (datasets/dataset.py:3346). Worse, ``Task.init`` then
    forks its reporting process (task.py:913 -> utilities/process/mp.py:662); a fork while the
    thread spawns ``git status`` (repo/detectors.py:191) copies the pipe ``subprocess`` reads
    until the child has started, the copy stays open until the task closes, and the thread
    blocks on it. Inline detection ends before that fork; the setting is read per ``Task.init``
    (task.py:4586), as this class attribute, so it is switched off around the call only.
    """
    from clearml import Task

    name = "_Task__detect_repo_async"  # clearml.Task.__detect_repo_async
    if name not in vars(Task):
        raise RuntimeError(f"clearml.Task has no {name} (SDK changed?): cannot detect inline")
    saved = vars(Task)[name]
    setattr(Task, name, False)
    try:
        yield
    finally:
        setattr(Task, name, saved)


@dataclass
class TrackedRun:
    """A running ClearML task; :meth:`close` it to write the offline session zip."""

    task: Any
    offline: bool
    offline_folder: Path | None
    session_zip: Path | None = None

    @property
    def task_id(self) -> str:
        """The ClearML task id (``offline-…`` in offline mode)."""
        return str(self.task.id)

    def close(self) -> Path | None:
        """Close the task; return the offline session zip (``None`` when online)."""
        with _stdout_to_stderr():
            self.task.close()
        if self.offline and self.offline_folder is not None:
            candidate = self.offline_folder.with_suffix(".zip")
            if not candidate.is_file():
                raise RuntimeError(f"ClearML did not write its offline session zip {candidate}")
            self.session_zip = candidate
            logger.info("ClearML offline session: %s", candidate)
        return self.session_zip

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_run(
    task_name: str, task_type: str, *, offline: bool | None = None, project: str = PROJECT
) -> TrackedRun:
    """Start a ClearML task (``task_type``: ``"training"`` or ``"testing"``).

    ``offline=None`` means offline unless :func:`clearml_online`.
    """
    from clearml import Task

    offline = (not clearml_online()) if offline is None else offline
    if Task.current_task() is not None:
        raise RuntimeError("a ClearML task is already running in this process; close it first")
    Task.set_offline(offline)
    Task.force_store_standalone_script()
    with _stdout_to_stderr(), _detect_script_inline():
        task = Task.init(
            project_name=project,
            task_name=task_name,
            task_type=Task.TaskTypes(task_type),
            reuse_last_task_id=False,
            auto_connect_arg_parser=False,
            auto_connect_frameworks=False,
            auto_resource_monitoring=False,
            auto_connect_streams=False,
        )
    folder = Path(task.get_offline_mode_folder()) if offline else None
    return TrackedRun(task=task, offline=offline, offline_folder=folder)


def _current() -> Any:
    try:
        from clearml import Task
    except ImportError:  # tracking is optional for library users
        return None
    return Task.current_task()


def report_hyperparameters(values: Mapping[str, Any], name: str = "General") -> None:
    """Connect ``values`` as a hyperparameter section of the current task (no-op without one)."""
    task = _current()
    if task is not None:
        task.connect(dict(values), name=name)


def report_scalar(title: str, series: str, value: float, iteration: int) -> None:
    """Report one scalar point to the current task (no-op without one)."""
    task = _current()
    if task is not None:
        task.get_logger().report_scalar(title, series, float(value), iteration=iteration)


def report_text(text: str) -> None:
    """Log a line of text to the current task (no-op without one)."""
    task = _current()
    if task is not None:
        with _stdout_to_stderr():  # the SDK echoes text to the console
            task.get_logger().report_text(text, print_console=False)


def report_figure(title: str, series: str, figure: Any, iteration: int = 0) -> None:
    """Report a matplotlib figure as an image to the current task (no-op without one)."""
    task = _current()
    if task is not None:
        task.get_logger().report_matplotlib_figure(
            title, series, figure, iteration=iteration, report_image=True
        )


def report_artifact(name: str, artifact: Any) -> None:
    """Attach a JSON-able object or a file path as an artifact of the current task."""
    task = _current()
    if task is not None:
        task.upload_artifact(name, artifact_object=artifact, wait_on_upload=True)


def report_output_model(path: Path, name: str, tags: list[str] | None = None) -> str | None:
    """Register ``path`` (a checkpoint) as an ``OutputModel`` of the current task.

    Returns where ClearML stored it (in offline mode: inside the session folder), or ``None``
    without a task.
    """
    task = _current()
    if task is None:
        return None
    from clearml import OutputModel

    model = OutputModel(task=task, name=name, framework="PyTorch", tags=tags or [])
    if not task.is_offline():
        return str(model.update_weights(weights_filename=str(path), auto_delete_file=False))
    try:
        return str(model.update_weights(weights_filename=str(path), auto_delete_file=False))
    except AttributeError as exc:  # clearml 2.1.12 offline: DummyModel has no 'locked'
        if "locked" not in str(exc):
            raise
        logger.debug("clearml offline OutputModel bug (%s); using its offline path", exc)
        return str(model._update_weights_offline(weights_filename=str(path)))
