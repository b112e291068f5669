"""Scale from zero without dropping a request: Knative's activator, inside the router.

A request for a revision with no ready replica (its service allows `minReplicas: 0`) is held here: the control
plane hears about the demand (`on_demand`, wired by whoever assembles the router — the router imports nothing
of the control plane), starts a replica, publishes a route table with its endpoint, and the held request goes
on at once. Past `timeout_s`, or when `max_queue` requests already wait for that revision: 503 + Retry-After;
past the request's own deadline (its route's `timeout_s`, counted from its arrival) first: 504, as when a model
answers too late. A service deleted while its requests wait: 404 at once. Held requests count as load (`RevisionLoad.held`), so the autoscaler sees them as concurrency.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from serving.autoscale.metrics import ScalingMetrics
from serving.client_gone import Watch, hung_up
from serving.errors import ClientGone, GatewayTimeout, ModelNotFound, ServiceUnavailable, scrubbed
from serving.router.load import RevisionLoad
from serving.router.table import Arm, RouteTable, ServiceRoute

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_QUEUE = 1000
RETRY_AFTER = {"Retry-After": "1"}
RECHECK_S = 0.25


class Activator:
    def __init__(
        self,
        load: RevisionLoad,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_queue: int = DEFAULT_MAX_QUEUE,
        metrics: ScalingMetrics | None = None,
    ) -> None:
        self.load = load
        self.timeout_s = timeout_s
        self.max_queue = max_queue
        self.metrics = metrics
        self.on_demand: Callable[[str, str], None] | None = None  # (namespace, revision): please start one
        # Whether any of these endpoints may be tried now (the router's: not marked down after a refused
        # connect); a held request goes on only to one that is.
        self.usable: Callable[[tuple[str, ...]], bool] = bool
        self._table = RouteTable()
        self._changed: asyncio.Event | None = None
        # (namespace, revision) -> the requests waiting for room under its containerConcurrency, in arrival order,
        # each woken by its own event: room that frees wakes the first in line, not all of them
        self._lines: dict[tuple[str, str], deque[asyncio.Event]] = {}

    def table_changed(self, table: RouteTable) -> None:
        """The router swapped its table: held requests look again for an endpoint."""
        self._table = table
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        for line in self._lines.values():
            for ticket in line:
                ticket.set()

    def capacity_freed(self, namespace: str, revision: str) -> None:
        """A request of this revision finished, or one left its line: the first in line looks again for room
        (if it goes, its leaving wakes the next)."""
        line = self._lines.get((namespace, revision))
        if line:
            line[0].set()

    async def hold(
        self,
        route: ServiceRoute,
        arm: Arm,
        deadline: float | None = None,
        counted: bool = False,
        client_gone: Watch | None = None,
    ) -> Arm:
        """Wait until `arm`'s revision has a ready endpoint with room; the arm to send to, or 503 with
        Retry-After.

        `deadline` (time.monotonic()) is the request's own, its route's timeout from its arrival: it waits until
        that or `timeout_s` from now, whichever comes first, and past the request's own deadline gets 504.
        Under a `containerConcurrency` (`route.replica_concurrency`) a request goes on only while the revision
        has fewer requests in flight than that per ready replica, so a burst that woke a revision from zero
        waits for room, or for more replicas, instead of overflowing the first one; while any waits, requests
        arriving later wait behind it (`queued`). `counted`: a request already in flight, sent again after its
        replica died: it had its room, and goes as soon as a replica is ready. `client_gone` (an HTTP request's
        ASGI `receive`, past its body): a client that hangs up while held leaves the line (ClientGone, 499)
        instead of being sent on for nobody, ahead of the clients still waiting."""
        key = (route.namespace, arm.revision)
        if self.load.held.get(key, 0) >= self.max_queue:
            raise ServiceUnavailable(
                f"revision {arm.revision} is scaling up from zero and {self.max_queue} requests "
                "already wait for it",
                headers=RETRY_AFTER,
            )
        started = time.monotonic()
        self._count(route, arm, +1)
        line = None if counted or not route.replica_concurrency else self._lines.setdefault(key, deque())
        ticket = asyncio.Event()
        if line is not None:
            line.append(ticket)
        watch = asyncio.ensure_future(client_gone()) if client_gone is not None else None
        try:
            return await self._wait(route, arm, started + self.timeout_s, deadline, line, ticket, watch)
        finally:
            if watch is not None:
                watch.cancel()
            self._count(route, arm, -1)
            if line is not None:
                line.remove(ticket)
                if not line:
                    del self._lines[key]
                self.capacity_freed(*key)  # the next in line may go
            if self.metrics is not None:
                self.metrics.wait.labels(route.name, arm.revision).observe(time.monotonic() - started)

    async def _wait(
        self,
        route: ServiceRoute,
        arm: Arm,
        held_until: float,
        deadline: float | None,
        line: deque[asyncio.Event] | None,
        ticket: asyncio.Event,
        watch: asyncio.Future[object] | None,
    ) -> Arm:
        own = deadline is not None and deadline <= held_until  # the request's own timeout ends the wait first
        until = deadline if own and deadline is not None else held_until
        if self.on_demand is not None:
            self.on_demand(route.namespace, arm.revision)
        known = False  # the service was in a table seen here (a router's always is: it resolved the request there)
        while True:
            fresh = self._ready_arm(route, arm.revision)
            if fresh is not None and (line is None or self._turn(route, fresh, line, ticket)):
                return fresh
            current = self._table.services.get((route.namespace, route.name))
            if current is None:
                if known:  # deleted meanwhile: what a request arriving now gets, not a wait for nothing
                    raise ModelNotFound(f"InferenceService {route.name!r} not found")
            elif current.failure:  # it failed meanwhile: waiting cannot help
                raise ServiceUnavailable(
                    f"InferenceService {route.name!r} has no ready revision: {scrubbed(current.failure)}",
                    headers={},
                )
            else:
                known = True
            remaining = until - time.monotonic()
            if remaining <= 0:
                if own:
                    raise timed_out(route, arm)
                why = (
                    "its first revision is still starting: fetching or loading its model"
                    if current is not None and current.starting
                    else "scaling up from zero, or its replicas restarting"
                )
                raise ServiceUnavailable(
                    f"revision {arm.revision} did not become ready within {self.timeout_s:g}s ({why})",
                    headers=RETRY_AFTER,
                )
            if line is not None:  # in line: woken by room, a new table, or a look again soon
                ticket.clear()
                event = ticket
            else:
                if self._changed is None:
                    self._changed = asyncio.Event()
                event = self._changed
            # a new table, or a look again soon (an endpoint marked down comes back without one), or the client
            # gone
            woken = asyncio.ensure_future(event.wait())
            await asyncio.wait(
                (woken,) if watch is None else (woken, watch),
                timeout=min(remaining, RECHECK_S),
                return_when=asyncio.FIRST_COMPLETED,
            )
            woken.cancel()
            if watch is not None and watch.done():
                if hung_up(watch):
                    raise ClientGone("the client left while its request was held for a replica")
                watch = None  # not a hang-up: the wait alone

    def _ready_arm(self, route: ServiceRoute, revision: str) -> Arm | None:
        """The revision's arm once it has endpoints; if a rollout moved traffic off it, any ready arm."""
        current = self._table.services.get((route.namespace, route.name))
        if current is None:
            return None
        same = [a for a in current.arms if a.revision == revision]
        if same:
            return same[0] if self.usable(same[0].endpoints) else None
        return next((a for a in current.arms if a.percent > 0 and self.usable(a.endpoints)), None)

    def _turn(self, route: ServiceRoute, arm: Arm, line: deque[asyncio.Event], ticket: asyncio.Event) -> bool:
        """Whether this request may go: the revision has room (fewer in flight than containerConcurrency per
        ready replica) for it and for everyone ahead of it in line (first come, first served)."""
        room = route.replica_concurrency * len(arm.endpoints)
        room -= self.load.in_flight.get((route.namespace, arm.revision), 0)
        return room > 0 and line.index(ticket) < room

    def queued(self, route: ServiceRoute, arm: Arm) -> bool:
        """Requests wait here for room on this revision: one arriving now waits behind them (first come, first
        served), not past them straight to a replica."""
        return (route.namespace, arm.revision) in self._lines

    def _count(self, route: ServiceRoute, arm: Arm, delta: int) -> None:
        key = (route.namespace, arm.revision)
        depth = self.load.held.get(key, 0) + delta
        self.load.held[key] = depth
        if self.metrics is not None:
            self.metrics.queue_depth.labels(route.name, arm.revision).set(depth)


def timed_out(route: ServiceRoute, arm: Arm) -> GatewayTimeout:
    """504: the request's own timeout (its InferenceService's) passed, waiting for a replica or for the answer."""
    return GatewayTimeout(f"revision {arm.revision} did not answer within {route.timeout_s:g}s")
