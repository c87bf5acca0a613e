"""Fuzzing the two doors untrusted input comes through: the client's video reading, the server's
tensor validation.

(a) :func:`fakescope.client.video.sample_frames` on random bytes, random truncations and random
    byte flips of real small videos: the only acceptable outcomes are a valid
    :class:`~fakescope.client.frames.SampledFrames` or a one-line
    :class:`~fakescope.client.frames.VideoReadError`. Decoding runs in a separate worker process
    so that a hang (per-example timeout) or a crash inside FFmpeg/OpenCV fails the test instead
    of freezing or killing pytest.
(b) The real ``deepfake_detector`` ensemble with random small FRAMES (dtypes, ranks, sizes,
    values), over HTTP and gRPC: the server answers every request that
    follows the contract and refuses every other one with ``INVALID_ARGUMENT``; it stays ready.

Bounded in the default run (profile ``fuzz-ci``, a few seconds); ``HYPOTHESIS_PROFILE=fuzz``
(``make fuzz``) runs many more examples.
"""

from __future__ import annotations

import json
import math
import os
import selectors
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from fakescope import contract
from fakescope.contract import MIN_FRAME_SIDE
from fakescope.paths import PROJECT_ROOT
from fakescope.serving.embedded import EmbeddedTriton
from tests.support.media import make_face_video, write_video

settings.register_profile(
    "fuzz-ci",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    max_examples=20_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: ``HYPOTHESIS_PROFILE=fuzz`` for the long run; applied per test, never globally, so the
#: other hypothesis tests of the suite keep their own settings.
PROFILE = settings.get_profile(
    "fuzz" if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else "fuzz-ci"
)

#: Seconds one decode of a fuzzed file may take (a healthy one takes milliseconds).
DECODE_TIMEOUT_S = 30.0
SAMPLED_FRAMES = 5
MAX_SIDE = 64


# --- (a) the client's video reading, in a worker process ---------------------------------------

_WORKER = textwrap.dedent(
    """
    import json, math, sys
    import numpy as np
    from fakescope.client.frames import VideoReadError
    from fakescope.client.video import sample_frames

    def problems(s, k):
        found = []
        n = s.frames.shape[0] if s.frames.ndim == 4 else -1
        if s.frames.dtype != np.uint8 or s.frames.ndim != 4 or s.frames.shape[3] != 3:
            found.append(f"frames {s.frames.dtype} {s.frames.shape}")
        if not 1 <= n <= k:
            found.append(f"{n} frames for {k} asked")
        ts = s.timestamps
        if ts.dtype != np.float32 or ts.shape != (n,):
            found.append(f"timestamps {ts.dtype} {ts.shape}")
        elif not (np.all(np.isfinite(ts)) and np.all(ts >= 0) and np.all(np.diff(ts) > 0)):
            found.append(f"timestamps {ts.tolist()}")
        if not (math.isfinite(s.duration_seconds) and s.duration_seconds > 0):
            found.append(f"duration {s.duration_seconds}")
        idx = s.frame_indices.tolist()
        if idx != sorted(set(idx)) or (idx and (idx[0] < 0 or idx[-1] >= s.total_frames)):
            found.append(f"indices {idx} of {s.total_frames}")
        if min(s.source_size) < 1 or min(s.frame_size) < 1 or max(s.frame_size) > MAX_SIDE:
            found.append(f"sizes {s.source_size} -> {s.frame_size}")
        return found

    MAX_SIDE = int(sys.argv[2])
    k = int(sys.argv[1])
    for line in sys.stdin:
        path = line.rstrip("\\n")
        try:
            s = sample_frames(path, k, MAX_SIDE)
        except VideoReadError as exc:
            answer = {"outcome": "read_error", "reason": exc.reason, "message": str(exc)}
        except Exception as exc:  # what the test exists to catch
            answer = {"outcome": "exception", "error": f"{type(exc).__name__}: {exc}"}
        else:
            answer = {"outcome": "sampled", "problems": problems(s, k)}
        print(json.dumps(answer), flush=True)
    """
)


class DecodeWorker:
    """A long-lived ``python -c`` process running ``sample_frames`` on one path per line."""

    def __init__(self, log: Path):
        self._log = log
        self._proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        env = {**os.environ, "OPENCV_FFMPEG_LOGLEVEL": "-8"}
        with self._log.open("a") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER, str(SAMPLED_FRAMES), str(MAX_SIDE)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=env,
                cwd=PROJECT_ROOT,
            )
        return self._proc

    def sample(self, path: Path) -> dict[str, Any]:
        """Decode ``path`` in the worker; fail the test on a hang or a crash."""
        proc = self._proc if self._proc is not None and self._proc.poll() is None else None
        proc = proc or self._start()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(f"{path}\n")
        proc.stdin.flush()
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=DECODE_TIMEOUT_S)
        if not ready:
            self.close()
            pytest.fail(f"sample_frames hung for more than {DECODE_TIMEOUT_S:g} s on {path}")
        line = proc.stdout.readline()
        if not line:
            code = proc.wait()
            self._proc = None
            tail = self._log.read_text()[-2000:]
            pytest.fail(f"sample_frames crashed the process (exit {code}) on {path}:\n{tail}")
        return json.loads(line)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DecodeWorker]:
    decode = DecodeWorker(tmp_path_factory.mktemp("fuzz-worker") / "stderr.log")
    yield decode
    decode.close()


