"""Command-line value types every FakeScope command shares (argparse ``type=`` callables).

Each refuses a value that would make the command do something else than asked (a count of 0,
a port out of range, an empty list) with argparse's usage error (exit 2) naming the option,
before any work starts, instead of failing late or falling back to a default.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from fakescope import contract

__all__ = [
    "comma_separated_choices",
    "existing_file",
    "fraction",
    "frame_count",
    "ipv4_address",
    "non_negative_int",
    "non_negative_number",
    "port",
    "positive_int",
    "positive_ints",
    "positive_number",
    "probability",
]

#: The largest TCP port.
MAX_PORT = 65535


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """Parse an option that counts something (``--jobs``, ``--users``, rounds): >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """Parse a count that may be none (``--sbi-per-real 0``): >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def frame_count(text: str) -> int:
    """Parse a number of frames sampled per video: 1..``MAX_FRAMES_PER_REQUEST``."""
    limit = contract.MAX_FRAMES_PER_REQUEST
    value = _integer(text)
    if not 1 <= value <= limit:
        raise argparse.ArgumentTypeError(f"must be 1..{limit}, got {value}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_number(text: str) -> float:
    """Parse a finite number > 0 (seconds, a ratio limit)."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_number(text: str) -> float:
    """Parse a finite number >= 0 (seconds where 0 means not at all)."""
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def probability(text: str) -> float:
    """Parse a probability or a share that may be all (a threshold, a rate): in [0, 1]."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def fraction(text: str) -> float:
    """Parse the share of a set held out (a validation split): in [0, 1)."""
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def port(text: str) -> int:
    """Parse a TCP port to listen on or connect to: 1..65535."""
    value = _integer(text)
    if not 1 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"must be a port, 1..{MAX_PORT}, got {value}")
    return value


def ipv4_address(text: str) -> str:
    """Parse the IPv4 address a server binds (``127.0.0.1``; ``0.0.0.0`` for every interface).

    tritonserver binds what it is given as a dotted IPv4 address: a host name such as
    ``localhost`` made it listen on 255.255.255.255, so that it never became ready.
    """
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an IPv4 address (127.0.0.1, or 0.0.0.0 for every interface), got {text!r}"
        ) from None


def positive_ints(text: str) -> list[int]:
    """Parse a comma-separated, non-empty list of counts (``--users 1,2,4,8``)."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError("expected one or more counts, comma-separated")
    return [positive_int(item) for item in items]


def comma_separated_choices(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """Return a type that parses a comma-separated, non-empty list of ``choices``."""

    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",")]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"expected one or more of {', '.join(choices)}, comma-separated, got {text!r}"
            )
        return items

    return parse


def existing_file(text: str) -> Path:
    """Parse the path of a file the command reads (a checkpoint, a video): it must be one."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path
