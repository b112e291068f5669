"""Load shedding for models without a batcher: refuse early instead of queueing without bound.

A request is admitted while (a) fewer than `max_queue` requests of that model wait for a model thread and
(b) the wait it would see — queued requests × the model's recent service time ÷ threads — is within
`max_wait_s`. Otherwise it gets 503 with a `Retry-After` at once. So at several times the sustainable rate
the server answers every request quickly (a result or a 503), accepted requests keep a bounded latency,
and memory does not grow with the backlog. (A model with a batcher is bounded by its batch queue instead.)

A model that has not answered yet (just loaded, woken from zero, restarted) has no service time to go by: its
first burst is admitted blind. Those of its requests still waiting for a thread when the first answer gives
the estimate are shed then, past the bound, with the same 503, rather than left to time out one by one.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import Future
from typing import Any

from serving.errors import ServiceUnavailable

EWMA_WEIGHT = 0.2  # of the newest service time in the running estimate
# A call counts at most this many times the running estimate: one that was frozen with its process (SIGSTOP, a
# long GC, a noisy neighbour) must not make the server shed a load it sustains; a model that really became
# slower still raises the estimate by up to 40 % per call
STALL_FACTOR = 3.0


class Admission:
    def __init__(self, max_queue: int, max_wait_s: float, threads: int) -> None:
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.threads = max(1, threads)
        self._active: dict[str, int] = {}
        self._service_s: dict[str, float] = {}
        # model -> its calls admitted blind that wait (in arrival order), until its first service time is known
        self._blind: dict[str, deque[Future[Any]]] = {}
        self.shed: set[Future[Any]] = set()  # calls taken out of the thread pool's queue by `_shed_blind`

    def enter(self, model: str) -> bool:
        """Admit a call (or raise 503); True when it was admitted blind and will wait: `waiting` its job."""
        active = self._active.get(model, 0)
        queued = active - self.threads + 1
        if queued > 0:
            known = self._service_s.get(model)
            wait_s = queued * (known or 0.0) / self.threads
            if queued > self.max_queue or wait_s > self.max_wait_s:
                raise _overloaded(model, active, wait_s)
            self._active[model] = active + 1
            return known is None
        self._active[model] = active + 1
        return False

    def waiting(self, model: str, job: Future[Any]) -> None:
        blind = self._blind.setdefault(model, deque())
        # calls that ended without a service time (they raised) are dropped before the line outgrows the queue
        if len(blind) > 2 * (self.max_queue + self.threads):
            self._blind[model] = blind = deque(j for j in blind if not j.done())
        blind.append(job)

    def leave(self, model: str, service_s: float | None) -> None:
        self._active[model] -= 1
        if service_s is not None:
            previous = self._service_s.get(model)
            self._service_s[model] = (
                service_s
                if previous is None
                else previous + EWMA_WEIGHT * (min(service_s, STALL_FACTOR * previous) - previous)
            )
            if previous is None:
                self._shed_blind(model, service_s)

    def _shed_blind(self, model: str, service_s: float) -> None:
        """The first service time is in: of the calls admitted blind, those still queued past the wait bound are
        cancelled in the pool's queue (their callers answer 503, as `enter` would have)."""
        blind = self._blind.pop(model, None)
        if not blind:
            return
        allowed = math.floor(self.max_wait_s * self.threads / service_s) if service_s > 0 else len(blind)
        queued = 0
        for job in blind:
            if job.done() or job.running():
                continue
            queued += 1
            if queued > allowed and job.cancel():
                self.shed.add(job)

    def refusal(self, model: str) -> ServiceUnavailable:
        """What a call shed from the queue answers (its caller found its job in `shed`)."""
        active = self._active.get(model, 0)
        queued = max(0, active - self.threads)
        return _overloaded(model, active, queued * self._service_s.get(model, 0.0) / self.threads)


def _overloaded(model: str, active: int, wait_s: float) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"model {model!r} is overloaded: {active} requests in flight, about {wait_s:.2f}s of queue; retry later",
        headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
    )