@dataclass(frozen=True)
class Seeds:
    """Real small videos whose bytes get mutated, and where mutants are written."""

    videos: dict[str, bytes]
    scratch: Path


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    root = tmp_path_factory.mktemp("fuzz-seeds")
    made = {
        "h264.mp4": make_face_video(
            root / "h264.mp4", seconds=0.8, fps=10, size=(96, 64), codec="avc1"
        ),
        "h264_faststart.mp4": make_face_video(
            root / "h264_faststart.mp4",
            seconds=0.8,
            fps=10,
            size=(96, 64),
            codec="avc1",
            faststart=True,
        ),
        "mpeg4.avi": make_face_video(root / "mpeg4.avi", seconds=0.8, fps=10, size=(96, 64)),
        "vp9.mkv": write_video(
            root / "vp9.mkv",
            [np.full((64, 96, 3), 30 * i, np.uint8) for i in range(6)],
            fps=10,
            codec="vp9",
        ),
    }
    return Seeds({name: path.read_bytes() for name, path in made.items()}, root)


def check_decode_outcome(answer: dict[str, Any]) -> None:
    if answer["outcome"] == "sampled":
        assert answer["problems"] == [], answer
    else:
        assert answer["outcome"] == "read_error", answer  # never any other exception
        assert "\n" not in answer["message"] and answer["message"].strip(), answer


def decode_bytes(worker: DecodeWorker, seeds: Seeds, name: str, payload: bytes) -> None:
    path = seeds.scratch / f"mutant{Path(name).suffix}"
    path.write_bytes(payload)
    check_decode_outcome(worker.sample(path))


SEED_NAMES = st.sampled_from(["h264.mp4", "h264_faststart.mp4", "mpeg4.avi", "vp9.mkv"])


@PROFILE
@given(payload=st.binary(min_size=1, max_size=8192), name=SEED_NAMES)
def test_sample_frames_raises_only_video_read_error_when_bytes_are_random(
    worker: DecodeWorker, seeds: Seeds, payload: bytes, name: str
) -> None:
    decode_bytes(worker, seeds, name, payload)  # the seed's name only sets the file suffix


