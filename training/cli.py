"""``fakescope dataset|train|evaluate`` — training-side subcommands.

Mounted into the ``fakescope`` command by :func:`add_training_parsers`; each subcommand's
``func`` returns an exit code:

=====  ==========================================================================
0      success
1      the run failed (e.g. a split has no usable face, training cannot start)
2      usage error (argparse; an output folder that is not empty; a ``--resume`` whose
       options differ from the run's; a ``--split`` the model was not trained with; a
       checkpoint trained on face crops evaluated on videos)
3      bad input data: an invalid dataset (every offender listed on stderr), a missing or
       unloadable model, weights or ``train_state.pt`` file — nothing is written
=====  ==========================================================================
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fakescope.arguments import (
    fraction,
    frame_count,
    non_negative_int,
    positive_int,
    positive_number,
    probability,
)
from fakescope.client.analyze import DEFAULT_NUM_FRAMES
from fakescope.contract import MIN_FRAME_SIDE
from fakescope.export.provenance import command_line, git_commit
from fakescope.files import write_text_atomically
from fakescope.paths import MODEL_REPOSITORY
from fakescope.pipeline.metadata import read_classifier_spec, read_provenance
from fakescope.serving.model_config import aggregation_params
from fakescope.training.data_versions import build_manifest, find_version, register_version
from fakescope.training.dataset import DatasetError, assign_splits, load_dataset
from fakescope.training.face_crop_cache import prepare_face_crops
from fakescope.training.face_crops import is_face_crop_set, load_face_crop_set, read_face_crops
from fakescope.training.synthetic_data import SynthConfig, synthesize_dataset
from fakescope.training.tracking import (
    report_artifact,
    report_hyperparameters,
    report_output_model,
    report_scalar,
    start_run,
)
from fakescope.training.video_faces import FaceCache, FaceExtractor

if TYPE_CHECKING:  # torch-backed: imported by the commands that train, not by the parser
    from fakescope.training.train import ResumeError

__all__ = ["EXIT_BAD_DATA", "EXIT_FAILED", "EXIT_USAGE", "add_training_parsers"]

logger = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BAD_DATA = 3
DEFAULT_REPOSITORY = MODEL_REPOSITORY
#: ``fakescope.export.classifier.SUPPORTED_ARCHS``, spelled out so the parser needs no torch.
ARCHS = ("efficientnet-lite0", *(f"efficientnet-b{i}" for i in range(8)))
STATE_DIR = Path(".fakescope")
SYNTHETIC_LIMITATIONS = (
    "Trained only on synthetic videos made from a few faces that ship inside Python packages "
    "(scikit-image, matplotlib): real portraits moving over textures, MPEG-4 encoded, with "
    "self-blended and classic landmark-aligned face-swap fakes. It can flag faces whose inner "
    "region was blended into a frame (seams, colour or sharpness mismatch, misalignment). It "
    "has never seen a GAN/autoencoder deepfake, a real camera, real lighting or a social-media "
    "compression chain, and its scores on real-world video are not evidence either way: "
    "treat it as a working demonstration of the pipeline, not as a deepfake detector."
)


#: The scope statement of a classifier trained on face crops; figures from its own validation
#: (:func:`face_crop_limitations` fills it in).
FACE_CROP_LIMITATIONS = (
    "Trained and validated on DFDC face swaps only (face crops of the Deepfake Detection "
    "Challenge training set). On validation faces of {originals} original videos it never "
    "trained on: AUC {auc:.3f}, LogLoss {logloss:.3f}, recall {recall:.3f} and precision "
    "{precision:.3f} {at} (DFDC's actors recur across originals, so these figures are "
    "somewhat optimistic). Other manipulations (lip-sync, whole-face synthesis, diffusion "
    "edits, face-swap tools newer than DFDC) and other sources are unknown until measured: a "
    "score is evidence to weigh, not proof."
)
#: At which threshold the recall and precision of :data:`FACE_CROP_LIMITATIONS` are.
AT_SERVED_THRESHOLD = "at the served threshold {threshold:.3f}"
AT_CROSS_FITTED_THRESHOLD = (
    "with each half of them calibrated and thresholded as the served model is (threshold "
    "{threshold:.3f}), but on the other half"
)
AT_IN_SAMPLE_THRESHOLD = (
    "at the served threshold {threshold:.3f}, chosen on these same faces (too few originals "
    "to cross-fit)"
)


def face_crop_limitations(
    metrics: dict[str, Any], originals: int, threshold: float, at: str
) -> str:
    """Return :data:`FACE_CROP_LIMITATIONS` with ``metrics`` (``BinaryMetrics.to_json``).

    ``at``: one of the ``AT_*`` phrases, filled in with the served ``threshold``.
    """
    figures = {k: metrics[k] for k in ("auc", "logloss", "recall", "precision")}
    return FACE_CROP_LIMITATIONS.format(
        originals=originals, at=at.format(threshold=threshold), **figures
    )


def _say(text: str = "", *, stream=None) -> None:
    """Write one line of CLI output (stdout by default)."""
    (stream or sys.stdout).write(f"{text}\n")


def _require(*modules: str) -> None:
    """Fail before any work when a module of the training extra is missing.

    Raises ``ModuleNotFoundError`` naming it; ``fakescope``'s entry point turns that into one
    line saying how to install the extra.
    """
    import importlib.util

    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)


#: What ``train`` imports (ClearML too unless ``--no-clearml``).
TRAIN_MODULES = ("torch", "efficientnet_lite_pytorch", "onnx", "matplotlib")


def _tracking_modules(args: argparse.Namespace) -> tuple[str, ...]:
    return () if args.no_clearml else ("clearml",)


def _error(message: str) -> None:
    _say(f"fakescope: error: {message}", stream=sys.stderr)


def _run_dir(kind: str, given: Path | None) -> Path:
    if given is not None:
        return given
    return STATE_DIR / "runs" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def _load(directory: Path, *, check_videos: bool = True):

    try:
        return load_dataset(directory, check_videos=check_videos)
    except DatasetError as exc:
        _error(str(exc))
        return None


# --- dataset ----------------------------------------------------------------------------------


def _load_any(directory: Path, *, decode: bool = True):
    """Validate a face-crop folder or a DFDC video folder; ``None`` (error said) when invalid.

    ``decode``: decode every image (face crops) or video (DFDC folders) as part of the check.
    """
    if not is_face_crop_set(directory):
        return _load(directory, check_videos=decode)
    try:
        dataset = load_face_crop_set(directory)
        if decode:
            read_face_crops(dataset, [e.name for e in dataset.entries], 8)
    except DatasetError as exc:
        _error(str(exc))
        return None
    return dataset


def run_dataset_check(args: argparse.Namespace) -> int:
    """Validate a DFDC-format or face-crop folder; list every offender; write nothing."""
    dataset = _load_any(args.directory, decode=not args.no_decode)
    if dataset is None:
        return EXIT_BAD_DATA
    counts = dataset.counts()
    groups = len({e.group for e in dataset.entries})
    unit, grouped = (
        ("faces", "from {} originals")
        if is_face_crop_set(args.directory)
        else ("videos", "in {} groups")
    )
    _say(
        f"{dataset.root}: OK — {len(dataset.entries)} {unit} ({counts['REAL']} REAL, "
        f"{counts['FAKE']} FAKE) {grouped.format(groups)}"
    )
    return 0


def run_dataset_version(args: argparse.Namespace) -> int:
    """Register the folder's content as the next dataset version (v0.1, v0.2, …)."""
    _require(*_tracking_modules(args))
    # images are hashed, not decoded, by the version; `dataset check` decodes them
    dataset = _load_any(args.directory, decode=not is_face_crop_set(args.directory))
    if dataset is None:
        return EXIT_BAD_DATA
    record = register_version(
        dataset, name=args.name, registry=args.registry, use_clearml=not args.no_clearml
    )
    if record.created:
        parent = f" (parent {record.parent})" if record.parent else ""
        short = record.content_hash[:16]
        _say(f"{record.name} {record.version}{parent}: {short} -> {record.path}")
    else:
        _say(f"{record.name}: content unchanged, still {record.version} ({record.path})")
    _say(f"ClearML: {record.clearml.get('status')}")
    if record.clearml.get("offline_session"):
        _say(f"ClearML offline session: {record.clearml['offline_session']}")
    return 0


