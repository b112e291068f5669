"""The router's direct lane: the common routed request answered from callbacks, without an ASGI app call or a task.

A POST under /v1/models/ or /v2/models/ reaches the router's protocol (serving/http/header_limit.py) parsed,
with its body, in a `LeanCycle`. When its service resolves, the chosen arm has a replica, and that replica has
an idle keep-alive connection, the request goes out on it at once; the answer is written to the client from the
connection's callback through the same cycle (status line, server headers, keep-alive, turn batching). What
the ASGI path (Observed -> Router) records is recorded the same way and by the same pieces: the request id (the
client's, or a new one, forwarded and echoed), `x-serving-revision`, the route metrics, the autoscaler's load,
the replica's outstanding count (drains wait for it), the access log line; errors are `error_answer`'s.

Anything else takes the ASGI path, with the arm already chosen (the balancer counts each request once): API
keys, tracing, payload logging, a mirror, an arm scaled to zero (the activator holds it), a body over the
limit, no idle connection, and a request whose connection failed before any answer (retried there, on a fresh
connection or another replica).

Why: the router's process cost ~95 µs of CPU per request against ~28 µs for a featureless Python router
(loadtests/raw_router.py); an ASGI call, its coroutines and the task each routed request needed (it always waits
for the upstream) were most of the difference.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from serving.errors import ServingError
from serving.http.errors import error_answer
from serving.http_client import UpstreamConnectError
from serving.observability import request_id, tracing
from serving.observability.access_log import AccessRecord
from serving.router.app import (
    CHOSEN_ARM,
    LANE_CLOSED,
    LANE_STARTED,
    REVISION_HEADER,
    TAG_HEADER,
    Router,
    header_value,
    host_name,
)
from serving.router.table import Arm, ServiceRoute
from serving.router.upstream import (
    HOP_BY_HOP,
    USUAL_CONNECTION,
    UpstreamResponse,
    connection_named,
    upstream_target,
)

if TYPE_CHECKING:
    from serving.http.lean_cycle import LeanCycle
    from serving.observability.asgi import Observed

_PREFIXES = ("/v1/models/", "/v2/models/")
_CONTENT_LENGTH = b"content-length"
_HOST = b"host"
_CONNECTION = b"connection"
_REQUEST_ID = request_id.HEADER


class RouterLane:
    """Offered by the router's app (`Observed.direct_lane`); the protocol calls `take` for each lean request."""

    def __init__(self, observed: Observed) -> None:
        self.observed = observed
        self.router = cast(Router, observed.app)

    def take(self, cycle: LeanCycle) -> bool:
        """Send the request on its way and answer it later from a callback; False: run the ASGI app instead."""
        scope = cycle.scope
        path: str = scope["path"]
        router = self.router
        if (
            not path.startswith(_PREFIXES)
            or "/." in path  # dot segments: the ASGI path says why they are refused
            or router.auth is not None
            or self.observed.payloads is not None
            or tracing.enabled()
        ):
            return False
        client_id = pin = None
        named: frozenset[bytes] = frozenset()
        host = b""
        length = 0
        forwarded = []
        headers = scope["headers"]
        for key, value in headers:  # one pass for everything the lane reads and forwards
            if key in HOP_BY_HOP:
                if key == _CONTENT_LENGTH:
                    length = int(value)
                elif key == _HOST and not host:  # the first, as the ASGI path reads it
                    host = value
                elif key == _CONNECTION and value not in USUAL_CONNECTION:
                    named |= connection_named(value)
            elif key == _REQUEST_ID:
                client_id = value
            else:
                if key == TAG_HEADER and pin is None:  # the first, as `header_value` reads it
                    pin = value.decode("latin-1")
                forwarded.append((key, value))
        if length > router.max_body_bytes:
            return False  # the ASGI path answers 413
        if named:  # headers the client's Connection names are hop-by-hop too
            forwarded = [(k, v) for k, v in forwarded if k not in named]
            pin = header_value(forwarded, TAG_HEADER)
        name = path[11:].split("/", 1)[0].split(":", 1)[0]  # len("/v1/models/") == len("/v2/models/")
        route = router.route_for(host_name(host) if host else "", name)
        if route is None or route.mirror is not None:
            return False
        affinity = header_value(headers, route.affinity_header.encode()) if route.affinity_header else None
        try:
            arm = router.choose(route, pin, affinity)
        except ServingError:
            return False  # no ready revision: the ASGI path says so (choosing failed: nothing was counted)
        if not arm.endpoints or (route.replica_concurrency and router.activator.queued(route, arm)):  # held
            scope[CHOSEN_ARM] = arm
            return False
        rid, _ = request_id.choose(client_id)
        forwarded.append((request_id.HEADER, rid.encode("ascii")))
        target = upstream_target(scope)
        exchange = _Exchange(self, cycle, route, arm, rid, length)
        abandon = router.upstreams.try_forward(
            arm.endpoints, "POST", target, forwarded, cycle.body, route.timeout_s, exchange.answered
        )
        if abandon is None:
            scope[CHOSEN_ARM] = arm
            return False
        cycle.on_gone = abandon  # the client gone: the replica sees it go too (a queued request leaves)
        router.request_started(route, arm)
        return True