@PROFILE
@given(name=SEED_NAMES, fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_sample_frames_gives_frames_or_read_error_when_video_is_truncated(
    worker: DecodeWorker, seeds: Seeds, name: str, fraction: float
) -> None:
    data = seeds.videos[name]
    decode_bytes(worker, seeds, name, data[: max(1, int(len(data) * fraction))])


@PROFILE
@given(name=SEED_NAMES, data=st.data())
def test_sample_frames_gives_frames_or_read_error_when_bytes_are_flipped(
    worker: DecodeWorker, seeds: Seeds, name: str, data: st.DataObject
) -> None:
    original = seeds.videos[name]
    # a third of the flips land in the first 1 KiB (headers, the index when it is in front)
    position = st.one_of(
        st.integers(0, min(1023, len(original) - 1)), st.integers(0, len(original) - 1)
    )
    flips = data.draw(st.lists(st.tuples(position, st.integers(0, 255)), min_size=1, max_size=16))
    mutant = bytearray(original)
    for where, value in flips:
        mutant[where] = value
    assume(bytes(mutant) != original)
    decode_bytes(worker, seeds, name, bytes(mutant))


_BOX_TYPES = [
    b"ftyp", b"moov", b"mvhd", b"trak", b"mdia", b"hdlr", b"minf", b"stbl", b"stsz", b"stz2",
    b"mdat", b"free", b"mvex", b"moof", b"udta", b"\x00\x00\x00\x00",
]  # fmt: skip
_CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"udta"}


@st.composite
def iso_boxes(draw: st.DrawFn, depth: int = 0) -> bytes:
    """One ISO-BMFF box: nested like a real ``moov`` or not, its size field right or wrong."""
    kind = draw(st.sampled_from(_BOX_TYPES))
    if kind in _CONTAINER_BOXES and depth < 5:
        payload = b"".join(draw(st.lists(iso_boxes(depth + 1), max_size=4)))
    elif kind == b"hdlr":
        handler = draw(st.sampled_from([b"vide", b"soun", b"text", b"pict", b"\xff\x00ab"]))
        payload = draw(st.sampled_from([b"\x00" * 8 + handler + b"\x00" * 13, b"\x00" * 5]))
    elif kind in (b"stsz", b"stz2"):
        payload = b"\x00" * 8 + draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
    else:
        payload = draw(st.binary(max_size=32))
    size = len(payload) + 8
    size_field = draw(st.one_of(st.just(size), st.just(size), st.integers(0, 2**32 - 1)))
    if draw(st.integers(0, 9)) == 0:  # a 64-bit size
        large = draw(st.one_of(st.just(size + 8), st.integers(0, 2**64 - 1)))
        return (1).to_bytes(4, "big") + kind + large.to_bytes(8, "big") + payload
    return size_field.to_bytes(4, "big") + kind + payload


def _box(kind: bytes, payload: bytes) -> bytes:
    return (len(payload) + 8).to_bytes(4, "big") + kind + payload


@st.composite
def plausible_moov(draw: st.DrawFn) -> bytes:
    """A well-formed ``moov`` (tracks with handler and sample count), sometimes with junk."""
    tracks = []
    for _ in range(draw(st.integers(0, 3))):
        handler = draw(st.sampled_from([b"vide", b"soun", b"soun", b"text", b"pict"]))
        samples = draw(st.sampled_from([0, 1, 10, 2**32 - 1]))
        stbl = _box(b"stbl", _box(b"stsz", b"\x00" * 8 + samples.to_bytes(4, "big")))
        mdia = _box(b"hdlr", b"\x00" * 8 + handler + b"\x00" * 13) + _box(b"minf", stbl)
        tracks.append(_box(b"trak", _box(b"mdia", mdia)))
    extra = draw(st.lists(iso_boxes(depth=1), max_size=2))
    return _box(b"moov", b"".join(tracks + extra))


@PROFILE
@given(boxes=st.lists(st.one_of(iso_boxes(), plausible_moov()), min_size=1, max_size=5))
def test_sample_frames_gives_frames_or_read_error_when_mp4_boxes_are_malformed(
    worker: DecodeWorker, seeds: Seeds, boxes: list[bytes]
) -> None:
    ftyp = (20).to_bytes(4, "big") + b"ftypisom" + b"\x00\x00\x02\x00" + b"isom"
    decode_bytes(worker, seeds, "boxes.mp4", ftyp + b"".join(boxes))


