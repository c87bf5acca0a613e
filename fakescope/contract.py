"""The serving contract: model names, tensor names and status values, defined once.

Everything that talks to the Triton model repository (the python-backend models, the client,
the repository builder, the benchmarks, the tests) imports these names from here.
"""

from __future__ import annotations

from typing import Final

# --- Triton models (role-named) -------------------------------------------------------------
ENSEMBLE_MODEL: Final = "deepfake_detector"
FACE_DETECTOR_MODEL: Final = "face_detector"
FACE_SCORER_MODEL: Final = "face_scorer"
VIDEO_AGGREGATOR_MODEL: Final = "video_aggregator"
CLASSIFIER_MODEL: Final = "face_classifier"
PNET_MODEL: Final = "mtcnn_pnet"
RNET_MODEL: Final = "mtcnn_rnet"
ONET_MODEL: Final = "mtcnn_onet"
#: The three MTCNN nets, in cascade order.
MTCNN_MODELS: Final = (PNET_MODEL, RNET_MODEL, ONET_MODEL)

# --- Ensemble input (the only one) ------------------------------------------------------------
#: UINT8 [N, H, W, 3], RGB, the sampled frames of one video at their decoded resolution. Frame
#: timestamps stay with the client (it stamps the faces of its verdict); they are not sent.
FRAMES: Final = "FRAMES"

# --- Ensemble outputs ------------------------------------------------------------------------
#: FP32 [1], probability that the faces in the video are synthetic; NaN when STATUS != "ok".
FAKE_PROBABILITY: Final = "FAKE_PROBABILITY"
#: FP32 [N], per-frame score (max over the faces of that frame); NaN for frames without a face.
FRAME_SCORES: Final = "FRAME_SCORES"
#: FP32 [F, 6], one row per face: frame_index, x1, y1, x2, y2 (pixels of the sent frame),
#: detection_score.
FACE_BOXES: Final = "FACE_BOXES"
#: FP32 [F], fake probability of each face, in the order of FACE_BOXES.
FACE_SCORES: Final = "FACE_SCORES"
#: BYTES [1], one of STATUS_OK, STATUS_NO_FACE.
STATUS: Final = "STATUS"

# --- Internal tensors between ensemble steps ------------------------------------------------
#: INT32 [1], N, the number of frames in the request: face_detector (which has validated FRAMES)
#: tells video_aggregator, which returns one FRAME_SCORES value per frame, faces or not.
FRAME_COUNT: Final = "FRAME_COUNT"
#: UINT8 [F, S, S, 3] RGB face crops at the classifier's input size, one per FACE_BOXES row:
#: face_detector cuts them, face_scorer scores them.
FACE_CROPS: Final = "FACE_CROPS"
#: The classifier's ONNX input (UINT8 [B, S, S, 3] RGB; normalisation is inside the graph).
CLASSIFIER_INPUT: Final = "FACE_IMAGES"
#: The classifier's ONNX outputs: FP32 [B, 1] logit and probability that the face is synthetic.
CLASSIFIER_LOGIT: Final = "FACE_FAKE_LOGIT"
CLASSIFIER_OUTPUT: Final = "FACE_FAKE_PROBABILITY"

# MTCNN network tensors (ONNX inputs/outputs of mtcnn_pnet, mtcnn_rnet, mtcnn_onet).
PNET_INPUT: Final = "PNET_IMAGES"  # FP32 [B, 3, H, W], (pixel - 127.5) * 0.0078125
PNET_REGRESSION: Final = "PNET_BOX_REGRESSION"  # FP32 [B, 4, h, w]
PNET_PROBABILITY: Final = "PNET_FACE_PROBABILITY"  # FP32 [B, 2, h, w]
RNET_INPUT: Final = "RNET_IMAGES"  # FP32 [B, 3, 24, 24]
RNET_REGRESSION: Final = "RNET_BOX_REGRESSION"  # FP32 [B, 4]
RNET_PROBABILITY: Final = "RNET_FACE_PROBABILITY"  # FP32 [B, 2]
ONET_INPUT: Final = "ONET_IMAGES"  # FP32 [B, 3, 48, 48]
ONET_REGRESSION: Final = "ONET_BOX_REGRESSION"  # FP32 [B, 4]
ONET_LANDMARKS: Final = "ONET_LANDMARKS"  # FP32 [B, 10]
ONET_PROBABILITY: Final = "ONET_FACE_PROBABILITY"  # FP32 [B, 2]

