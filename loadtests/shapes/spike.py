"""Spike: a baseline of a fifth of `--users`, all `--users` for the middle fifth, then the baseline again.

Shows whether latency recovers after a burst (queues drain) and whether the burst causes failures.
"""

from __future__ import annotations

from loadtests.shapes import CommonOptionsShape

BASELINE_FRACTION = 0.2
SPIKE_START, SPIKE_END = 0.4, 0.6  # fractions of --run-time


class SpikeShape(CommonOptionsShape):
    def tick(self) -> tuple[int, float] | None:
        users, rate, duration_s = self.settings()
        elapsed = self.get_run_time()
        if elapsed >= duration_s:
            return None
        in_spike = SPIKE_START * duration_s <= elapsed < SPIKE_END * duration_s
        baseline = max(1, round(users * BASELINE_FRACTION))
        # Spawn the spike at once (a spike is sudden); ramp the baseline at the given rate.
        return (users, max(rate, float(users))) if in_spike else (baseline, max(rate, float(users)))