def run_dataset_synth(args: argparse.Namespace) -> int:
    """Build a DFDC-format dataset from faces that ship in installed packages."""
    if args.output.exists() and any(args.output.iterdir()):
        _error(f"{args.output} is not empty; choose a new folder")
        return EXIT_USAGE
    config = SynthConfig(
        pool=args.identities,
        seed=args.seed,
        max_identities=args.max_identities,
        seconds=args.seconds,
        fps=args.fps,
        width=args.width,
        height=args.height,
        sbi_per_real=args.sbi_per_real,
        swaps_per_real=args.swaps_per_real,
    )
    metadata = synthesize_dataset(args.output, args.repository, config, command=command_line())
    fakes = sum(v["label"] == "FAKE" for v in metadata.values())
    _say(f"{args.output}: {len(metadata)} videos ({len(metadata) - fakes} REAL, {fakes} FAKE)")
    return 0


# --- shared by train and evaluate -------------------------------------------------------------


def _extract(dataset, entries, spec, args: argparse.Namespace, what: str) -> tuple[dict, dict]:
    """Faces of ``entries`` through the cache, with a progress bar; also the content hashes."""
    from tqdm import tqdm

    extractor = FaceExtractor(args.repository, spec, num_frames=args.frames)
    cache = FaceCache(args.cache, extractor)
    faces, hashes = {}, {}
    videos = [dataset.path(e) for e in entries]
    bar = tqdm(videos, desc=f"faces ({what})", unit="video", file=sys.stderr, disable=args.quiet)
    for entry, (_, found, _) in zip(entries, cache.iter_videos(bar), strict=True):
        faces[entry.name] = found
        hashes[entry.name] = cache.content_hash(dataset.path(entry))
    return faces, hashes


def _data_version(dataset, hashes: dict[str, str], registry: Path) -> tuple[str, str]:

    content = build_manifest(dataset, hashes)["content_hash"]
    found = find_version(content, registry)
    return found or f"unregistered (content sha256 {content[:16]})", content


def _start_tracking(args: argparse.Namespace, name: str, kind: str):
    if args.no_clearml:
        return None

    return start_run(name, kind)


def _synthetic_record(root: Path) -> dict[str, Any] | None:
    path = root / "synthetic.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("generator") == "fakescope.training.synthetic_data" else None


# --- train --------------------------------------------------------------------------------------


def _train_config(args: argparse.Namespace):
    """Build the :class:`~fakescope.training.train.TrainConfig` of the command line."""
    from fakescope.training.train import TrainConfig

    return TrainConfig(
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        real_only=args.real_only,
        self_blend=not args.no_self_blend,
        sbi_rate=args.sbi_rate,
        samples_per_epoch=args.samples_per_epoch,
        val_faces_per_epoch=args.val_faces_per_epoch,
        patience=args.patience,
        input_size=args.input_size,
        weights=args.weights,
        device=args.device,
    )