# --- STATUS values ---------------------------------------------------------------------------
STATUS_OK: Final = "ok"
STATUS_NO_FACE: Final = "no_face"

# --- Limits ----------------------------------------------------------------------------------
#: Most frames one request may carry; the ensemble (``face_detector``) rejects more with
#: INVALID_ARGUMENT. The frame-size limits are ``face_detector`` config parameters
#: (``max_frame_side``, ``max_request_pixels``), not constants.
MAX_FRAMES_PER_REQUEST: Final = 64
#: Smallest frame side the detector can look at (P-Net's 12-pixel receptive field).
MIN_FRAME_SIDE: Final = 12

# --- ONNX metadata keys written by the export and read by everything else --------------------
META_INPUT_SIZE: Final = "fakescope.input_size"
META_MEAN: Final = "fakescope.mean"
META_STD: Final = "fakescope.std"
META_FACE_MARGIN: Final = "fakescope.face_margin"
META_FACE_SHIFT: Final = "fakescope.face_shift"
META_TEMPERATURE: Final = "fakescope.temperature"
META_THRESHOLD: Final = "fakescope.threshold"
META_ARCH: Final = "fakescope.arch"
META_TRAINED: Final = "fakescope.trained"
#: Prefix of the training provenance the export copies into the ONNX metadata.
META_PROVENANCE_PREFIX: Final = "fakescope.provenance."
#: What the classifier cannot be trusted for (free text; absent for the untrained placeholder).
META_LIMITATIONS: Final = META_PROVENANCE_PREFIX + "limitations"
#: ``face_classifier`` config parameter that carries :data:`META_THRESHOLD` to clients.
THRESHOLD_PARAMETER: Final = "threshold"
#: The threshold of classifiers exported before version 3, which state none (they were labelled
#: at 0.5); every newer version states its own, calibrated on validation.
UNSTATED_THRESHOLD: Final = 0.5
#: ``face_classifier`` config parameter that carries :data:`META_LIMITATIONS` to clients.
LIMITATIONS_PARAMETER: Final = "limitations"
#: ``face_classifier`` config parameter: ``"true"`` for a trained classifier, ``"false"`` for the
#: placeholder (whose verdicts are never presented as findings).
TRAINED_PARAMETER: Final = "trained"
#: ``face_classifier`` config parameters stating the served version's architecture, input side,
#: crop framing (margin and centre shift, which a client cutting its own crops must use) and
#: temperature.
ARCH_PARAMETER: Final = "arch"
INPUT_SIZE_PARAMETER: Final = "input_size"
FACE_MARGIN_PARAMETER: Final = "face_margin"
FACE_SHIFT_PARAMETER: Final = "face_shift"
TEMPERATURE_PARAMETER: Final = "temperature"
#: Every ``face_classifier`` config parameter: facts about the served version for clients, model
#: cards and tests (no backend reads them). Any other key in an ONNX model's config must be a
#: setting the real ONNX Runtime backend documents (see ``serving.model_config``).
CLASSIFIER_FACT_PARAMETERS: Final = frozenset(
    {
        ARCH_PARAMETER,
        TRAINED_PARAMETER,
        INPUT_SIZE_PARAMETER,
        FACE_MARGIN_PARAMETER,
        FACE_SHIFT_PARAMETER,
        TEMPERATURE_PARAMETER,
        THRESHOLD_PARAMETER,
        LIMITATIONS_PARAMETER,
    }
)

# --- Deadlines: the product limit, and the request priorities that follow it -----------------
#: The product's hard limit: a video's verdict takes at most this fraction of its duration.
PROCESSING_LIMIT_RATIO: Final = 0.5

