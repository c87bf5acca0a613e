"""A thin, typed client for the ``deepfake_detector`` ensemble (KServe v2, HTTP or gRPC).

One :class:`DetectorClient` wraps one tritonclient client, reused for every call. Errors are
translated into two types:

* :class:`ServerUnreachableError` — connection refused, DNS failure, or no answer within
  ``timeout_s``. After a failed call the client asks ``is_server_live`` (lazily, only then) to
  tell "nobody there" from "the server answered with an error".
* :class:`ServerError` — the server answered, with an error (its message is kept), or with a
  response that breaks the contract in :mod:`fakescope.contract` (missing/misshaped output,
  unknown ``STATUS``, ``ok`` with a NaN probability).

Thread-safety: the gRPC client may be shared by threads; the HTTP client may not (tritonclient's
HTTP client is gevent-based): use one :class:`DetectorClient` per thread with ``protocol="http"``.
With shared memory (the default on loopback) calls of one client are serialised by a lock.

Overload: a server whose admission queue is full answers ``UNAVAILABLE`` (HTTP 503); the client
retries such answers with exponential backoff and full jitter, at most ``retries`` times and
never past ``timeout_s`` in total, logging each retry; then it raises :class:`ServerError`.
Deadlines: a video of known duration carries, in each attempt, how long it may wait in the
admission queue (:func:`fakescope.contract.queue_wait_seconds`: its budget less the time already
spent and the analysis' reserve; the server keeps its queue's own timeout when that is
shorter); the server refuses it (``UNAVAILABLE``, "Request timeout expired") rather than answer
it after its limit, and the client starts no retry past that wait.
Behind an L7 balancer, a request in flight on a replica that dies is answered by the balancer
itself: HTTP 502, or over gRPC an HTTP/2 5xx header (Traefik sends 500). A balancer does not
re-send a request its replica already received, so the client does, the same way as an overload;
safe because an inference is a pure function of the frames (nothing is stored or counted twice).

Shared memory: when the server is on this machine (loopback URL) the frames travel through a
system shared-memory region (:mod:`fakescope.client.shared_memory`) instead of the message; if
the server cannot map it (e.g. it runs in a container), or the server that answers does not know
the region (a balancer on loopback sent the registration to another replica), the client says so
once and falls back. Frames decoded into :meth:`DetectorClient.frames_buffer` are already in a
region and are sent without a copy.

Besides the ensemble, the client scores face crops with the served ``face_classifier`` directly
(:meth:`DetectorClient.score_faces`, what the occlusion heatmaps of
:mod:`fakescope.client.occlusion` are made of), in requests of at most the classifier's
``max_batch_size`` crops, with the input size, batch limit and face framing the server states
(:meth:`DetectorClient.classifier_input`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException

from fakescope import contract
from fakescope.client.shared_memory import FrameRegions, is_loopback

__all__ = [
    "CALL_TIMEOUT_S",
    "DEFAULT_URLS",
    "ClassifierInput",
    "DetectorClient",
    "DetectorClientError",
    "ModelFacts",
    "Protocol",
    "RawResult",
    "ServerError",
    "ServerUnreachableError",
    "parse_outputs",
    "threshold_from_config",
    "trained_from_config",
]

logger = logging.getLogger(__name__)

Protocol = Literal["http", "grpc"]

#: Where Triton listens by default, per protocol.
DEFAULT_URLS: Final[dict[str, str]] = {
    "http": f"{contract.DEFAULT_HOST}:{contract.HTTP_PORT}",
    "grpc": f"{contract.DEFAULT_HOST}:{contract.GRPC_PORT}",
}
#: How to send the frames, as ``fakescope analyze --shared-memory`` and the web service's
#: ``triton_shared_memory`` name it, and the ``shared_memory`` argument of
#: :class:`DetectorClient` each stands for: through system shared memory (``on``), in the
#: request body (``off``), or through shared memory when the URL is a loopback address
#: (``auto``). A server that cannot open the client's region gets the frames in the body.
SHARED_MEMORY_CHOICES: Final[dict[str, bool | None]] = {"auto": None, "on": True, "off": False}
#: gRPC message limit both ways (frames of one video can be tens of MB): the protocol's maximum.
GRPC_MAX_MESSAGE_BYTES: Final = 2**31 - 1
#: Seconds the liveness probe after a failure may take at most.
LIVENESS_PROBE_TIMEOUT_S: Final = 5.0
#: Seconds one call to the server may take (the CLI's ``--timeout``, the web service's).
CALL_TIMEOUT_S: Final = 60.0
#: Seconds a frames region is offered for unregistering again while Triton still counts it in
#: use (it releases a request's regions just after the response: DetectorClient._unregister_region).
REGION_RELEASE_WAIT_S: Final = 1.0
#: Triton's refusal to unregister a region a request still holds.
_REGION_IN_USE: Final = re.compile(r"Cannot unregister shared memory region .* in use")
#: Retries of an UNAVAILABLE (overloaded) answer, and the backoff before the first one.
DEFAULT_RETRIES: Final = 3
BACKOFF_BASE_S: Final = 0.25
BACKOFF_MAX_S: Final = 4.0
_OVERLOADED: Final = frozenset({"StatusCode.UNAVAILABLE", "503"})
#: Answers retried with the same backoff: overload, and a balancer whose replica died mid-request.
_RETRIED: Final = _OVERLOADED | {"502"}
#: How gRPC reports an HTTP 5xx answer: from an HTTP/2 proxy (a balancer), never from Triton,
#: whose own errors travel as gRPC statuses. Traefik answers 500 for a stream its replica reset.
_PROXY_5XX: Final = re.compile(r"Received http2 header with status: 5\d\d")
#: Triton's error for a shared-memory region it has not registered.
_UNKNOWN_REGION: Final = "Unable to find shared memory region"

_OUTPUTS: Final = (
    contract.FAKE_PROBABILITY,
    contract.FRAME_SCORES,
    contract.FACE_BOXES,
    contract.FACE_SCORES,
    contract.STATUS,
)
_STATUSES: Final = frozenset({contract.STATUS_OK, contract.STATUS_NO_FACE})


class DetectorClientError(Exception):
    """Base class of the errors raised by :class:`DetectorClient`."""


class ServerUnreachableError(DetectorClientError):
    """No answer from the server: connection refused, unknown host, or timed out."""


class ServerError(DetectorClientError):
    """The server answered with an error, or with a response that breaks the contract.

    Attributes:
        status: the transport status (HTTP code or gRPC status name) when there was one.
        server_message: the server's message as received (may span lines).

    """

    def __init__(self, message: str, *, status: str | None = None, server_message: str = ""):
        super().__init__(" ".join(message.split()))
        self.status = status
        self.server_message = server_message or message

    @property
    def overloaded(self) -> bool:
        """Whether the server refused the call as overloaded (``UNAVAILABLE`` / HTTP 503)."""
        return self.status in _OVERLOADED


@dataclass(frozen=True)
class RawResult:
    """The ensemble's outputs for one video, validated against the contract.

    Attributes:
        fake_probability: ``FAKE_PROBABILITY[0]``; NaN unless ``status == "ok"``.
        frame_scores: float32 ``[N]``; NaN for frames without a face.
        face_boxes: float32 ``[F, 6]``: frame_index, x1, y1, x2, y2 (sent-frame pixels),
            detection_score.
        face_scores: float32 ``[F]``, fake probability of each face.
        status: ``"ok"`` or ``"no_face"``.

    """

    fake_probability: float
    frame_scores: NDArray[np.float32]
    face_boxes: NDArray[np.float32]
    face_scores: NDArray[np.float32]
    status: str


def parse_outputs(get: Callable[[str], NDArray[Any] | None], num_frames: int) -> RawResult:
    """Build a :class:`RawResult` from an output getter (``InferResult.as_numpy``).

    Raises:
        ServerError: an output is missing or misshaped, ``STATUS`` is unknown, or the status is
            ``ok`` but the probability is not finite.

    """
    arrays: dict[str, NDArray[Any]] = {}  # dtypes vary by output (STATUS is bytes)
    for name in _OUTPUTS:
        value = get(name)
        if value is None:
            raise ServerError(f"malformed response: output {name} is missing")
        arrays[name] = np.asarray(value)

    status_arr = arrays[contract.STATUS].reshape(-1)
    if status_arr.size != 1:
        raise ServerError(f"malformed response: {contract.STATUS} has {status_arr.size} elements")
    raw_status = status_arr[0]
    status = (
        raw_status.decode("utf-8", "replace") if isinstance(raw_status, bytes) else str(raw_status)
    )
    if status not in _STATUSES:
        raise ServerError(f"malformed response: unknown {contract.STATUS} {status!r}")

    prob_arr = arrays[contract.FAKE_PROBABILITY].astype(np.float32).reshape(-1)
    if prob_arr.size != 1:
        raise ServerError(
            f"malformed response: {contract.FAKE_PROBABILITY} has {prob_arr.size} elements"
        )
    probability = float(prob_arr[0])
    if status == contract.STATUS_OK and not math.isfinite(probability):
        raise ServerError(f"malformed response: status ok but {contract.FAKE_PROBABILITY} is NaN")

    frame_scores = arrays[contract.FRAME_SCORES].astype(np.float32).reshape(-1)
    if frame_scores.size != num_frames:
        raise ServerError(
            f"malformed response: {contract.FRAME_SCORES} has {frame_scores.size} values "
            f"for {num_frames} frames"
        )
    boxes = arrays[contract.FACE_BOXES].astype(np.float32)
    if boxes.size % 6:
        raise ServerError(f"malformed response: {contract.FACE_BOXES} shape {boxes.shape}")
    boxes = boxes.reshape(-1, 6)
    face_scores = arrays[contract.FACE_SCORES].astype(np.float32).reshape(-1)
    if face_scores.size != boxes.shape[0]:
        raise ServerError(
            f"malformed response: {face_scores.size} {contract.FACE_SCORES} for "
            f"{boxes.shape[0]} {contract.FACE_BOXES}"
        )
    if boxes.shape[0]:
        idx = boxes[:, 0]
        if not np.all(np.isfinite(idx)) or idx.min() < 0 or idx.max() >= num_frames:
            raise ServerError("malformed response: a face box names a frame that was not sent")
    return RawResult(
        fake_probability=probability,
        frame_scores=frame_scores,
        face_boxes=boxes,
        face_scores=face_scores,
        status=status,
    )


def _normalise_url(url: str) -> tuple[str, bool]:
    """Strip a scheme tritonclient does not accept; return (url, ssl)."""
    for scheme, ssl in (("http://", False), ("https://", True), ("grpc://", False)):
        if url.startswith(scheme):
            return url[len(scheme) :], ssl
    return url, False


#: gRPC's own target forms (its name resolvers), passed on as they are.
_GRPC_TARGET_SCHEMES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:", "vsock:")


def _check_url(url: str, protocol: Protocol) -> None:
    """Reject a ``host:port`` whose port is no port, or that names no host.

    Over HTTP also ``host:port/base-path``; gRPC's own target forms (``unix:PATH``,
    ``dns:///host:port``) are left to gRPC. Otherwise gRPC would take port 99999 as 34463, and
    a port that is not a number would surface as "server unreachable".
    """
    if protocol == "grpc" and url.startswith(_GRPC_TARGET_SCHEMES):
        return
    name = "HTTP" if protocol == "http" else "gRPC"
    try:
        parts = urllib.parse.urlsplit(f"http://{url}")
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise ValueError(f"invalid {name} url {url!r}: {exc}") from None
    if not parts.hostname:
        raise ValueError(f"invalid {name} url {url!r}: no host")
    if protocol == "grpc" and parts.path:
        raise ValueError(f"invalid gRPC url {url!r}: a gRPC address has no path")


@dataclass(frozen=True)
class ModelFacts:
    """What the served classifier states in its config (read once per client)."""

    trained: bool  #: config ``trained``: false for a placeholder, or when unreadable
    threshold: float  #: the decision threshold on the fake probability
    limitations: str | None  #: config ``limitations``: its stated scope, if any


@dataclass(frozen=True)
class ClassifierInput:
    """What calling the served classifier directly needs, as the server states it.

    Attributes:
        version: the served version (model metadata; the newest one under the repository's
            ``latest`` policy).
        input_size: ``S`` of its UINT8 ``[B, S, S, 3]`` RGB input (model metadata).
        max_batch_size: most crops one request may carry (model config).
        face_margin: how ``face_detector`` frames a face for it (config parameter; see
            :func:`fakescope.pipeline.crops.crop_window`).
        face_shift: the crop centre's shift, ``(x, y)`` × the box's long side (config parameter).

    """

    version: str
    input_size: int
    max_batch_size: int
    face_margin: float
    face_shift: tuple[float, float]


class DetectorClient:
    """Calls the ensemble for one video at a time over one reused tritonclient connection."""

    def __init__(
        self,
        url: str | None = None,
        protocol: Protocol = "grpc",
        model_name: str = contract.ENSEMBLE_MODEL,
        timeout_s: float = CALL_TIMEOUT_S,
        *,
        retries: int = DEFAULT_RETRIES,
        shared_memory: bool | None = None,
    ):
        """Create the client (no network traffic yet).

        Args:
            url: ``host:port`` (an ``http://``/``https://``/``grpc://`` prefix is accepted);
                ``None`` means :data:`DEFAULT_URLS` for the protocol.
            protocol: ``"http"`` or ``"grpc"``.
            model_name: the ensemble to call.
            timeout_s: per-call limit (connect + answer), seconds; also bounds retries.
            retries: how often an UNAVAILABLE (overloaded) answer is retried, with backoff.
            shared_memory: send frames through system shared memory; ``None`` = when the URL
                is a loopback address.

        """
        if protocol not in DEFAULT_URLS:
            raise ValueError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.protocol: Protocol = protocol
        self.url, ssl = _normalise_url(url or DEFAULT_URLS[protocol])
        _check_url(self.url, protocol)
        self.model_name = model_name
        self.timeout_s = float(timeout_s)
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.retries = retries
        self._shared_memory = is_loopback(self.url) if shared_memory is None else shared_memory
        self._region_renewed = False  # registered again once after the server forgot it
        self._lock = threading.Lock()
        self._facts: ModelFacts | None = None
        self._classifier: ClassifierInput | None = None
        self._client: Any
        if protocol == "http":
            import tritonclient.http as httpclient

            self._mod: Any = httpclient
            self._client = httpclient.InferenceServerClient(
                self.url,
                connection_timeout=self.timeout_s,
                network_timeout=self.timeout_s,
                ssl=ssl,
            )
        else:
            import tritonclient.grpc as grpcclient

            self._mod = grpcclient
            keepalive = grpcclient.KeepAliveOptions()
            channel_args = [
                ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES),
                ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
                ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
                ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
                ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
            ]
            self._client = grpcclient.InferenceServerClient(
                self.url, ssl=ssl, channel_args=channel_args
            )
        self._regions = FrameRegions(self._register_region, self._unregister_region)

    # --- public API ---------------------------------------------------------------------------

    def frames_buffer(self, shape: tuple[int, int, int, int]) -> NDArray[np.uint8]:
        """Return an uninitialised uint8 array of ``shape`` to decode a video's frames into.

        With shared memory the array lies in one of the client's regions, and :meth:`infer`
        sends frames decoded into it without copying them: the allocator
        (:data:`fakescope.client.frames.FrameAllocator`) to pass to
        :func:`fakescope.client.analyze.decode_video`.
        Otherwise, or while every region holds other frames, it is this process's memory. The
        array stays valid as long as it is referenced, after :meth:`close` too. Makes no call
        to the server; safe from any thread.
        """
        if self._shared_memory:
            lent = self._regions.lend(shape)
            if lent is not None:
                return lent
        return np.empty(shape, np.uint8)

    def infer(
        self,
        frames: NDArray[np.uint8],
        *,
        duration_seconds: float | None = None,
        spent_seconds: float = 0.0,
    ) -> RawResult:
        """Send one video's frames (the ensemble's only input); return the validated outputs.

        Frame timestamps are not sent: the server has no use for them, and the caller keeps
        them to place the results in time (:meth:`fakescope.client.verdict.Verdict.from_result`).

        Args:
            frames: uint8 ``[N, H, W, 3]`` RGB, ``1 <= N <= MAX_FRAMES_PER_REQUEST``.
            duration_seconds: the video's duration; it sets the request's priority (a shorter
                video, whose verdict is due sooner, is served first:
                :func:`fakescope.contract.request_priority`), and how long it may wait in the
                server's queue (:func:`fakescope.contract.queue_wait_seconds`). ``None``: the
                server's defaults for both.
            spent_seconds: seconds of the video's budget already used before this call (its
                decode); the wait it may spend queueing is what is left.

        Raises:
            ValueError: the inputs break the contract (checked before sending).
            ServerUnreachableError: no answer from the server.
            ServerError: the server answered with an error or a malformed response.

        """
        frames = np.ascontiguousarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(
                f"frames must be uint8 [N, H, W, 3], got {frames.dtype} {list(frames.shape)}"
            )
        n = frames.shape[0]
        if not 1 <= n <= contract.MAX_FRAMES_PER_REQUEST:
            raise ValueError(f"1..{contract.MAX_FRAMES_PER_REQUEST} frames per request, got {n}")
        if duration_seconds is not None and not duration_seconds > 0:
            raise ValueError(f"duration_seconds must be > 0, got {duration_seconds}")
        if not spent_seconds >= 0:
            raise ValueError(f"spent_seconds must be >= 0, got {spent_seconds}")
        priority = contract.request_priority(duration_seconds)
        deadline = _Deadline(duration_seconds, time.monotonic() - spent_seconds)

        logger.debug(
            "infer %s: %d frames %s via %s, priority %d",
            self.model_name,
            n,
            frames.shape[1:3],
            self.protocol,
            priority,
        )
        result = None  # None: not sent yet (shared memory off, or turned off by this call)
        if self._shared_memory:
            with self._lock:
                result = self._infer_through_shared_memory(frames, priority, deadline)
        if result is None:
            result = self._retrying(
                lambda: self._infer_once(frames, priority, deadline, use_shm=False),
                deadline.retry_until(),
            )
        return parse_outputs(result.as_numpy, n)

    def _infer_through_shared_memory(
        self, frames: NDArray[np.uint8], priority: int, deadline: _Deadline
    ) -> Any:
        """Infer with the frames in the shared-memory region; None once the client dropped it.

        A server that does not know the region has restarted since it was registered (a
        supervisor or Compose brought it back) or is one of several behind a balancer: the
        region is registered again, once in the client's life; a server that still does not
        know it is taken for the balancer, and the frames go in the request from then on.
        """
        while True:
            try:
                return self._retrying(
                    lambda: self._infer_once(frames, priority, deadline, use_shm=True),
                    deadline.retry_until(),
                )
            except ServerError as exc:
                if _UNKNOWN_REGION not in exc.server_message:
                    raise
                if self._region_renewed:
                    self._drop_shared_memory(exc)
                    return None
                logger.info(
                    "%s does not know this client's shared memory (restarted?): registering "
                    "it again",
                    self.url,
                )
                self._region_renewed = True
                self._release_region()

    def _drop_shared_memory(self, exc: ServerError) -> None:
        """Stop using shared memory: the server that answered has not registered the region."""
        logger.warning(
            "%s does not know this client's shared memory (%s): a balancer in front of several "
            "servers? Sending frames in the request from now on",
            self.url,
            exc.server_message.strip(),
        )
        self._shared_memory = False
        self._release_region()

    def _release_region(self) -> None:
        """Unregister and remove the regions (the next shared-memory call makes one).

        Frames decoded into a region keep its memory; the next call copies them into a new one.
        """
        self._regions.close()

    def _infer_once(
        self, frames: NDArray[np.uint8], priority: int, deadline: _Deadline, *, use_shm: bool
    ) -> Any:
        with contextlib.ExitStack() as in_region:
            placed = None
            if use_shm and self._shared_memory:
                try:  # the region is the server's to read until the call returns
                    placed = in_region.enter_context(self._regions.sending(frames))
                except Exception as exc:  # any failure to set it up: fall back, and say so
                    self._raise_if_unreachable(exc)
                    logger.warning(
                        "shared memory with %s unavailable (%s); sending frames in the request",
                        self.url,
                        " ".join(str(exc).split()),
                    )
                    self._shared_memory = False
                    self._release_region()
            if placed is not None:
                frames_input = self._mod.InferInput(contract.FRAMES, list(frames.shape), "UINT8")
                frames_input.set_shared_memory(*placed)
            else:  # no shared memory, or every region holds other frames for now
                frames_input = self._input(contract.FRAMES, frames, "UINT8")
            return self._send(frames_input, priority, deadline)

    def _raise_if_unreachable(self, exc: Exception) -> None:
        """Raise :class:`ServerUnreachableError` when registering failed for want of a server.

        A server that is down (restarting under a supervisor or Compose) can take no request
        either way, and will map the region once it is back: shared memory stays on. Only a
        server that answers and refuses the region (another host's, one that cannot open it)
        turns it off for good. In the soak run a server restart left most load generators
        without shared memory for the rest of the hour (benchmarks/README.md, Soak).
        """
        if isinstance(exc, (InferenceServerException, OSError)):
            error = self._translate(exc, "registering the frames' shared memory")
            if isinstance(error, ServerUnreachableError):
                raise error from exc

    def _send(self, frames_input: Any, priority: int, deadline: _Deadline) -> Any:
        """Call the ensemble once with ``frames_input``; return tritonclient's result."""
        if self.protocol == "http":
            outputs = [self._mod.InferRequestedOutput(o, binary_data=True) for o in _OUTPUTS]
        else:
            outputs = [self._mod.InferRequestedOutput(o) for o in _OUTPUTS]
        call = functools.partial(
            self._client.infer,
            self.model_name,
            [frames_input],
            outputs=outputs,
            priority=priority,
            # how long it may wait in the queue; None (Triton: the queue's own timeout) when
            # the video's duration is unknown
            timeout=deadline.queue_wait_us(),
            **self._call_limits(),
        )
        return self._call(call, f"inference on {self.model_name}")

    def _retrying(self, attempt: Callable[[], Any], until: float | None = None) -> Any:
        """Run ``attempt``; retry overload and failed-replica answers, capped backoff + jitter.

        No retry starts after ``timeout_s`` from now, nor after ``until`` (``time.monotonic``).
        """
        deadline = time.monotonic() + self.timeout_s
        if until is not None:
            deadline = min(deadline, until)
        for retry in range(self.retries + 1):
            try:
                return attempt()
            except ServerError as exc:
                delay = random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**retry))
                if (
                    not _retryable(exc)
                    or retry == self.retries
                    or time.monotonic() + delay > deadline
                ):
                    raise
                logger.warning(
                    "server busy or a balanced replica failed (%s); retry %d/%d in %.2f s",
                    exc.status,
                    retry + 1,
                    self.retries,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    def model_facts(self) -> ModelFacts:
        """Return what the served classifier states about itself (one config request per client).

        A missing or unparsable ``trained`` parameter, or a server that answers the config
        request with an error (e.g. no such model), counts as untrained (logged): a verdict is
        never presented as a finding by default. A classifier that states no threshold (exported
        before version 3) is labelled at :data:`fakescope.contract.UNSTATED_THRESHOLD`, with a
        warning in the log.

        Raises:
            ServerUnreachableError: no answer from the server.
            ServerError: the config states a threshold that is not a probability.

        """
        if self._facts is None:
            self._facts = self._fetch_facts()
        return self._facts

    def classifier_input(self) -> ClassifierInput:
        """Return the served classifier's input size, batch limit and framing (read once).

        Read from Triton (model metadata and config), never assumed, so that a direct call fits
        whichever version is served. Cached for the client's life, like :meth:`model_facts`.

        Raises:
            ServerUnreachableError: no answer from the server.
            ServerError: the server answered with an error, or states no usable input shape,
                ``max_batch_size``, ``face_margin`` or ``face_shift``.

        """
        if self._classifier is None:
            self._classifier = self._fetch_classifier_input()
        return self._classifier

    def score_faces(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Score face crops with the served classifier; return one fake probability per crop.

        The crops go in requests of at most :attr:`ClassifierInput.max_batch_size` (a larger
        request would be refused), one after another.

        Args:
            crops: uint8 ``[B, S, S, 3]`` RGB, ``B >= 1``, ``S`` the served input size.

        Raises:
            ValueError: the crops are not uint8 ``[B, S, S, 3]`` at the served size.
            ServerUnreachableError: no answer from the server.
            ServerError: the server answered with an error or a malformed response.

        """
        spec = self.classifier_input()
        crops = np.ascontiguousarray(crops)
        expected = (spec.input_size, spec.input_size, 3)
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != expected:
            raise ValueError(
                f"crops must be uint8 [B, {spec.input_size}, {spec.input_size}, 3] (the served "
                f"classifier's input), got {crops.dtype} {list(crops.shape)}"
            )
        if crops.shape[0] == 0:
            raise ValueError("no crops to score")
        scores: list[NDArray[np.float32]] = []
        for start in range(0, crops.shape[0], spec.max_batch_size):
            chunk = crops[start : start + spec.max_batch_size]
            scores.append(self._retrying(functools.partial(self._score, chunk)))
        return np.concatenate(scores).astype(np.float32)

    def is_live(self) -> bool:
        """``is_server_live`` that returns False instead of raising."""
        try:
            if self.protocol == "grpc":
                live = self._client.is_server_live(
                    client_timeout=min(LIVENESS_PROBE_TIMEOUT_S, self.timeout_s)
                )
            else:
                live = self._client.is_server_live()
        except (InferenceServerException, OSError) as exc:
            logger.debug("liveness probe of %s failed: %s", self.url, exc)
            return False
        return bool(live)

    def close(self) -> None:
        """Release the shared-memory regions and close the underlying connection.

        Frames decoded into :meth:`frames_buffer` stay valid; later buffers are this process's
        memory (a closed client makes no region that nothing would remove).
        """
        self._shared_memory = False
        self._release_region()
        self._client.close()

    def __enter__(self) -> DetectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------------------

    def _call_limits(self) -> dict[str, float]:
        """Return the keyword that limits one call to ``timeout_s``, as tritonclient takes it.

        The HTTP client's limits are set once, on the client; gRPC's per call. Without one a
        gRPC call on a connection whose server stopped answering waits for ever.
        """
        return {} if self.protocol == "http" else {"client_timeout": self.timeout_s}

    def _register_region(self, name: str, key: str, byte_size: int) -> None:
        """Register a frames region with the server, within ``timeout_s``."""
        self._client.register_system_shared_memory(name, key, byte_size, **self._call_limits())

    def _unregister_region(self, name: str) -> None:
        """Unregister a frames region, within ``timeout_s``.

        Triton (2.50 on, triton-inference-server/server#7567) refuses to unregister a region
        that a request still holds, and releases it only after the response has left: a
        region unregistered as soon as its call returned can be refused for a moment. Refused
        like that, the server would keep its registration, and its mapping of the removed
        file, until it restarts; so the refusal is tried again for up to
        :data:`REGION_RELEASE_WAIT_S`, and a region still held then is named in a warning.

        Raises:
            InferenceServerException: the server refused for another reason, or still held
                the region after the wait.

        """
        deadline = time.monotonic() + REGION_RELEASE_WAIT_S
        while True:
            try:
                self._client.unregister_system_shared_memory(name, **self._call_limits())
                return
            except InferenceServerException as exc:
                if not _REGION_IN_USE.search(str(exc)):
                    raise
                if time.monotonic() >= deadline:
                    logger.warning(
                        "%s still holds frames region %s after %.1f s; it stays registered "
                        "there until the server restarts",
                        self.url,
                        name,
                        REGION_RELEASE_WAIT_S,
                    )
                    raise
            time.sleep(0.01)

    def _input(self, name: str, array: NDArray[np.uint8], datatype: str) -> Any:
        tensor = self._mod.InferInput(name, list(array.shape), datatype)
        if self.protocol == "http":
            tensor.set_data_from_numpy(array, binary_data=True)
        else:
            tensor.set_data_from_numpy(array)
        return tensor

    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        try:
            return fn()
        except (InferenceServerException, OSError) as exc:
            raise self._translate(exc, what) from exc

    def _translate(self, exc: InferenceServerException | OSError, what: str) -> DetectorClientError:
        where = f"{self.url} ({self.protocol})"
        if isinstance(exc, InferenceServerException):
            status = exc.status()
            message = exc.message() or str(exc)
        else:
            status = None
            message = exc.strerror or str(exc) or type(exc).__name__
        if status == "502" or _PROXY_5XX.search(message) or _UNKNOWN_REGION in message:
            # Answers no absent server gives: from a balancer whose replica failed, or from a
            # replica that never saw this client's shared memory. No liveness probe: behind a
            # balancer it may reach the failed replica and call the service unreachable.
            return ServerError(f"{what} failed: {message}", status=status, server_message=message)
        if status is not None and len(status) == 3 and status.startswith("4"):
            # The server answered over HTTP that the request is wrong. No liveness probe, which
            # a gateway that serves no health check fails, calling that answer "unreachable"
            # (5xx still asks: a server that is stopping may answer so, and be back).
            return ServerError(f"{what} failed: {message}", status=status, server_message=message)
        timed_out = isinstance(exc, TimeoutError) or status == "StatusCode.DEADLINE_EXCEEDED"
        if timed_out:
            live = "the server is live but slow" if self.is_live() else "no answer"
            return ServerUnreachableError(
                f"{what}: timed out after {self.timeout_s:g} s at {where} ({live})"
            )
        if not self.is_live():
            return ServerUnreachableError(
                f"cannot reach the server at {where}: {' '.join(message.split())}"
            )
        return ServerError(f"{what} failed: {message}", status=status, server_message=message)

    def _score(self, chunk: NDArray[np.uint8]) -> NDArray[np.float32]:
        """One classifier request; the probabilities ``[B]`` it returns."""
        inputs = [self._input(contract.CLASSIFIER_INPUT, chunk, "UINT8")]
        what = f"inference on {contract.CLASSIFIER_MODEL}"
        if self.protocol == "http":
            outputs = [self._mod.InferRequestedOutput(contract.CLASSIFIER_OUTPUT, binary_data=True)]
        else:
            outputs = [self._mod.InferRequestedOutput(contract.CLASSIFIER_OUTPUT)]
        call = functools.partial(
            self._client.infer,
            contract.CLASSIFIER_MODEL,
            inputs,
            outputs=outputs,
            **self._call_limits(),
        )
        result = self._call(call, what)
        value = result.as_numpy(contract.CLASSIFIER_OUTPUT)
        if value is None or np.asarray(value).size != chunk.shape[0]:
            raise ServerError(
                f"malformed response: {contract.CLASSIFIER_OUTPUT} does not hold one "
                f"probability per crop ({chunk.shape[0]})"
            )
        return np.asarray(value, dtype=np.float32).reshape(-1)

    def _fetch_classifier_input(self) -> ClassifierInput:
        name = contract.CLASSIFIER_MODEL
        config = self._fetch_classifier_config()
        if self.protocol == "grpc":
            metadata = self._call(
                lambda: self._client.get_model_metadata(
                    name, as_json=True, client_timeout=self.timeout_s
                ),
                f"model metadata of {name}",
            )
        else:
            metadata = self._call(
                lambda: self._client.get_model_metadata(name), f"model metadata of {name}"
            )
        try:
            version = max((str(v) for v in metadata.get("versions") or ["0"]), key=int)
            (tensor,) = [t for t in metadata["inputs"] if t["name"] == contract.CLASSIFIER_INPUT]
            shape = [int(d) for d in tensor["shape"]]
            max_batch = int(config.get("max_batch_size", config.get("maxBatchSize", 0)))
            params = config.get("parameters") or {}

            def param(key: str) -> str:
                entry = params[key]
                return str(entry.get("string_value", entry.get("stringValue")))

            margin = float(param(contract.FACE_MARGIN_PARAMETER))
            shift = [float(v) for v in json.loads(param(contract.FACE_SHIFT_PARAMETER))]
        except (KeyError, ValueError, TypeError) as exc:
            raise ServerError(
                f"{name} does not state a usable input, max_batch_size or framing: "
                f"{type(exc).__name__} {exc}"
            ) from None
        # the served shape is [-1, S, S, 3] (batch dimension first): square RGB crops
        if len(shape) != 4 or shape[1] != shape[2] or shape[1] < 1 or shape[3] != 3:
            raise ServerError(f"{name} input {contract.CLASSIFIER_INPUT} has shape {shape}")
        if max_batch < 1 or len(shift) != 2:
            raise ServerError(f"{name} states max_batch_size {max_batch}, face_shift {shift}")
        return ClassifierInput(
            version=version,
            input_size=shape[1],
            max_batch_size=max_batch,
            face_margin=margin,
            face_shift=(shift[0], shift[1]),
        )

    def _fetch_facts(self) -> ModelFacts:
        try:
            config = self._fetch_classifier_config()
        except ServerError as exc:
            logger.warning(
                "cannot read the %s config (%s); treating the classifier as untrained",
                contract.CLASSIFIER_MODEL,
                exc,
            )
            config = {}
        param = (config.get("parameters") or {}).get(contract.LIMITATIONS_PARAMETER) or {}
        text = param.get("string_value", param.get("stringValue"))
        threshold = threshold_from_config(config)
        if threshold is None:
            logger.warning(
                "the served %s states no threshold; labelling at %s",
                contract.CLASSIFIER_MODEL,
                contract.UNSTATED_THRESHOLD,
            )
            threshold = contract.UNSTATED_THRESHOLD
        return ModelFacts(
            trained=trained_from_config(config) if config else False,
            threshold=threshold,
            limitations=" ".join(str(text).split()) if text else None,
        )

    def _fetch_classifier_config(self) -> dict[str, Any]:
        if self.protocol == "grpc":
            reply = self._call(
                lambda: self._client.get_model_config(
                    contract.CLASSIFIER_MODEL, as_json=True, client_timeout=self.timeout_s
                ),
                f"model config of {contract.CLASSIFIER_MODEL}",
            )
            config = reply.get("config", {})
        else:
            config = self._call(
                lambda: self._client.get_model_config(contract.CLASSIFIER_MODEL),
                f"model config of {contract.CLASSIFIER_MODEL}",
            )
        return dict(config)


@dataclass(frozen=True)
class _Deadline:
    """One video's budget as a client call sees it: its duration and when its clock started."""

    duration_seconds: float | None
    started: float  #: ``time.monotonic()`` when the video's budget began (before its decode)

    def queue_wait_us(self) -> int | None:
        """Microseconds the video may wait in the server's queue now; ``None``: unknown."""
        spent = time.monotonic() - self.started
        wait = contract.queue_wait_seconds(self.duration_seconds, spent)
        return None if wait is None else max(1, round(wait * 1e6))

    def retry_until(self) -> float | None:
        """``time.monotonic()`` after which a retry could only wait past the video's budget."""
        if self.duration_seconds is None:
            return None
        budget = contract.budget_seconds(self.duration_seconds)
        return self.started + budget - contract.ANALYSIS_RESERVE_S


def _retryable(exc: ServerError) -> bool:
    """Whether re-sending the same request is the answer to ``exc`` (see :data:`_RETRIED`)."""
    return exc.status in _RETRIED or bool(_PROXY_5XX.search(exc.server_message))


def trained_from_config(config: dict[str, Any]) -> bool:
    """Read the ``trained`` parameter from a model-config dict (KServe/Triton JSON form)."""
    param = (config.get("parameters") or {}).get(contract.TRAINED_PARAMETER) or {}
    value = param.get("string_value", param.get("stringValue"))
    text = str(value).strip().lower() if value is not None else ""
    if text in ("true", "1", "yes"):
        return True
    if text not in ("false", "0", "no"):
        logger.warning(
            "%s config has no usable %r parameter (%r); treating the classifier as untrained",
            contract.CLASSIFIER_MODEL,
            contract.TRAINED_PARAMETER,
            value,
        )
    return False


def threshold_from_config(config: dict[str, Any]) -> float | None:
    """Read the ``threshold`` parameter from a model-config dict; ``None`` when absent.

    Raises:
        ServerError: when the parameter is present but not a number in [0, 1] (a broken
            deployment must not label videos at a threshold nobody chose).

    """
    param = (config.get("parameters") or {}).get(contract.THRESHOLD_PARAMETER) or {}
    value = param.get("string_value", param.get("stringValue"))
    if value is None:
        return None
    try:
        threshold = float(value)
    except ValueError:
        threshold = math.nan
    if not 0.0 <= threshold <= 1.0:
        raise ServerError(
            f"{contract.CLASSIFIER_MODEL} config states threshold {value!r}, not a number in [0, 1]"
        )
    return threshold