def _assign(args: argparse.Namespace, entries: list[Any]) -> Any:
    """Split ``entries`` by ``--seed``, ``--val-fraction`` and ``--test-fraction`` (no leaks)."""
    return assign_splits(
        entries, seed=args.seed, val_fraction=args.val_fraction, test_fraction=args.test_fraction
    )


def _weights_unusable(args: argparse.Namespace) -> bool:
    """Say why (and return True) when ``--weights`` names no file, or none that fits ``--arch``.

    Checked before any data is read or anything written: the weights are loaded again when
    training starts.
    """
    if args.weights is None:
        return False
    if not args.weights.is_file():
        _error(f"weights file not found: {args.weights}")
        return True
    from fakescope.export.classifier import CheckpointError
    from fakescope.training.train import starting_weights

    try:
        starting_weights(args.weights, args.arch)
    except CheckpointError as exc:
        _error(f"--weights: {exc}")
        return True
    return False


#: What each recorded setting of a run (``train.run_settings``) is called on the command line.
_SETTING_NAMES = {
    "self_blend": "--no-self-blend",
    "weight_decay": "the weight decay",
    "face_margin": "the data's crop framing",
    "face_shift": "the data's crop framing",
    "split_sha256": "the train/val/test split",
    "data_content_sha256": "the data (content of DATA_DIR)",
    "faces_sha256": "the training and validation faces",
    "frames_per_video": "--frames",
}
#: Settings that are hashes: named, their values not shown.
_HASHED_SETTINGS = {"split_sha256", "data_content_sha256", "faces_sha256"}


def _resume_message(exc: ResumeError, output: Path) -> str:
    """Return one line: why ``--resume`` cannot continue the run in ``output``."""
    if not exc.differing:
        return (
            f"--resume: {exc.state_path} records no settings to compare with this command's "
            "(written by an older FakeScope): train into a new --output"
        )
    parts: list[str] = []
    for key, (recorded, now) in exc.differing.items():
        name = _SETTING_NAMES.get(key, "--" + key.replace("_", "-"))
        if key in _HASHED_SETTINGS or key in {"face_margin", "face_shift"}:
            part = name
        else:
            shown = "not recorded" if recorded is None else json.loads(recorded)
            part = f"{name} {shown} (now {json.loads(now)})"
        if part not in parts:
            parts.append(part)
    return (
        f"--resume: the run in {output} was trained with other settings: {'; '.join(parts)}; "
        "repeat its options to continue it, or train into a new --output"
    )


def _resume_refused(args: argparse.Namespace, output: Path, settings: dict[str, str]) -> int | None:
    """With ``--resume``: the exit code (error said) when the run in ``output`` differs."""
    if not args.resume:
        return None
    from fakescope.export.classifier import CheckpointError
    from fakescope.training.train import ResumeError, check_resume

    try:
        check_resume(output, settings)
    except ResumeError as exc:
        _error(_resume_message(exc, output))
        return EXIT_USAGE
    except CheckpointError as exc:
        _error(f"--resume: {exc}")
        return EXIT_BAD_DATA
    return None


def run_train_face_crops(args: argparse.Namespace) -> int:
    """Train on a face-crop folder (``metadata.csv`` + shards or images): see the README."""
    from tqdm import tqdm

    from fakescope.training.train import FaceSet, run_settings, spec_for

    if args.eval_dir is not None:
        _error(
            "--eval-dir takes a DFDC video folder; evaluate face crops with `fakescope evaluate`"
        )
        return EXIT_USAGE
    if _weights_unusable(args):
        return EXIT_BAD_DATA
    try:
        dataset = load_face_crop_set(args.data_dir)
    except DatasetError as exc:
        _error(str(exc))
        return EXIT_BAD_DATA
    config = _train_config(args)
    spec = spec_for(config)
    splits = _assign(args, dataset.entries)
    bar = tqdm(
        total=len(dataset.entries), desc="faces", unit="face", file=sys.stderr, disable=args.quiet
    )
    try:
        prepared = prepare_face_crops(
            dataset, spec.input_size, args.repository, args.cache, on_image=lambda: bar.update(1)
        )
    except DatasetError as exc:
        _error(str(exc))
        return EXIT_BAD_DATA
    finally:
        bar.close()
    labels = np.asarray([int(e.is_fake) for e in dataset.entries], np.int64)
    groups = [e.group for e in dataset.entries]
    position = {name: i for i, name in enumerate(prepared.names)}
    # serve crops framed like the data's: the measured geometry goes into the model's spec
    config = dataclasses.replace(
        config, face_margin=prepared.geometry.face_margin, face_shift=prepared.geometry.face_shift
    )

    def subset(split: str) -> FaceSet:
        rows = np.asarray([position[n] for n in splits.names(split)], np.int64)
        return FaceSet(
            np.asarray(prepared.crops[rows]),
            prepared.landmarks[rows],
            labels[rows],
            [prepared.names[i] for i in rows],
            [groups[i] for i in rows],
        )

    train_set, val_set = subset("train"), subset("val")
    if len(val_set) == 0:
        _error("the validation split is empty: add faces or raise --val-fraction")
        return EXIT_FAILED
    output = _run_dir("train", args.output)
    split_record = _split_record(splits, dataset)
    settings = run_settings(
        config,
        **_split_settings(args, split_record),
        data_content_sha256=prepared.content_hash,
    )
    refused = _resume_refused(args, output, settings)
    if refused is not None:  # before the run's split and geometry are written over
        return refused
    output.mkdir(parents=True, exist_ok=True)
    write_text_atomically(output / "splits.json", json.dumps(splits.to_json(), indent=1) + "\n")
    write_text_atomically(
        output / "crop_geometry.json", json.dumps(prepared.geometry.to_json(), indent=1)
    )
    counts = dataset.counts()
    provenance = {
        "data_version": _registered_or_hash(prepared.content_hash, args.registry),
        "data_content_sha256": prepared.content_hash,
        "data_dir": str(dataset.root.resolve()),
        "data_format": "face crops (metadata.csv + images)",
        "split": json.dumps(split_record, sort_keys=True),
        "split_seed": str(args.seed),
        "crop_geometry": json.dumps(prepared.geometry.to_json(), sort_keys=True),
        "command": command_line(),
        "git_commit": git_commit(),
        "real_only": str(args.real_only),
        "trained_on": (
            f"{dataset.root.resolve().name}: face crops, {counts['REAL']} REAL and "
            f"{counts['FAKE']} FAKE ({len(train_set)} trained on, {len(val_set)} validation)"
        ),
    }
    logger.info("train faces %d, val faces %d", len(train_set), len(val_set))

    run = _start_tracking(args, f"train {dataset.root.resolve().name}", "training")
    try:
        report_hyperparameters(config.to_json(), "train")
        report_hyperparameters(
            {
                k: provenance[k]
                for k in ("data_version", "data_content_sha256", "data_dir", "git_commit")
            },
            "data",
        )
        report_artifact("split", split_record)

        def state_scope(best: Path) -> dict[str, str]:
            from fakescope.export.classifier import load_checkpoint
            from fakescope.training.train import CROSS_FITTED

            recorded = load_checkpoint(best).provenance
            threshold = float(recorded["threshold"])
            originals = split_record["val_originals"]
            if CROSS_FITTED in recorded:
                metrics = json.loads(recorded[CROSS_FITTED])
                text = face_crop_limitations(
                    metrics, originals, threshold, AT_CROSS_FITTED_THRESHOLD
                )
            else:  # a half of the validation originals lacked a class: in-sample figures
                metrics = json.loads(recorded["val_face_metrics"])
                text = face_crop_limitations(metrics, originals, threshold, AT_IN_SAMPLE_THRESHOLD)
            return {"limitations": text}

    except BaseException:
        _close_tracking(run)
        raise
    return _train_and_report(
        args, config, settings, train_set, val_set, provenance, output, run, state_scope
    )


