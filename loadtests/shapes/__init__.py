"""Load shapes (separate from user behaviour): pass one with `-f locustfile.py,shapes/NAME.py`.

Every shape reads Locust's own `--users`, `--spawn-rate` and `--run-time` (`use_common_options`),
so one command line drives any shape.
"""

from __future__ import annotations

from locust import LoadTestShape


class CommonOptionsShape(LoadTestShape):
    """Base: the peak users, spawn rate and total duration from the command line."""

    abstract = True
    use_common_options = True

    def settings(self) -> tuple[int, float, float]:
        opts = self.runner.environment.parsed_options  # type: ignore[union-attr]
        users = int(opts.num_users or 1)
        return users, float(opts.spawn_rate or users), float(opts.run_time or 30)