class _Exchange:
    """One request in the lane, from sending it to its access log line."""

    __slots__ = ("lane", "cycle", "route", "arm", "request_id", "bytes_in", "started")

    def __init__(
        self, lane: RouterLane, cycle: LeanCycle, route: ServiceRoute, arm: Arm, rid: str, bytes_in: int
    ) -> None:
        self.lane, self.cycle, self.route, self.arm = lane, cycle, route, arm
        self.request_id, self.bytes_in = rid, bytes_in
        self.started = time.monotonic()

    def answered(self, outcome: UpstreamResponse | ServingError | UpstreamConnectError) -> None:
        try:
            self._answer(outcome)
        except Exception as exc:  # noqa: BLE001 - a bug here must not leave the client waiting: 500, logged
            if not self.cycle.response_started:
                self.cycle.finished(exc)
            else:  # half an answer out: only closing the connection tells the client it is over
                self.cycle.protocol.transport.close()

    def _answer(self, outcome: UpstreamResponse | ServingError | UpstreamConnectError) -> None:
        router, route, arm, cycle = self.lane.router, self.route, self.arm, self.cycle
        cycle.on_gone = None  # the exchange is over: its connection may already carry another
        if isinstance(outcome, UpstreamConnectError):
            # It reached no server that answered: the ASGI path retries it, on a fresh connection or another
            # replica, counting it again (so the counts are taken back here).
            router.request_withdrawn(route, arm)
            cycle.scope[CHOSEN_ARM] = arm
            cycle.scope[LANE_STARTED] = self.started  # the retry has what is left of the timeout
            if outcome.sent:  # counts against the request's retries, and the retry goes elsewhere first
                cycle.scope[LANE_CLOSED] = outcome.endpoint
            cycle.protocol.run_lean(cycle)
            return
        if isinstance(outcome, UpstreamResponse):
            status, headers, body = outcome.status, outcome.headers, outcome.body
            headers.append((REVISION_HEADER, arm.revision_header))
        else:
            outcome.headers = {**outcome.headers, "x-serving-revision": arm.revision}
            status, headers, body = error_answer(outcome, "POST", cycle.scope["path"])
        router.request_finished(route, arm, status, time.monotonic() - self.started)
        if not cycle.disconnected:
            for key, _ in headers:  # the model server echoes the id it was sent: else it is added here
                if key == _REQUEST_ID:
                    break
            else:
                headers.append((_REQUEST_ID, self.request_id.encode("ascii")))
            try:
                cycle.answer(status, headers, body, headers_checked=True)
            except RuntimeError as exc:  # a response the cycle refuses (its length): 500, as ASGI would
                cycle.finished(exc)
        self._log(status, len(body))

    def _log(self, status: int, bytes_out: int) -> None:
        observed: Any = self.lane.observed
        access = observed.access
        if access is None or not access.wants(status, self.request_id):
            return
        route, arm = self.route, self.arm
        access.write(
            AccessRecord(
                self.request_id,
                "POST",
                self.cycle.scope["path"],
                status,
                time.monotonic() - self.started,
                self.bytes_in,
                bytes_out,
                route.name,
                arm.revision,
                arm.role,
                observed.source.component,
            )
        )
