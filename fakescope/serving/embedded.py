"""The embedded Triton: the real ``tritonserver`` binary shipped in the ``nvidia-pytriton`` wheel.

The wheel carries tritonserver 2.51 with the python backend only. :func:`prepare_runtime` lays
out a backend directory next to it: the python backend, the python-backend stub for this
interpreter, and ``backends/onnxruntime/model.py`` (:mod:`fakescope.serving.onnxruntime_backend`),
a python-based backend that serves the ONNX models with ONNX Runtime under the same
``backend: "onnxruntime"`` name the NGC image uses on GPU. :class:`EmbeddedTriton` starts the
server on loopback, waits for ``/v2/health/ready`` and stops it with SIGTERM (which lets the
python stubs remove their ``/dev/shm`` regions). If the process that started it dies without
stopping it, a watch started beside it stops it instead (:mod:`fakescope.serving.orphan_watch`).

The repository is a local folder or an S3 location (:mod:`fakescope.storage`). An S3 one is
passed to tritonserver as it is (``--model-repository=s3://…``, credentials in its
environment); the local file check is then replaced by a remote one — bucket reachable,
credentials accepted, models present — and tritonserver reports anything deeper as load errors.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fakescope import contract
from fakescope.paths import SHM_DIR
from fakescope.serving.detector_nets import (
    IN_PROCESS,
    NETS_ENV,
    NetsPlacement,
    check_placement,
)
from fakescope.serving.model_config import max_request_bytes
from fakescope.serving.orphan_watch import end_orphan_watch, start_orphan_watch
from fakescope.serving.process_group import wait_until_gone
from fakescope.serving.repository_check import RepositoryError, check_repository
from fakescope.serving.siblings import REPOSITORY_ENV
from fakescope.serving.watchdog import (
    DEFAULT_STALL_TIMEOUT_S,
    DEFAULT_WATCHDOG_POLL_S,
    ProgressWatchdog,
    Stall,
    read_snapshot,
)
from fakescope.storage import S3Location, S3Storage, StorageError, s3_environment

logger = logging.getLogger(__name__)

_SHIM = Path(__file__).parent / "onnxruntime_backend" / "model.py"
#: Start size of each python stub's shared memory. It holds everything but the frames (pyramid
#: levels, crops, scores), so the stubs that never see frames stay this small; the ones that do
#: grow by :func:`python_shm_growth_bytes`.
PYTHON_SHM_START_BYTES = 64 * 1024 * 1024
#: Added to the request limit in the growth step: room for the frames tensor's header. A step of
#: exactly the limit would not hold it, and the python backend would then grow by two steps.
PYTHON_SHM_HEADROOM_BYTES = 1024 * 1024
SHM_PREFIX = "fakescope"
#: How long :meth:`EmbeddedTriton.stop` waits for the killed process group to be gone.
GROUP_EXIT_TIMEOUT_S = 10.0
#: Launches tried when tritonserver is killed by a signal during start-up and no model failed to
#: load: tritonserver 2.51's python backend now and then aborts while its stubs start (upstream
#: triton-inference-server/server#8882, a full test run's server at a time), and a new process
#: then comes up. An exit code of its own (a model that failed to load) is never retried.
START_ATTEMPTS = 2


class ServerStartError(RuntimeError):
    """The server could not be started; the message says why (port, model file, load error)."""


@dataclass(frozen=True)
class ServerGone:
    """How a supervised server went away: it exited, or it stalled and was killed.

    Attributes:
        code: tritonserver's exit code (``-SIGKILL`` after a stall).
        stall: why it counted as stalled; None when it exited on its own.

    """

    code: int | None
    stall: Stall | None = None


@dataclass(frozen=True)
class ServerAddress:
    """Where the server listens."""

    host: str = contract.DEFAULT_HOST
    http_port: int = contract.HTTP_PORT
    grpc_port: int = contract.GRPC_PORT
    metrics_port: int = contract.METRICS_PORT

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint (as tritonclient wants it)."""
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint."""
        return f"{self.host}:{self.grpc_port}"


def python_shm_growth_bytes(repository: Path) -> int:
    """Return the step by which a python stub's shared memory grows.

    The request limit in bytes (:func:`fakescope.serving.model_config.max_request_bytes`) plus
    :data:`PYTHON_SHM_HEADROOM_BYTES`: the stub handed a request at the limit
    (``face_detector``) grows once, by one step. ``docker-compose.yml`` passes the same value.
    """
    return max_request_bytes(repository) + PYTHON_SHM_HEADROOM_BYTES


def _pytriton_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError(
            "nvidia-pytriton is not installed: install the server extra (pip install '.[server]')"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def prepare_runtime(runtime_dir: Path, http_port: int) -> tuple[Path, Path]:
    """Lay out the backend directory in ``runtime_dir``; return ``(tritonserver, backends)``.

    One per server (named by its HTTP port, which no two running servers share): servers
    started from one working directory at once would otherwise rewrite the folder one of them
    is loading its backends from.
    """
    triton_dir = _pytriton_dir() / "tritonserver"
    binary = triton_dir / "bin" / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = triton_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not binary.is_file() or not stub.is_file():
        raise ServerStartError(f"tritonserver or its python {version} stub missing in {triton_dir}")
    backends = runtime_dir / f"backends-{http_port}"
    if backends.exists():
        shutil.rmtree(backends)
    shutil.copytree(triton_dir / "backends", backends)
    shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
    (backends / "onnxruntime").mkdir()
    shutil.copy2(_SHIM, backends / "onnxruntime" / "model.py")
    return binary, backends


#: The interpreter's library folder (its libpython), read once at import: ``sysconfig`` fills its
#: cache unlocked on first use, and a second thread asking meanwhile gets ``None`` (servers
#: started from two threads then ran their python stubs against another libpython).
_PYTHON_LIBDIR: str = sysconfig.get_config_var("LIBDIR") or ""


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # Set again below only for an S3 repository: a stale value would make the python models
    # read their sibling models from S3 while tritonserver serves a local folder.
    env.pop(REPOSITORY_ENV, None)
    libs = [
        _PYTHON_LIBDIR,
        str(_pytriton_dir().parent / "nvidia_pytriton.libs"),
    ]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(p for p in libs if p)
    # The python stub runs the interpreter found first on PATH: make it this one (the venv).
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def port_problem(host: str, port: int) -> str | None:
    """Return why tritonserver could not listen on ``host:port`` (``None``: it can)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def shm_glob(http_port: int) -> str:
    """Return the ``/dev/shm`` name pattern of the server on ``http_port``'s python stubs."""
    return f"{SHM_PREFIX}_{http_port}_*"


