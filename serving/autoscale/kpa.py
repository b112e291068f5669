"""Knative's Pod Autoscaler rule, as a pure function of what was observed and the knobs.

desired = ceil(observed / (target x utilization)), observed averaged over the stable window; a shorter panic
window reacts to bursts (and never scales down while panicking); scale-down waits `scale_down_delay_s`; one
decision never grows the count by more than `max_scale_up_rate` x ready or shrinks it below
ready / `max_scale_down_rate`. Time is a number the caller passes (monotonic seconds), so tests drive it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from serving.autoscale.knobs import Knobs


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of the scale metric summed over the revision's replicas (in-flight requests, or req/s)."""

    time_s: float
    value: float


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int
    panic: bool
    stable_value: float  # the metric averaged over the stable window
    panic_value: float  # ... and over the panic window
    reason: str


def window_average(samples: Iterable[Sample], now_s: float, window_s: float) -> float:
    """Mean of the samples inside (now - window, now]; no sample counts as zero load."""
    inside = [s.value for s in samples if now_s - window_s < s.time_s <= now_s]
    return sum(inside) / len(inside) if inside else 0.0


@dataclass
class KPA:
    """Keeps the little state the rule needs between decisions: panic start and recent desired counts."""

    knobs: Knobs
    panic_since_s: float | None = None
    max_panic_replicas: int = 0
    _recent: deque[tuple[float, int]] = field(default_factory=deque)
    last_traffic_s: float | None = None  # set to the creation time by the caller: a new revision is not idle

    def decide(self, samples: Iterable[Sample], ready: int, now_s: float) -> Decision:
        knobs = self.knobs
        samples = list(samples)
        stable = window_average(samples, now_s, knobs.stable_window_s)
        panic = window_average(samples, now_s, knobs.panic_window_s)
        if any(s.value > 0 for s in samples if s.time_s > now_s - knobs.stable_window_s):
            self.last_traffic_s = now_s
        per_replica = knobs.target * knobs.utilization
        base = max(ready, 1)
        up_bound = math.ceil(knobs.max_scale_up_rate * base)
        down_bound = math.floor(base / knobs.max_scale_down_rate) if ready else 0
        raw_stable, raw_panic = math.ceil(stable / per_replica), math.ceil(panic / per_replica)
        want_stable = self._activated(raw_stable, _clamp(raw_stable, down_bound, up_bound))
        want_panic = self._activated(raw_panic, _clamp(raw_panic, down_bound, up_bound))
        over_threshold = (panic / per_replica) / base >= knobs.panic_threshold
        self._update_panic(over_threshold, now_s)
        desired, reason = want_stable, f"stable average {stable:.2f} / target {per_replica:.2f}"
        if self.panic_since_s is not None:
            desired = max(want_panic, self.max_panic_replicas, ready)
            self.max_panic_replicas = desired
            reason = f"panic: {panic:.2f} over {knobs.panic_window_s:g}s / target {per_replica:.2f}"
        desired = self._delay_scale_down(desired, now_s)
        desired = self._bounded(desired, now_s)
        return Decision(desired, self.panic_since_s is not None, stable, panic, reason)

    def _activated(self, raw: int, wanted: int) -> int:
        """Knative's activation-scale: with any demand (raw > 0), at least that many; none still goes to zero."""
        scale = self.knobs.activation_scale
        if scale > 1 and raw > 0:
            wanted = max(wanted, min(scale, self.knobs.max_replicas or scale))
        return wanted

    def _update_panic(self, over_threshold: bool, now_s: float) -> None:
        if over_threshold:
            self.panic_since_s = now_s
        elif self.panic_since_s is not None and now_s - self.panic_since_s >= self.knobs.stable_window_s:
            self.panic_since_s = None
            self.max_panic_replicas = 0

    def _delay_scale_down(self, desired: int, now_s: float) -> int:
        """The largest count wanted during the last `scale_down_delay_s`: brief dips do not shed replicas."""
        delay = self.knobs.scale_down_delay_s
        if delay <= 0:
            return desired
        self._recent.append((now_s, desired))
        while self._recent and self._recent[0][0] <= now_s - delay:
            self._recent.popleft()
        return max(count for _, count in self._recent)

    def _bounded(self, desired: int, now_s: float) -> int:
        """min/max replicas; zero only when allowed and idle for the stable window plus the retention period."""
        knobs = self.knobs
        upper = knobs.max_replicas or desired
        desired = min(desired, upper)
        if desired > 0:
            return max(desired, knobs.min_replicas)
        if knobs.min_replicas > 0:
            return knobs.min_replicas
        idle_since = self.last_traffic_s
        idle_for = math.inf if idle_since is None else now_s - idle_since
        if idle_for >= knobs.scale_to_zero_retention_s:
            return 0
        return 1


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))