def _assignment_sha256(assignment: dict[str, str]) -> str:
    """SHA-256 of a split assignment (name -> split): what identifies a split."""
    import hashlib

    listing = "".join(f"{n}:{s}\n" for n, s in sorted(assignment.items()))
    return hashlib.sha256(listing.encode()).hexdigest()


def _split_record(splits, dataset) -> dict[str, Any]:
    """Seed, counts and the hash of the assignment: what a model's metadata records."""
    by_name = dataset.by_name()
    record: dict[str, Any] = {"seed": splits.seed, "val_fraction": splits.val_fraction}
    for split in ("train", "val", "test"):
        names = splits.names(split)
        record[f"{split}_faces"] = len(names)
        record[f"{split}_originals"] = len({by_name[n].group for n in names})
    record["assignment_sha256"] = _assignment_sha256(dict(splits.assignment))
    return record


def _split_settings(args: argparse.Namespace, record: dict[str, Any]) -> dict[str, Any]:
    """Return the options that define a run's split, and its hash (for ``run_settings``)."""
    return {
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
        "split_sha256": record["assignment_sha256"],
    }


def _registered_or_hash(content: str, registry: Path) -> str:
    return find_version(content, registry) or f"unregistered (content sha256 {content[:16]})"


def run_train(args: argparse.Namespace) -> int:
    """Train a classifier on a DFDC-format folder; see ``fakescope train --help``."""
    # Before torch starts OpenMP: idle threads sleep instead of spinning, so that training beside
    # another process on a 2-core machine does not slow down several-fold (spinning OpenMP
    # threads then wait on each other).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from fakescope.training.train import (
        collect_faces,
        run_settings,
        spec_for,
    )

    problem = _split_problem(args) or _resume_problem(args)
    if problem:  # before any module is loaded or face decoded
        _error(problem)
        return EXIT_USAGE
    _require(*TRAIN_MODULES, *_tracking_modules(args))
    if is_face_crop_set(args.data_dir):
        return run_train_face_crops(args)
    dataset = _load(args.data_dir)
    if dataset is None:
        return EXIT_BAD_DATA
    eval_dataset = None
    if args.eval_dir is not None:
        eval_dataset = _load(args.eval_dir)
        if eval_dataset is None:
            return EXIT_BAD_DATA
    if _weights_unusable(args):
        return EXIT_BAD_DATA
    config = _train_config(args)
    spec = spec_for(config)
    splits = _assign(args, dataset.entries)
    by_name = dataset.by_name()
    train_entries = [by_name[n] for n in splits.names("train")]
    val_entries = [by_name[n] for n in splits.names("val")]
    test_entries = [by_name[n] for n in splits.names("test")]
    if not val_entries:
        _error("the validation split is empty: add videos or raise --val-fraction")
        return EXIT_FAILED

    output = _run_dir("train", args.output)
    split_record = _split_record(splits, dataset)
    settings = run_settings(
        config, **_split_settings(args, split_record), frames_per_video=args.frames
    )
    # checked here before the split is written over; the data's hash, known once the videos
    # are read, is checked again with the rest when training starts
    refused = _resume_refused(args, output, settings)
    if refused is not None:
        return refused
    output.mkdir(parents=True, exist_ok=True)
    write_text_atomically(output / "splits.json", json.dumps(splits.to_json(), indent=1) + "\n")
    run = _start_tracking(args, f"train {dataset.root.resolve().name}", "training")
    try:
        faces, hashes = _extract(dataset, dataset.entries, spec, args, "train+val")
        data_version, content = _data_version(dataset, hashes, args.registry)
        settings["data_content_sha256"] = json.dumps(content)
        synthetic = _synthetic_record(dataset.root)
        command = command_line()
        provenance = {
            "data_version": data_version,
            "data_content_sha256": content,
            "data_dir": str(dataset.root.resolve()),
            "splits": json.dumps(splits.to_json()["splits"], sort_keys=True),
            "split": json.dumps(split_record, sort_keys=True),
            "split_seed": str(args.seed),
            "frames_per_video": str(args.frames),
            "command": command,
            "git_commit": git_commit(),
            "real_only": str(args.real_only),
        }
        counts = dataset.counts()
        if synthetic is not None:
            provenance["trained_on"] = (
                "synthetic videos from package-shipped faces "
                f"({', '.join(synthetic['identities'][:3])}"
                f", … {len(synthetic['identities'])} identities; {counts['REAL']} REAL, "
                f"{counts['FAKE']} FAKE: self-blended and face-swapped)"
            )
            steps = [synthetic.get("command", "")]
            held = _synthetic_record(eval_dataset.root) if eval_dataset is not None else None
            if held is not None:
                steps.append(held.get("command", ""))
            provenance["reproduce"] = "\n".join([*filter(None, steps), command])
            provenance["limitations"] = SYNTHETIC_LIMITATIONS
        else:
            provenance["trained_on"] = (
                f"{dataset.root.resolve()} ({counts['REAL']} REAL, {counts['FAKE']} FAKE videos"
                + (", fakes ignored: real-only with self-blended fakes" if args.real_only else "")
                + ")"
            )
        report_hyperparameters(config.to_json(), "train")
        report_hyperparameters(
            {
                "data_version": data_version,
                "data_content_sha256": content,
                "data_dir": str(dataset.root.resolve()),
                "git_commit": provenance["git_commit"],
            },
            "data",
        )
        report_artifact("splits", splits.to_json())
        train_set = collect_faces(train_entries, faces)
        val_set = collect_faces(val_entries, faces)
        logger.info("train faces %d, val faces %d", len(train_set), len(val_set))

        def evaluate_videos_after(best: Path) -> dict[str, str]:
            extra: dict[str, str] = {}
            for label, entries_, data in (
                ("test", test_entries, dataset),
                ("heldout", list(eval_dataset.entries) if eval_dataset else [], eval_dataset),
            ):
                if not entries_:
                    continue
                evaluation = _evaluate_checkpoint(best, data, entries_, args, label)
                extra[f"{label}_metrics"] = json.dumps(evaluation.metrics.to_json(), sort_keys=True)
                if label == "heldout":
                    extra["heldout_data"] = str(data.root.resolve())
            return extra

    except BaseException:
        _close_tracking(run)
        raise
    return _train_and_report(
        args, config, settings, train_set, val_set, provenance, output, run, evaluate_videos_after
    )