def shm_regions(http_port: int) -> list[Path]:
    """Return the python-backend shared-memory regions of the server on ``http_port``."""
    shm = SHM_DIR
    return sorted(shm.glob(shm_glob(http_port))) if shm.is_dir() else []


_LOAD_ERROR = re.compile(r"failed to load '([^']+)'[^:]*: (.*)")


def _load_errors(log: str) -> list[str]:
    errors = [f"model '{m.group(1)}': {m.group(2).strip()}" for m in _LOAD_ERROR.finditer(log)]
    if not errors:
        errors = [line for line in log.splitlines() if line.startswith("E")][-5:]
    return errors


def check_s3_repository(location: S3Location, copy_dir: Path) -> Path:
    """Check an S3 model repository from here; return a local copy of its small config files.

    Checked: the credentials (environment), the bucket, and that the prefix holds models
    (``<model>/config.pbtxt``). Every ``config.pbtxt`` is copied under ``copy_dir`` (the
    shared-memory size is computed from ``face_detector``'s); the model files are not
    downloaded here: tritonserver reads them and names any it cannot load.

    Raises:
        RepositoryError: missing credentials, unreachable endpoint, refused credentials,
            missing bucket, or no model under the prefix (the message says which).

    """
    try:
        storage = S3Storage(location)
        storage.check_bucket()
        configs = sorted(
            k for k in storage.listing() if k.count("/") == 1 and k.endswith("/config.pbtxt")
        )
        if not configs:
            raise RepositoryError(f"model repository {location} holds no model (no */config.pbtxt)")
        if copy_dir.exists():
            shutil.rmtree(copy_dir)
        for key in configs:
            storage.download(key, copy_dir / key)
    except StorageError as exc:
        raise RepositoryError(str(exc)) from exc
    logger.info(
        "model repository %s: %d models; the file-by-file check is left to tritonserver, which "
        "reads the repository from S3 itself",
        location,
        len(configs),
    )
    return copy_dir


