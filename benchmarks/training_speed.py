"""Training throughput of the classifier per input size, measured side by side in one run.

What ``fakescope train`` does per batch (augmentation, forward, backward, AdamW step) on
random-content UINT8 crops, for each input size in turn, alternating rounds so that a change
in the machine's load hits every size alike. Writes ``training_speed.json``: images per second
per size (median of the rounds) and their ratio to the fastest, which is what chose the served
input size.

    python -m fakescope.benchmarks.training_speed --sizes 128,160,224 --output benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from fakescope.arguments import positive_int
from fakescope.files import write_text_atomically

logger = logging.getLogger(__name__)


def measure(sizes: list[int], batch: int, steps: int, rounds: int) -> dict[str, object]:
    """Images per second of training steps at each size (median over ``rounds`` rounds)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as fakescope train sets it
    import torch
    from torch import nn

    from fakescope.export.classifier import ServingClassifier, build_backbone, default_spec
    from fakescope.training.augment import augment_crop

    rng = np.random.default_rng(0)
    models = {}
    for size in sizes:
        spec = default_spec("efficientnet-lite0")
        spec = type(spec)(spec.arch, size, spec.mean, spec.std, spec.face_margin)
        model = ServingClassifier(build_backbone("efficientnet-lite0"), spec).train()
        models[size] = (model, torch.optim.AdamW(model.parameters(), lr=3e-4))
    loss_fn = nn.BCEWithLogitsLoss()
    rates: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(rounds):
        for size in sizes:
            model, optimizer = models[size]
            crops = rng.integers(0, 255, (batch, size, size, 3), dtype=np.uint8)
            target = torch.tensor(rng.integers(0, 2, batch), dtype=torch.float32)
            start = time.perf_counter()
            for _ in range(steps):
                images = torch.from_numpy(np.stack([augment_crop(c, rng) for c in crops]))
                loss = loss_fn(model(images)[0].view(-1), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            rates[size].append(batch * steps / (time.perf_counter() - start))
    medians = {size: statistics.median(values) for size, values in rates.items()}
    fastest = max(medians.values())
    return {
        "arch": "efficientnet-lite0",
        "batch": batch,
        "steps_per_round": steps,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "images_per_second": {str(s): round(v, 2) for s, v in medians.items()},
        "ratio_to_fastest": {str(s): round(v / fastest, 3) for s, v in medians.items()},
        "all_rounds": {str(s): [round(v, 2) for v in values] for s, values in rates.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Measure and write ``training_speed.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="128,160,224")
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--steps", type=positive_int, default=3)
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(s < 32 for s in sizes):
        parser.error("sizes must be >= 32 px")
    result = measure(sizes, args.batch, args.steps, args.rounds)
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / "training_speed.json"
    write_text_atomically(path, json.dumps(result, indent=1) + "\n")
    logger.info("%s: %s", path, result["images_per_second"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