def _close_tracking(run) -> Path | None:
    """Close the ClearML run (if any); return its offline session zip."""
    return run.close() if run is not None else None


def _train_and_report(
    args: argparse.Namespace,
    config,
    settings: dict[str, str],
    train_set,
    val_set,
    provenance: dict[str, str],
    output: Path,
    run,
    evaluate_after,
) -> int:
    """Train with a progress bar, evaluate the best checkpoint, write ``summary.json``, report.

    Closes ``run`` (the ClearML task, or ``None``) whatever happens.
    """
    from tqdm import tqdm

    from fakescope.export.classifier import CheckpointError
    from fakescope.training.train import ResumeError, TrainingError, train_classifier

    bar = tqdm(desc="train", unit="batch", file=sys.stderr, disable=args.quiet)

    def on_step(step: int, steps: int) -> None:
        if step == 1:
            bar.reset(total=steps)
        bar.update(1)

    try:
        try:
            result = train_classifier(
                train_set,
                val_set,
                config,
                output,
                provenance=provenance,
                resume=args.resume,
                on_step=on_step,
                settings=settings,
            )
        finally:
            bar.close()
        extra = evaluate_after(result.best_checkpoint)
        if extra:
            _add_provenance(result.best_checkpoint, extra)
        report_output_model(result.best_checkpoint, "face_classifier (best)", tags=[config.arch])
        report_artifact("history", result.history)
    except TrainingError as exc:
        _close_tracking(run)
        _error(str(exc))
        return EXIT_FAILED
    except ResumeError as exc:  # the data changed under the same names (checked last)
        _close_tracking(run)
        _error(_resume_message(exc, output))
        return EXIT_USAGE
    except CheckpointError as exc:  # an unreadable train_state.pt
        _close_tracking(run)
        _error(f"--resume: {exc}")
        return EXIT_BAD_DATA
    except BaseException:
        _close_tracking(run)
        raise
    zip_path = _close_tracking(run)
    first, last = result.history[0]["train_loss"], result.history[-1]["train_loss"]
    summary = {
        "best_checkpoint": str(result.best_checkpoint),
        "best_epoch": result.best_epoch,
        "epochs_trained": len(result.history),
        "stopped_early": result.stopped_early,
        "train_loss_first_epoch": first,
        "train_loss_last_epoch": last,
        "val_face_metrics": result.val_metrics.to_json(),
        "threshold": result.threshold,
        "temperature": result.temperature,
        "data_version": provenance.get("data_version"),
        **{k: json.loads(v) for k, v in extra.items() if k.endswith("_metrics")},
        "clearml_offline_session": str(zip_path) if zip_path else None,
    }
    write_text_atomically(output / "summary.json", json.dumps(summary, indent=1) + "\n")
    write_run_record(result.best_checkpoint, output / "provenance.json")
    if args.json:
        _say(json.dumps(summary))
        return 0
    m = result.val_metrics
    _say(f"best checkpoint: {result.best_checkpoint} (epoch {result.best_epoch})")
    _say(f"train loss: {first:.4f} (epoch 0) -> {last:.4f} (epoch {len(result.history) - 1})")
    _say(
        f"validation faces: logloss {m.logloss:.4f}  auc {m.auc:.4f}  "
        f"accuracy {m.accuracy:.4f} at threshold {result.threshold:.4f} "
        f"(temperature {result.temperature:.3f})"
    )
    for key in ("test_metrics", "heldout_metrics"):
        if key in summary:
            keys = ("recall", "precision", "accuracy", "logloss", "auc")
            shown = {k: summary[key][k] for k in keys}
            _say(f"{key.split('_')[0]} videos: {json.dumps(shown)}")
    if zip_path:
        _say(f"ClearML offline session: {zip_path}")
    _say(f"export it: fakescope export --checkpoint {result.best_checkpoint}")
    return 0