# --- (b) the server's tensor validation --------------------------------------------------------

FRAME_DTYPES = [np.uint8, np.int8, np.uint16, np.int32, np.float32, np.float64, np.bool_]


@st.composite
def frames_arrays(draw: st.DrawFn) -> np.ndarray:
    """Mostly contract-like uint8 [N, H, W, 3] (random content); sometimes anything small."""
    if draw(st.booleans()):
        n = draw(st.integers(0, 3))
        h = draw(st.integers(MIN_FRAME_SIDE - 4, 48))
        w = draw(st.integers(MIN_FRAME_SIDE - 4, 48))
        c = draw(st.sampled_from([3, 3, 3, 1, 4]))
        return draw(hnp.arrays(np.uint8, (n, h, w, c)))
    dtype = draw(st.sampled_from(FRAME_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=16))
    return draw(hnp.arrays(dtype, shape))


def follows_contract(frames: np.ndarray) -> bool:
    """What the README's tensor contract accepts (UINT8 [N,H,W,3], 1 <= N <= 64, ...)."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        return False
    n, h, w = frames.shape[:3]
    return 1 <= n <= contract.MAX_FRAMES_PER_REQUEST and min(h, w) >= MIN_FRAME_SIDE


@dataclass
class Clients:
    http: httpclient.InferenceServerClient
    grpc: grpcclient.InferenceServerClient


@pytest.fixture(scope="module")
def clients(triton: EmbeddedTriton) -> Iterator[Clients]:
    made = Clients(
        httpclient.InferenceServerClient(triton.address.http_url),
        grpcclient.InferenceServerClient(triton.address.grpc_url),
    )
    yield made
    made.http.close()
    made.grpc.close()


def send(clients: Clients, protocol: str, frames: np.ndarray) -> Any:
    module: Any = grpcclient if protocol == "grpc" else httpclient
    client = clients.grpc if protocol == "grpc" else clients.http
    tensor = module.InferInput(
        contract.FRAMES, list(frames.shape), np_to_triton_dtype(frames.dtype)
    )
    tensor.set_data_from_numpy(frames)
    return client.infer(contract.ENSEMBLE_MODEL, [tensor])


def check_outputs(result: Any, n: int) -> None:
    status = [s.decode() if isinstance(s, bytes) else s for s in result.as_numpy(contract.STATUS)]
    assert status in ([contract.STATUS_OK], [contract.STATUS_NO_FACE]), status
    boxes = result.as_numpy(contract.FACE_BOXES)
    scores = result.as_numpy(contract.FACE_SCORES)
    probability = float(result.as_numpy(contract.FAKE_PROBABILITY)[0])
    assert result.as_numpy(contract.FRAME_SCORES).shape == (n,)
    assert boxes.ndim == 2 and boxes.shape[1] == 6 and scores.shape == (boxes.shape[0],)
    if boxes.shape[0]:
        assert status == [contract.STATUS_OK] and 0.0 <= probability <= 1.0
        assert set(boxes[:, 0].astype(int).tolist()) <= set(range(n))
    else:
        assert status == [contract.STATUS_NO_FACE] and math.isnan(probability)


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@PROFILE
@given(protocol=st.sampled_from(["http", "grpc"]), frames=frames_arrays())
def test_ensemble_answers_valid_and_refuses_invalid_requests_when_tensors_are_fuzzed(
    triton: EmbeddedTriton, clients: Clients, protocol: str, frames: np.ndarray
) -> None:
    valid = follows_contract(frames)
    try:
        result = send(clients, protocol, frames)
    except InferenceServerException as exc:
        assert not valid, f"a contract-valid request was refused: {exc}"
        status = str(exc.status())
        assert status in ("400", "StatusCode.INVALID_ARGUMENT"), (status, exc.message())
        assert (exc.message() or "").strip()
    else:
        assert valid, "a request breaking the contract was answered"
        check_outputs(result, frames.shape[0])
    assert clients.http.is_model_ready(contract.ENSEMBLE_MODEL)
