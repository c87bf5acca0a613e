"""The Kubernetes HorizontalPodAutoscaler's algorithm (autoscaling/v2), as the model runs it.

Every sync period the controller:

1. proposes ``ceil(current × metric / target)`` replicas, or keeps ``current`` when
   ``|metric / target − 1| <= tolerance``;
2. stabilises: scaling up goes to the *lowest* proposal of the scale-up window, scaling down to
   the *highest* proposal of the scale-down window (so a dip shorter than the window never
   removes replicas);
3. limits the rate: at most ``max(scale_up_pods, current × scale_up_percent %)`` more replicas
   per period (the default scale-down policy allows removing all of them);
4. clamps to ``[min_replicas, max_replicas]``.

Defaults are Kubernetes' own: sync 15 s, tolerance 0.1, scale-up window 0 s, scale-down window
300 s, scale-up by 4 pods or 100 % per 15 s. Each sync here is one policy period, so the rate
limit applies per sync.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class HpaBehavior:
    """The autoscaler's settings: the target, the tolerance, the windows and the rate policy."""

    target: float
    tolerance: float = 0.1
    sync_period_s: float = 15.0
    scale_up_window_s: float = 0.0
    scale_down_window_s: float = 300.0
    scale_up_pods: int = 4
    scale_up_percent: float = 100.0
    min_replicas: int = 1
    max_replicas: int = 10_000

    def __post_init__(self) -> None:
        """Refuse settings the HPA itself would refuse."""
        if self.target <= 0:
            raise ValueError(f"target must be > 0, got {self.target}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), got {self.tolerance}")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError("need 1 <= min_replicas <= max_replicas")
        if min(self.scale_up_window_s, self.scale_down_window_s) < 0 or self.sync_period_s <= 0:
            raise ValueError("windows must be >= 0 and the sync period > 0")


def proposal(current: int, metric: float, target: float, tolerance: float) -> int:
    """Return the HPA's raw proposal: ``ceil(current × metric / target)`` outside the tolerance.

    ``metric`` is the average per replica (an ``AverageValue`` target).
    """
    ratio = metric / target
    if abs(ratio - 1.0) <= tolerance:
        return current
    # the product of floats can land a hair above an integer (3 × 1.0000000001): not a new pod
    return math.ceil(current * ratio - 1e-9)


@dataclass
class Autoscaler:
    """One HPA: remembers its recent proposals for the stabilisation windows."""

    behavior: HpaBehavior
    _proposals: deque[tuple[float, int]] = field(default_factory=deque)

    def decide(self, now: float, current: int, metric: float) -> int:
        """Return the replica count the HPA sets at time ``now`` (seconds)."""
        b = self.behavior
        raw = proposal(current, metric, b.target, b.tolerance)
        self._proposals.append((now, raw))
        horizon = now - max(b.scale_up_window_s, b.scale_down_window_s)
        while self._proposals and self._proposals[0][0] < horizon:
            self._proposals.popleft()
        up = min(n for t, n in self._proposals if t >= now - b.scale_up_window_s)
        down = max(n for t, n in self._proposals if t >= now - b.scale_down_window_s)
        if current < up:
            desired = up
        elif current > down:
            desired = down
        else:
            desired = current
        if desired > current:
            step = max(b.scale_up_pods, math.ceil(current * b.scale_up_percent / 100.0))
            desired = min(desired, current + step)
        return max(b.min_replicas, min(b.max_replicas, desired))
