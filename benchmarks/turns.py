"""Which of two compared paths runs first in a turn, so that neither always pays for its place.

Two things timed one after the other on one machine are not timed alike: the first of a turn
runs straight after whatever ran before it (another path, a PyTorch baseline, a pause), the
second straight after the first. ``fakescope bench`` (its served path against the same steps
in-process) and the side-by-side benchmarks (two servers) let the two lead in turn.
"""

from __future__ import annotations

from collections import Counter


class PairLeads:
    """Which of two compared paths runs first in a video's turn, balanced over what ran before.

    A turn's first path runs straight after whatever ran last: in rounds with the baselines, a
    PyTorch baseline, after which the next path was slower. For each video and each path that
    ran just before its turn, the two lead in turn, so neither always pays for it.
    """

    def __init__(self, pair: tuple[str, str]) -> None:
        self.pair = pair
        self._led: Counter[tuple[str, str | None, str]] = Counter()

    def order(self, names: list[str], video: str, previous: str | None) -> list[str]:
        """Return ``names`` with the pair in the order this turn runs them (and count it)."""
        first, second = self.pair
        led = self._led
        lead = first if led[video, previous, first] <= led[video, previous, second] else second
        led[video, previous, lead] += 1
        if lead == first:
            return list(names)
        order = list(names)
        i, j = order.index(first), order.index(second)
        order[i], order[j] = second, first
        return order