#: ``face_detector`` (the ensemble's entry queue; Triton passes an ensemble request's priority
#: to its steps) serves waiting videos by deadline class, shortest budget first: a video whose
#: budget (``PROCESSING_LIMIT_RATIO`` x duration) is under the first bound gets priority 1,
#: under the second 2, else 3. A 6 s video must be done in 3 s, a 60 s one has 30 s: served in
#: arrival order, the short one misses its limit behind long ones that could have waited.
PRIORITY_BUDGET_BOUNDS_S: Final = (5.0, 15.0)
#: Priority levels ``face_detector`` declares (``priority_levels`` in its config).
PRIORITY_LEVELS: Final = len(PRIORITY_BUDGET_BOUNDS_S) + 1


def budget_seconds(duration_seconds: float) -> float:
    """Return the seconds a video lasting ``duration_seconds`` has for its verdict."""
    return PROCESSING_LIMIT_RATIO * duration_seconds


def request_priority(duration_seconds: float | None) -> int:
    """Return the Triton request priority of a video lasting ``duration_seconds``.

    ``None`` (unknown) gives 0: the server's default level.
    """
    if duration_seconds is None:
        return 0
    budget = budget_seconds(duration_seconds)
    return 1 + sum(budget >= bound for bound in PRIORITY_BUDGET_BOUNDS_S)


#: Seconds kept back from a video's budget for the analysis itself (detection, classifier,
#: aggregation) once it leaves ``face_detector``'s queue: the queue holds a video only until its
#: budget less this is spent, then refuses it. 0: a video is refused once its whole budget has
#: passed waiting, when it could no longer be answered in time. Measured on the 2-core machine
#: against level timeouts only (benchmarks/results/slower-host/deadlines/levels.md): with 0,
#: past capacity a third to a half as many accepted videos were answered late, each by at most
#: its analysis (0.5-0.7 s on average there), and at 8 users a refusal only replaced a late
#: answer. A reserve of 0.5 or 1 s kept nearly every accepted video within the limit past
#: capacity, but at 8 users refused 16-20 videos per run where level timeouts alone refused
#: none and left 9-13 late: it refused videos that would have been answered in time.
ANALYSIS_RESERVE_S: Final = 0.0
#: The shortest queue wait a request is given, even when its budget is already spent (a slow
#: decode): a free detector still takes it (Triton's batcher sees a request within
#: milliseconds), a busy one refuses it instead of answering after its limit.
MIN_QUEUE_WAIT_S: Final = 0.1


def queue_wait_seconds(duration_seconds: float | None, spent_seconds: float) -> float | None:
    """Return how long a video may wait in ``face_detector``'s queue before it is refused.

    The video's budget (``PROCESSING_LIMIT_RATIO`` x ``duration_seconds``) less the
    ``spent_seconds`` already used on it (its decode, earlier attempts) and
    :data:`ANALYSIS_RESERVE_S`; at least :data:`MIN_QUEUE_WAIT_S`. ``None`` for a video of
    unknown duration: the queue's own timeout for its level applies.
    """
    if duration_seconds is None:
        return None
    return max(
        MIN_QUEUE_WAIT_S, budget_seconds(duration_seconds) - spent_seconds - ANALYSIS_RESERVE_S
    )


# --- Where the server listens by default (KServe v2 HTTP and gRPC, Prometheus metrics) -------
DEFAULT_HOST: Final = "127.0.0.1"
HTTP_PORT: Final = 8000
GRPC_PORT: Final = 8001
METRICS_PORT: Final = 8002

# --- The web service (``fakescope web serve``, its image, the Compose file and the Helm chart) -
WEB_PORT: Final = 8080
#: Where the REST API's routes start.
WEB_API_PREFIX: Final = "/api/v1"
#: The liveness of the database and of Triton, which probes and health checks call.
WEB_HEALTH_PATH: Final = f"{WEB_API_PREFIX}/health"
