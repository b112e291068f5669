"""Constant load: ramp to `--users` at `--spawn-rate`, hold until `--run-time`."""

from __future__ import annotations

from loadtests.shapes import CommonOptionsShape


class ConstantShape(CommonOptionsShape):
    def tick(self) -> tuple[int, float] | None:
        users, rate, duration_s = self.settings()
        return (users, rate) if self.get_run_time() < duration_s else None
