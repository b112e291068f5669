"""Load shedding for models without a batcher: refuse early instead of queueing without bound.

A request is admitted while (a) fewer than `max_queue` requests of that model wait for a model thread and
(b) the wait it would see — queued requests × the model's recent service time ÷ threads — is within
`max_wait_s`. Otherwise it gets 503 with a `Retry-After` at once. So at several times the sustainable rate
the server answers every request quickly (a result or a 503), accepted requests keep a bounded latency,
and memory does not grow with the backlog. (A model with a batcher is bounded by its batch queue instead.)
"""

from __future__ import annotations

import math

from serving.errors import ServiceUnavailable

EWMA_WEIGHT = 0.2  # of the newest service time in the running estimate


class Admission:
    def __init__(self, max_queue: int, max_wait_s: float, threads: int) -> None:
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.threads = max(1, threads)
        self._active: dict[str, int] = {}
        self._service_s: dict[str, float] = {}

    def enter(self, model: str) -> None:
        active = self._active.get(model, 0)
        queued = active - self.threads + 1
        if queued > 0:
            wait_s = queued * self._service_s.get(model, 0.0) / self.threads
            if queued > self.max_queue or wait_s > self.max_wait_s:
                retry = max(1, math.ceil(wait_s))
                raise ServiceUnavailable(
                    f"model {model!r} is overloaded: {active} requests in flight, about {wait_s:.2f}s of queue; "
                    "retry later",
                    headers={"Retry-After": str(retry)},
                )
        self._active[model] = active + 1

    def leave(self, model: str, service_s: float | None) -> None:
        self._active[model] -= 1
        if service_s is not None:
            previous = self._service_s.get(model)
            self._service_s[model] = (
                service_s if previous is None else previous + EWMA_WEIGHT * (service_s - previous)
            )
