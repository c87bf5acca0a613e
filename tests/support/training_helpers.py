"""Helpers for the training tests: a CLI parser with the training subcommands, tree snapshots."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from fakescope.training.cli import add_training_parsers


def run_cli(argv: list[str]) -> int:
    """Run ``fakescope ARGV`` with a parser holding only the training subcommands.

    ``sys.argv`` is set as the console script would see it (runs record their command).
    """
    parser = argparse.ArgumentParser(prog="fakescope")
    sub = parser.add_subparsers(dest="command", required=True)
    add_training_parsers(sub)
    args = parser.parse_args(argv)
    saved = sys.argv
    sys.argv = ["fakescope", *argv]
    try:
        return int(args.func(args))
    finally:
        sys.argv = saved


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime (to prove nothing was written)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def tiny_video(path: Path, frames: int = 3, size: tuple[int, int] = (64, 48)) -> Path:
    """A real (decodable) MPEG-4 video of a few grey frames."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 60 + 20 * i, np.uint8))
    writer.release()
    return path


def write_metadata(root: Path, metadata: dict | str) -> None:
    """Write ``metadata.json`` (a dict, or raw text for malformed cases)."""
    text = metadata if isinstance(metadata, str) else json.dumps(metadata)
    (root / "metadata.json").write_text(text)
