"""Step ramp (find the knee): `STEPS` equal steps up to `--users` over `--run-time`.

Throughput that stops rising while latency climbs between two steps marks the knee; the chart of
`serving loadtest --shape step` shows it.
"""

from __future__ import annotations

import math

from loadtests.shapes import CommonOptionsShape

STEPS = 5


class StepShape(CommonOptionsShape):
    def tick(self) -> tuple[int, float] | None:
        users, rate, duration_s = self.settings()
        elapsed = self.get_run_time()
        if elapsed >= duration_s:
            return None
        step = min(STEPS - 1, int(elapsed / (duration_s / STEPS)))
        return max(1, math.ceil(users * (step + 1) / STEPS)), rate