def write_run_record(checkpoint: Path, path: Path) -> None:
    """Write the best checkpoint's provenance (command, split, metrics, …) as JSON."""
    from fakescope.export.classifier import load_checkpoint

    provenance = load_checkpoint(checkpoint).provenance
    write_text_atomically(path, json.dumps(dict(sorted(provenance.items())), indent=1) + "\n")


def _add_provenance(checkpoint: Path, extra: dict[str, str]) -> None:
    import torch

    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    raw["provenance"] = {**raw.get("provenance", {}), **extra}
    tmp = checkpoint.with_suffix(".tmp")
    torch.save(raw, tmp)
    os.replace(tmp, checkpoint)


def _evaluate_checkpoint(checkpoint: Path, dataset, entries, args: argparse.Namespace, label: str):
    from fakescope.training.evaluate import (
        OnnxClassifier,
        evaluate_videos,
        resolve_model,
        write_report,
    )

    workdir = checkpoint.parent / f"eval-{label}"
    workdir.mkdir(parents=True, exist_ok=True)
    classifier = OnnxClassifier(resolve_model(checkpoint, workdir))
    faces, _ = _extract(dataset, entries, classifier.spec, args, label)
    evaluation = evaluate_videos(entries, faces, classifier, aggregation_params(args.repository))
    write_report(evaluation, workdir)
    for key in ("recall", "precision", "accuracy", "logloss", "auc"):
        value = getattr(evaluation.metrics, key)
        if value == value:
            report_scalar(f"{label} (videos)", key, value, 0)
    return evaluation


# --- evaluate -----------------------------------------------------------------------------------