class EmbeddedTriton:
    """A tritonserver child process serving ``repository`` (a folder or S3) on loopback."""

    def __init__(
        self,
        repository: Path | S3Location,
        address: ServerAddress | None = None,
        runtime_dir: Path | None = None,
        ready_timeout_s: float = 120.0,
        detector_nets: NetsPlacement = IN_PROCESS,
        working_dir: Path | None = None,
    ) -> None:
        self.repository = repository if isinstance(repository, S3Location) else repository.resolve()
        #: Where ``face_detector`` runs the MTCNN nets: in its own process by default, as the
        #: ONNX models here run on the python stand-in anyway (:mod:`.detector_nets`); ``"bls"``
        #: calls the ``mtcnn_*`` models, as the NGC image does.
        self.detector_nets = check_placement(detector_nets)
        #: The server's working directory (``None``: this process's). The python stubs look
        #: for modules there first, before the environment's packages: a tree holding another
        #: version of ``fakescope`` is served with that version
        #: (``python -m fakescope.benchmarks.repository_ab --code``).
        self.working_dir = working_dir
        self.address = address or ServerAddress()
        self.runtime_dir = (runtime_dir or Path(".fakescope") / "runtime").resolve()
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        #: Stops the server if this process dies without :meth:`stop` (:mod:`.orphan_watch`).
        self._orphan_watch: subprocess.Popen[bytes] | None = None
        self.log_path = self.runtime_dir / f"tritonserver-{self.address.http_port}.log"
        #: Where the configs of an S3 repository are copied (the shm size is read there), and
        #: where tritonserver copies its models (TRITON_AWS_MOUNT_DIRECTORY), per server.
        self._s3_configs = self.runtime_dir / f"s3-configs-{self.address.http_port}"
        self._s3_mount = self.runtime_dir / f"s3-models-{self.address.http_port}"

    @property
    def repository_url(self) -> str:
        """The ``--model-repository`` value: a folder or an ``s3://`` URL."""
        return (
            self.repository.url if isinstance(self.repository, S3Location) else str(self.repository)
        )

    def _config_source(self) -> Path:
        """Return a local folder holding the repository's ``config.pbtxt`` files."""
        return self._s3_configs if isinstance(self.repository, S3Location) else self.repository

    def command(self, binary: Path, backends: Path) -> list[str]:
        """Return the tritonserver command line.

        Each python stub's shared memory starts at :data:`PYTHON_SHM_START_BYTES` and grows by
        :func:`python_shm_growth_bytes` (for an S3 repository, of the configs copied by
        :func:`check_s3_repository` in :meth:`start`).
        """
        a = self.address
        return [
            str(binary),
            f"--model-repository={self.repository_url}",
            f"--backend-directory={backends}",
            "--model-control-mode=none",
            "--disable-auto-complete-config",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--allow-gpu-metrics=false",
            "--pinned-memory-pool-byte-size=0",
            "--cuda-memory-pool-byte-size=0:0",
            f"--http-address={a.host}",
            f"--http-port={a.http_port}",
            f"--grpc-address={a.host}",
            f"--grpc-port={a.grpc_port}",
            f"--metrics-address={a.host}",
            f"--metrics-port={a.metrics_port}",
            f"--backend-config=python,shm-default-byte-size={PYTHON_SHM_START_BYTES}",
            "--backend-config=python,shm-growth-byte-size="
            f"{python_shm_growth_bytes(self._config_source())}",
            f"--backend-config=python,shm-region-prefix-name={SHM_PREFIX}_{a.http_port}_",
            "--log-verbose=0",
        ]

    def start(self) -> None:
        """Start the server and wait until it is ready; raise :class:`ServerStartError` if not.

        Raises :class:`RepositoryError` first when the repository is incomplete or, on S3,
        unreachable (see :func:`check_s3_repository`).
        """
        env = _environment()
        env[NETS_ENV] = self.detector_nets
        if isinstance(self.repository, S3Location):
            try:
                env.update(s3_environment())
            except StorageError as exc:
                raise RepositoryError(str(exc)) from exc
            check_s3_repository(self.repository, self._s3_configs)
            env[REPOSITORY_ENV] = self.repository.url
            # An empty folder of its own per server: tritonserver's copies of the models go
            # there (not /tmp) and are removed with the runtime folder.
            if self._s3_mount.exists():
                shutil.rmtree(self._s3_mount)
            self._s3_mount.mkdir(parents=True)
            env["TRITON_AWS_MOUNT_DIRECTORY"] = str(self._s3_mount)
        else:
            check_repository(self.repository)
        a = self.address
        if a.host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning("binding to %s: the server will be reachable from the network", a.host)
        for port in (a.http_port, a.grpc_port, a.metrics_port):
            problem = port_problem(a.host, port)
            if problem is not None:
                raise ServerStartError(problem)
        try:
            self.runtime_dir.mkdir(parents=True, exist_ok=True)
            binary, backends = prepare_runtime(self.runtime_dir, a.http_port)
        except OSError as exc:  # a read-only working directory, a full disk
            raise ServerStartError(
                f"cannot lay out the server's runtime folder {self.runtime_dir}: {exc}"
            ) from None
        for attempt in range(1, START_ATTEMPTS + 1):
            exited = self._launch(binary, backends, env)
            if exited is None:
                return
            code, text = exited
            crashed = code < 0 and not _LOAD_ERROR.search(text)
            if not crashed or attempt == START_ATTEMPTS:
                details = "; ".join(_load_errors(text)) or "see " + str(self.log_path)
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                raise ServerStartError(
                    f"tritonserver exited during start-up ({how}, start {attempt}): {details}"
                )
            logger.warning(
                "tritonserver was killed by signal %d during start-up and no model failed to "
                "load (the python backend's start-up abort, upstream "
                "triton-inference-server/server#8882?): starting it again",
                -code,
            )

    def _launch(self, binary: Path, backends: Path, env: dict[str, str]) -> tuple[int, str] | None:
        """Run tritonserver until it is ready (``None``) or exits: then its exit code and log.

        Raises:
            ServerStartError: not ready within ``ready_timeout_s`` (the process is stopped).

        """
        a = self.address
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command(binary, backends),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=self.working_dir,
        )
        log.close()
        try:
            self._orphan_watch = start_orphan_watch(self.process.pid, shm_glob(a.http_port))
        except OSError:
            self.stop()  # no server is left running unwatched
            raise
        try:
            deadline = time.monotonic() + self.ready_timeout_s
            while time.monotonic() < deadline:
                code = self.process.poll()
                if code is not None:
                    text = self.log_path.read_text(errors="replace")
                    self.stop()  # reap orphan stubs, remove shared memory
                    return code, text
                if self.is_ready():
                    logger.info("tritonserver ready at http://%s grpc://%s", a.http_url, a.grpc_url)
                    return None
                time.sleep(0.1)
        except BaseException:
            # Ctrl-C (or SIGTERM turned into an exception) while it starts: the caller never
            # gets a started server to stop, so it is stopped here.
            self.stop()
            raise
        self.stop()
        raise ServerStartError(f"tritonserver not ready after {self.ready_timeout_s:.0f} s")

    def is_ready(self) -> bool:
        """Return True when ``/v2/health/ready`` answers 200."""
        url = f"http://{self.address.http_url}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM the server and wait; SIGKILL only if it hangs. Return its exit code.

        Also cleans up after a server that died on its own (e.g. was SIGKILLed): python stubs
        left in its process group are killed and its ``/dev/shm`` regions removed.
        """
        if self._orphan_watch is not None:
            watch, self._orphan_watch = self._orphan_watch, None
            end_orphan_watch(watch)
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.error("tritonserver ignored SIGTERM for %.0f s; killing it", timeout_s)
                process.kill()
                process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # orphaned python stubs, if any
        # the kill lands asynchronously: a stub still exiting holds its shared memory, and a
        # restart or the caller's next step would race with it
        if alive := wait_until_gone(process.pid, GROUP_EXIT_TIMEOUT_S):
            logger.error(
                "%d process(es) of tritonserver's group %d outlived SIGKILL for %.0f s",
                alive,
                process.pid,
                GROUP_EXIT_TIMEOUT_S,
            )
        for region in shm_regions(self.address.http_port):
            logger.warning("removing leftover shared memory %s", region)
            region.unlink(missing_ok=True)
        if isinstance(self.repository, S3Location):  # this server's copies of the S3 models
            shutil.rmtree(self._s3_mount, ignore_errors=True)
        return process.returncode

    def supervise(
        self,
        stop_requested: Callable[[], bool],
        *,
        restart: bool,
        max_restarts: int = 5,
        poll_s: float = 0.2,
        on_exit: Callable[[int | None], None] | None = None,
        stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
        watchdog_poll_s: float = DEFAULT_WATCHDOG_POLL_S,
        on_stall: Callable[[Stall], None] | None = None,
    ) -> ServerGone | None:
        """Watch the running server until ``stop_requested()``; return None then.

        The server is gone when tritonserver dies on its own, or when it stalls: every
        ``watchdog_poll_s`` its metrics go to a :class:`ProgressWatchdog` (``stall_timeout_s``;
        0 turns the watchdog off), and a stalled server is killed with SIGKILL to its process
        group (a hung server may ignore SIGTERM). Either way it is cleaned up after, ``on_exit``
        (its exit code) or ``on_stall`` (the :class:`Stall`) is told, and with ``restart`` it
        is started again (at most ``max_restarts`` times, stalls and exits together); otherwise
        the :class:`ServerGone` is returned.
        """
        restarts = 0
        watchdog = self._watchdog(stall_timeout_s)
        next_check = time.monotonic() + watchdog_poll_s
        while not stop_requested():
            process = self.process
            if process is None:
                raise ServerStartError("supervise() needs a started server")
            stall = None
            if process.poll() is None:
                if watchdog is None or time.monotonic() < next_check:
                    time.sleep(poll_s)
                    continue
                stall = watchdog.observe(read_snapshot(self.metrics_url), time.monotonic())
                next_check = time.monotonic() + watchdog_poll_s
                if stall is None:
                    continue
                logger.error(
                    "tritonserver (pid %s) stalled: %s; killing it; log: %s",
                    process.pid,
                    stall.describe(),
                    self.log_path,
                )
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            else:
                logger.error(
                    "tritonserver exited unexpectedly (code %s); log: %s",
                    process.returncode,
                    self.log_path,
                )
            gone = ServerGone(code=process.returncode, stall=stall)
            self.stop()
            if stall is not None and on_stall is not None:
                on_stall(stall)
            elif stall is None and on_exit is not None:
                on_exit(gone.code)
            if not restart or restarts >= max_restarts:
                return gone
            restarts += 1
            logger.warning("restarting tritonserver (%d/%d)", restarts, max_restarts)
            self.start()
            logger.warning("tritonserver restarted (pid %s)", self.process and self.process.pid)
            watchdog = self._watchdog(stall_timeout_s)  # a new server: its counters start at 0
            next_check = time.monotonic() + watchdog_poll_s
        return None

    @property
    def metrics_url(self) -> str:
        """Triton's Prometheus endpoint."""
        return f"http://{self.address.host}:{self.address.metrics_port}/metrics"

    @staticmethod
    def _watchdog(stall_timeout_s: float) -> ProgressWatchdog | None:
        if stall_timeout_s == 0:
            return None
        return ProgressWatchdog(stall_timeout_s, started_at=time.monotonic())

    def __enter__(self) -> EmbeddedTriton:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
