"""`--max-concurrency` (KServe's `containerConcurrency`): a hard limit on a model's requests in flight, with the
surplus queued in arrival order, as Knative's queue-proxy buffers it, not refused.

A request over the limit waits for a slot within its own deadline (the data plane's request timeout: 504 when
it passes while waiting). The queue holds at most `QUEUE_PER_SLOT` requests per slot, Knative's breaker depth;
past that the request is shed at once with 503 + Retry-After. A finished request hands its slot straight to the
oldest waiter, so a newcomer never overtakes the queue.
"""

from __future__ import annotations

import asyncio
from collections import deque

from serving.errors import ServiceUnavailable

QUEUE_PER_SLOT = 10


class ModelSlots:
    """In-flight counts and waiters per model name; one event loop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight: dict[str, int] = {}
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def try_take(self, name: str) -> bool:
        """A slot now, if one is free and nobody is queued for it."""
        count = self.in_flight.get(name, 0)
        if self.limit and (count >= self.limit or self._waiters.get(name)):
            return False
        self.in_flight[name] = count + 1
        return True

    def join(self, name: str) -> asyncio.Future[None]:
        """A place in the queue now, not when a task gets round to it (a slot freed from here on reaches it):
        the future resolves when the slot is handed over. A waiter that gives up (the deadline, a client gone)
        calls `leave`."""
        queue = self._waiters.setdefault(name, deque())
        live = sum(1 for w in queue if not w.done()) if len(queue) >= self.limit * QUEUE_PER_SLOT else 0
        if live >= self.limit * QUEUE_PER_SLOT:
            raise ServiceUnavailable(
                f"model {name!r} is at its concurrency limit of {self.limit} with {live} requests queued"
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        return waiter

    def leave(self, name: str, waiter: asyncio.Future[None]) -> None:
        """Stop waiting on `waiter`: out of the queue, or the slot it was handed at that moment passed on."""
        if waiter.done() and not waiter.cancelled():
            self.release(name)
        else:
            waiter.cancel()

    def release(self, name: str) -> None:
        queue = self._waiters.get(name)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to it: in_flight stays
                return
        self.in_flight[name] -= 1