def _model_problem(model: Path) -> str | None:
    """Why ``model`` cannot be evaluated (checked before anything is written), or ``None``."""
    if not model.exists():
        return f"model not found: {model}"
    try:
        if model.suffix in {".pt", ".pth"}:
            from fakescope.export.classifier import CheckpointError, load_checkpoint

            try:
                load_checkpoint(model)
            except CheckpointError as exc:  # it names the file and says why
                return f"cannot be loaded as a FakeScope classifier: {exc}"
        elif model.suffix == ".onnx":
            read_classifier_spec(model)
        elif model.is_dir():
            from fakescope.training.evaluate import resolve_model

            # the served version's file (a folder is resolved in place: nothing is written)
            read_classifier_spec(resolve_model(model, model))
        else:
            return f"{model}: expected a model repository, an .onnx file or a .pt checkpoint"
    except Exception as exc:  # any load failure is reported, nothing is written
        return f"{model}: cannot be loaded as a FakeScope classifier: {exc}"
    return None


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a classifier per video on a DFDC-format folder, scored like the server."""
    from fakescope.training.evaluate import (
        OnnxClassifier,
        evaluate_videos,
        format_table,
        resolve_model,
        write_report,
    )

    problem = _split_problem(args)
    if problem:
        _error(problem)
        return EXIT_USAGE
    _require("matplotlib", *_tracking_modules(args))
    face_crops = is_face_crop_set(args.data_dir)
    dataset = _load_any(args.data_dir, decode=not face_crops)  # images are decoded below
    if dataset is None:
        return EXIT_BAD_DATA
    model = args.model or args.repository
    problem = _model_problem(model)
    if problem:
        _error(problem)
        return EXIT_BAD_DATA
    if face_crops:
        return _evaluate_face_crops(args, dataset, model)
    provenance = _model_provenance(model)
    if model.suffix in {".pt", ".pth"} and "crop_geometry" in provenance:
        # evaluate.resolve_model exports a checkpoint with its raw crop geometry, not the
        # framing `fakescope export` calibrates for videos: its scores would not be as served
        _error(
            f"{model} was trained on face crops: its crop framing for videos is calibrated "
            f"when it is exported (fakescope export --checkpoint {model} --framing-videos "
            "VIDEO...); evaluate the exported version (--model REPOSITORY or its model.onnx)"
        )
        return EXIT_USAGE
    entries, code = _split_entries(dataset, args, provenance)
    if code is not None:
        return code
    output = _run_dir("evaluate", args.output)
    output.mkdir(parents=True, exist_ok=True)
    run = _start_tracking(args, f"evaluate {dataset.root.resolve().name}", "testing")
    try:
        classifier = OnnxClassifier(resolve_model(model, output))
        faces, hashes = _extract(dataset, entries, classifier.spec, args, "evaluate")
        data_version, content = _data_version(dataset, hashes, args.registry)
        evaluation = evaluate_videos(
            entries,
            faces,
            classifier,
            aggregation_params(args.repository),
            threshold=args.threshold,
        )
        report_hyperparameters(
            {
                "model": str(classifier.path),
                "threshold": evaluation.metrics.threshold,
                "threshold_source": evaluation.threshold_source,
                "data_version": data_version,
                "data_content_sha256": content,
                "split": args.split,
                "frames": args.frames,
            },
            "evaluate",
        )
        for key in ("recall", "precision", "accuracy", "logloss", "auc"):
            value = getattr(evaluation.metrics, key)
            if value == value:  # not NaN
                report_scalar("video metrics", key, value, 0)
        paths = write_report(evaluation, output)
    finally:
        zip_path = run.close() if run is not None else None
    report = evaluation.to_json()
    report["data_version"] = data_version
    report["data_dir"] = str(dataset.root.resolve())
    report["split"] = args.split
    report["report_files"] = {k: str(v) for k, v in paths.items()}
    report["clearml_offline_session"] = str(zip_path) if zip_path else None
    write_text_atomically(paths["metrics"], json.dumps(report, indent=2) + "\n")
    if not classifier.trained:
        _say(
            "fakescope: warning: this classifier is UNTRAINED; its scores are not findings",
            stream=sys.stderr,
        )
    if args.json:
        _say(json.dumps(report))
    else:
        _say(format_table(evaluation))
        _say(f"\nreport: {', '.join(str(p) for p in paths.values())}")
        if zip_path:
            _say(f"ClearML offline session: {zip_path}")
    return 0


def _model_provenance(model: Path) -> dict[str, str]:
    """Return the provenance of the classifier ``model`` names (nothing is exported)."""
    if model.suffix in {".pt", ".pth"}:
        from fakescope.export.classifier import load_checkpoint

        return load_checkpoint(model).provenance
    from fakescope.training.evaluate import resolve_model

    return read_provenance(resolve_model(model, model))  # a folder or .onnx: resolved in place


def _split_entries(dataset, args: argparse.Namespace, provenance: dict[str, str]):
    """``(entries of --split, None)``, or ``([], exit code)`` with the error said."""
    entries = list(dataset.entries)
    if args.split == "all":
        return entries, None
    splits = _assign(args, entries)
    problem = _split_mismatch(provenance, _split_record(splits, dataset), args)
    if problem:
        _error(problem)
        return [], EXIT_USAGE
    chosen = set(splits.names(args.split))
    entries = [e for e in entries if e.name in chosen]
    if not entries:
        _error(f"the {args.split} split is empty")
        return [], EXIT_FAILED
    return entries, None


def _evaluate_face_crops(args: argparse.Namespace, dataset, model: Path) -> int:
    """Evaluate a classifier on a face-crop folder: each crop, resized, straight into it."""
    from tqdm import tqdm

    from fakescope.training.evaluate import (
        OnnxClassifier,
        evaluate_face_crops,
        format_table,
        resolve_model,
        write_report,
    )

    output = _run_dir("evaluate", args.output)
    if model.suffix in {".pt", ".pth"}:  # exported into the run folder first
        output.mkdir(parents=True, exist_ok=True)
    classifier = OnnxClassifier(resolve_model(model, output))
    entries, code = _split_entries(dataset, args, classifier.provenance)
    if code is not None:
        return code
    bar = tqdm(total=len(entries), desc="faces", unit="face", file=sys.stderr, disable=args.quiet)
    try:
        crops = read_face_crops(
            dataset,
            [e.name for e in entries],
            classifier.spec.input_size,
            on_image=lambda: bar.update(1),
        )
    except DatasetError as exc:
        _error(str(exc))
        return EXIT_BAD_DATA
    finally:
        bar.close()
    evaluation = evaluate_face_crops(entries, crops.crops, classifier, threshold=args.threshold)
    output.mkdir(parents=True, exist_ok=True)
    paths = write_report(evaluation, output)
    report = evaluation.to_json()
    report["data_dir"] = str(dataset.root.resolve())
    report["split"] = args.split
    report["report_files"] = {k: str(v) for k, v in paths.items()}
    write_text_atomically(paths["metrics"], json.dumps(report, indent=2) + "\n")
    if args.json:
        _say(json.dumps({k: v for k, v in report.items() if k != "videos"}))
    else:
        _say(format_table(evaluation))
        _say(f"\nreport: {', '.join(str(p) for p in paths.values())}")
    return 0


def _split_mismatch(
    provenance: dict[str, str], record: dict[str, Any], args: argparse.Namespace
) -> str | None:
    """Why this split is not the one the model was trained with (``None``: it is, or unknown)."""
    recorded = provenance.get("split")
    expected = json.loads(recorded).get("assignment_sha256") if recorded else None
    if expected is None and provenance.get("splits"):
        # a model trained on videos before the split record: its listing of every split
        listing = json.loads(provenance["splits"])
        expected = _assignment_sha256({n: s for s, names in listing.items() for n in names})
        recorded = f"seed {provenance.get('split_seed', '?')}"
    if expected and expected != record["assignment_sha256"]:
        return (
            f"--seed {args.seed} --val-fraction {args.val_fraction} --test-fraction "
            f"{args.test_fraction} do not give the split this model was trained with "
            f"(recorded: {recorded}); a {args.split} figure would mix in training faces"
        )
    return None


# --- parsers ------------------------------------------------------------------------------------


def _identities(text: str) -> int:
    value = positive_int(text)
    if value < 2:  # a face swap takes one identity's face onto another's
        raise argparse.ArgumentTypeError(f"must be >= 2 (a swap needs two), got {value}")
    return value


def _frame_side(text: str) -> int:
    value = positive_int(text)
    if value < MIN_FRAME_SIDE:
        raise argparse.ArgumentTypeError(f"must be >= {MIN_FRAME_SIDE} px, got {value}")
    return value


def _common(parser: argparse.ArgumentParser, *, frames: int = DEFAULT_NUM_FRAMES) -> None:
    parser.add_argument(
        "--repository",
        type=Path,
        default=DEFAULT_REPOSITORY,
        help="model repository (MTCNN, detector/aggregator configs)",
    )
    parser.add_argument(
        "--frames",
        type=frame_count,
        default=frames,
        metavar="N",
        help=f"frames sampled per video (default {frames})",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=STATE_DIR / "faces",
        help="face-crop cache folder (default .fakescope/faces)",
    )
    parser.add_argument(
        "--registry",
        type=Path,
        default=STATE_DIR / "datasets",
        help="dataset version registry (default .fakescope/datasets)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="run folder (default .fakescope/runs/<kind>-<time>)",
    )
    parser.add_argument("--no-clearml", action="store_true", help="do not track with ClearML")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _split_problem(args: argparse.Namespace) -> str | None:
    """Say why ``--val-fraction`` and ``--test-fraction`` together leave no training set."""
    if args.val_fraction + args.test_fraction >= 1:
        return (
            f"--val-fraction {args.val_fraction} and --test-fraction {args.test_fraction} "
            "hold out every video: together they must be below 1"
        )
    return None


def _resume_problem(args: argparse.Namespace) -> str | None:
    """Say why ``--resume`` cannot continue a run: it names none."""
    if args.resume and args.output is None:
        # without it the run gets a new folder, where there is nothing to continue
        return "--resume continues the run in --output: give the folder of the run"
    return None


def _split_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="split (and training) seed")
    parser.add_argument("--val-fraction", type=fraction, default=0.2)
    parser.add_argument("--test-fraction", type=fraction, default=0.0)


def add_training_parsers(subparsers: Any) -> None:
    """Register ``dataset`` (check|version|synth), ``train`` and ``evaluate``.

    Imports nothing heavy (no torch): the thin client's ``fakescope --help`` stays fast.
    """
    dataset = subparsers.add_parser(
        "dataset", help="check, version or synthesize a DFDC-format set"
    )
    dsub = dataset.add_subparsers(dest="dataset_command", required=True)
    check = dsub.add_parser("check", help="validate DIR; non-zero exit listing every offender")
    check.add_argument("directory", type=Path)
    check.add_argument("--no-decode", action="store_true", help="skip decoding each video")
    check.set_defaults(func=run_dataset_check)

    version = dsub.add_parser("version", help="register DIR as the next version (v0.1, v0.2, …)")
    version.add_argument("directory", type=Path)
    version.add_argument("--name", default=None, help="dataset name (default: folder name)")
    version.add_argument("--registry", type=Path, default=STATE_DIR / "datasets")
    version.add_argument("--no-clearml", action="store_true")
    version.set_defaults(func=run_dataset_version)

    synth = dsub.add_parser("synth", help="write a DFDC-format set from package-shipped faces")
    synth.add_argument("output", type=Path)
    synth.add_argument("--identities", choices=["train", "heldout", "all"], default="train")
    synth.add_argument(
        "--max-identities", type=_identities, default=None, help="at least 2 (swaps need two)"
    )
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--seconds", type=positive_number, default=2.0)
    synth.add_argument("--fps", type=positive_number, default=10.0)
    synth.add_argument("--width", type=_frame_side, default=320)
    synth.add_argument("--height", type=_frame_side, default=240)
    synth.add_argument("--sbi-per-real", type=non_negative_int, default=1)
    synth.add_argument("--swaps-per-real", type=non_negative_int, default=1)
    synth.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    synth.set_defaults(func=run_dataset_synth)

    train = subparsers.add_parser("train", help="train the face classifier on DATA_DIR")
    train.add_argument("data_dir", type=Path)
    train.add_argument("--arch", choices=ARCHS, default="efficientnet-lite0")
    train.add_argument("--epochs", type=positive_int, default=10)
    train.add_argument("--batch-size", type=positive_int, default=16)
    train.add_argument("--lr", type=positive_number, default=3e-4)
    train.add_argument("--patience", type=positive_int, default=3, help="early-stopping epochs")
    train.add_argument(
        "--real-only",
        action="store_true",
        help="ignore FAKE videos; fakes are self-blended from REAL faces",
    )
    train.add_argument(
        "--no-self-blend",
        action="store_true",
        help="train on labelled fakes only (no self-blended fakes)",
    )
    train.add_argument(
        "--input-size",
        type=positive_int,
        default=None,
        help="the classifier's input size in px (default: the architecture's)",
    )
    train.add_argument(
        "--sbi-rate",
        type=probability,
        default=0.25,
        help="share of the fakes in each batch self-blended from REAL faces",
    )
    train.add_argument(
        "--samples-per-epoch",
        type=positive_int,
        default=None,
        help="balanced samples per epoch (default: twice the larger class)",
    )
    train.add_argument(
        "--val-faces-per-epoch",
        type=positive_int,
        default=None,
        help="validation faces scored after each epoch (default: all)",
    )
    train.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="starting weights (state dict) for efficientnet-b0…b7",
    )
    train.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    train.add_argument("--resume", action="store_true", help="continue the run in --output")
    train.add_argument(
        "--eval-dir",
        type=Path,
        default=None,
        help="a held-out DFDC-format folder evaluated with the best checkpoint",
    )
    _split_options(train)
    _common(train, frames=8)
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser("evaluate", help="per-video metrics, scored like the server")
    evaluate.add_argument("data_dir", type=Path)
    evaluate.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model repository, .onnx or .pt (default: the served classifier)",
    )
    evaluate.add_argument(
        "--threshold",
        type=probability,
        default=None,
        help="decision threshold (default: the model's validation threshold)",
    )
    evaluate.add_argument("--split", choices=["all", "train", "val", "test"], default="all")
    _split_options(evaluate)
    _common(evaluate)
    evaluate.set_defaults(func=run_evaluate)
