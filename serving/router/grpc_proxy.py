"""The router's gRPC front: `inference.GRPCInferenceService` proxied by model name over the same RouteTable.

Same decisions as the HTTP router (one `Router` object: its table, balancer, API keys and metrics), bytes
forwarded untouched: only field 1 of the request (`model_name` / `name`) is read, with a wire-format scan,
never a full parse. The arm's revision goes back in the initial metadata (`x-serving-revision`), or in the
trailing metadata of an error. Server-level RPCs are answered here; the repository extension is the model
server's own (UNIMPLEMENTED here, like Triton behind a load balancer). `grpc.health.v1` Check follows the
router's readiness.

Choosing: metadata `x-serving-namespace` (else `default`; grpcio's server does not show handlers the
call's `:authority`, so the HTTP router's Host-based choice has no gRPC twin), `x-serving-tag` pins an arm
by tag or revision name, `authorization`/`x-api-key` as on HTTP.
Where the route table gives an arm no gRPC endpoints, each replica is asked for its gRPC port once
(`GET /serving/grpc-port`); an arm without any (a transformer in front of its predictor speaks REST only)
is UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import grpc
import orjson
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

import serving
from serving.errors import UNSERVED_EXTENSIONS, ServiceUnavailable, ServingError
from serving.grpc import messages as pb
from serving.grpc import wire
from serving.grpc.lifespan import GRPC_PORT_PATH
from serving.grpc.server import server_options
from serving.grpc.service import Context, Handler, in_server_span, stream_infer_refused, unserved
from serving.grpc.status import bounded, grpc_code, http_status, trailing_metadata
from serving.observability import tracing
from serving.observability.grpc_calls import CLIENT_GONE, REQUEST_ID_KEY
from serving.router.activator import timed_out
from serving.router.app import Router
from serving.router.table import Arm, ServiceRoute
from serving.router.upstream import DOWN_FOR_S, MAX_CLOSED_DELIVERIES

log = logging.getLogger("serving.router.grpc")
PROXIED = ("ModelInfer", "ModelReady", "ModelMetadata", "ModelConfig")
# What the router serves over gRPC (ModelConfig is Triton's `model_configuration`; the repository is not routed)
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration"]
REVISION_KEY = "x-serving-revision"
# RPCs the router does not answer, each said by name (grpcio alone would say "Method not found!"): the repository
# is each model server's own, and Triton's other extensions are served nowhere here
NOT_ROUTED = (
    *(
        (
            method,
            f"{method} (the repository extension) is not routed: call it on a model server's own gRPC port",
        )
        for method in ("RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")
    ),
    *(
        (method, f"Triton's {name} extension ({method}) is not served here")
        for _, methods, name in UNSERVED_EXTENSIONS
        for method in methods
    ),
)


class RouterHealth(health_pb2_grpc.HealthServicer):
    """`grpc.health.v1` (Kubernetes' gRPC probes): SERVING when the router is ready (`ServerReady`), for the
    server ("") and the inference service alike; Watch is not offered."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def Check(self, request: Any, context: Context) -> Any:  # noqa: N802 - the RPC's name
        if request.service not in (health.OVERALL_HEALTH, pb.SERVICE):
            await context.abort(grpc.StatusCode.NOT_FOUND, bounded(f"unknown service {request.service!r}"))
        serving_now = self.router.ready_check()
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving_now
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        return health_pb2.HealthCheckResponse(status=status)


def field_one(message: bytes) -> str:
    """`model_name` of a ModelInferRequest, `name` of ModelReady/ModelMetadata/ModelConfigRequest: field 1 in
    all four."""
    return wire.last_string(message, 1)


class GrpcProxy:
    def __init__(self, router: Router, max_message_bytes: int = 64 * 1024 * 1024) -> None:
        self.router = router
        self.max_message_bytes = max_message_bytes
        self.server: grpc.aio.Server | None = None
        self.bound_port = 0
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._calls: dict[tuple[str, str], grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = {}
        self._turns = itertools.count()
        self._discovered: dict[str, str] = {}  # replica base URL -> its gRPC 'host:port' ('' = none)
        self._outstanding: dict[str, int] = {}  # gRPC target -> calls in flight to it

    async def start(self, host: str, port: int) -> int:
        self.server = grpc.aio.server(options=server_options(self.max_message_bytes))
        handlers = {
            name: self._local_handler(name) for name in ("ServerLive", "ServerReady", "ServerMetadata")
        }
        handlers.update({name: self._proxy_handler(name) for name in PROXIED})
        # grpcio alone would say "Method not found!"
        handlers.update({method: unserved(message) for method, message in NOT_ROUTED})
        handlers["ModelStreamInfer"] = stream_infer_refused()
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(pb.SERVICE, handlers),))
        health_pb2_grpc.add_HealthServicer_to_server(RouterHealth(self.router), self.server)
        address = f"[{host}]" if ":" in host else host
        self.bound_port = self.server.add_insecure_port(f"{address}:{port}")
        await self.server.start()
        log.info("router gRPC (Open Inference Protocol) listening on %s:%d", host, self.bound_port)
        return self.bound_port

    async def stop(self, grace_s: float = 10.0) -> None:
        """Refuse new calls, let calls in flight finish, then close upstream channels."""
        if self.server is not None:
            await self.server.stop(grace_s)
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._calls.clear()

    def _local_handler(self, method: str) -> Handler:
        async def answer(raw: bytes, context: Context) -> bytes:
            if method == "ServerLive":
                reply = pb.ServerLiveResponse(live=True)
            elif method == "ServerReady":
                reply = pb.ServerReadyResponse(ready=self.router.ready_check())
            else:
                reply = pb.ServerMetadataResponse(
                    name="serving-router", version=serving.__version__, extensions=EXTENSIONS
                )
            serialised: bytes = reply.SerializeToString()
            return serialised

        return grpc.unary_unary_rpc_method_handler(answer)

    def _proxy_handler(self, method: str) -> Handler:
        async def traced(raw: bytes, context: Context) -> bytes:
            answer: bytes = await in_server_span(method, raw, context, proxy)
            return answer

        async def proxy(raw: bytes, context: Context) -> bytes:
            calls = self.router.grpc_calls if method == "ModelInfer" else None
            if calls is None:
                return await self._proxy(method, raw, context, _Outcome())
            call = calls.begin(context.invocation_metadata() or (), len(raw))
            outcome, answer = _Outcome(request_id=call.request_id), b""
            try:
                answer = await self._proxy(method, raw, context, outcome)
                return answer
            except asyncio.CancelledError:
                outcome.status = CLIENT_GONE
                raise
            finally:
                calls.finish(
                    call,
                    outcome.status,
                    len(answer),
                    outcome.model,
                    outcome.revision,
                    outcome.arm,
                    outcome.isvc,
                )

        return grpc.unary_unary_rpc_method_handler(traced if tracing.enabled() else proxy)

    async def _proxy(self, method: str, raw: bytes, context: Context, outcome: _Outcome) -> bytes:
        """Route, hold and forward one call; `outcome` says how it ended (for its access line)."""
        metadata = tuple((k, v) for k, v in context.invocation_metadata() or () if isinstance(v, str))
        if tracing.enabled():  # the replica's span is a child of this call's, as over HTTP
            metadata = tuple((k, v) for k, v in metadata if k not in _TRACE_KEYS) + tuple(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in tracing.outgoing_headers()
            )
        try:
            name = outcome.model = field_one(raw)
        except (ValueError, UnicodeDecodeError):
            outcome.status = 400
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {method}Request message"
            )
        arrived = time.monotonic()
        try:
            route, arm = self._route(name, dict(metadata))
            outcome.isvc = route.name
            if method == "ModelReady" and route.starting and not arm.endpoints:
                raise ServiceUnavailable("its first revision is loading")  # answered, not held
            # scaled to zero, or others wait for room: held by the router's activator, as over HTTP
            if not arm.endpoints or self.router.activator.queued(route, arm):
                arm = await self.router.activator.hold(route, arm, arrived + route.timeout_s)
        except ServingError as exc:
            if method == "ModelReady" and isinstance(exc, ServiceUnavailable):
                # readiness is an answer, as the model server's own: false
                not_ready: bytes = pb.ModelReadyResponse(ready=False).SerializeToString()
                return not_ready
            outcome.status = exc.status_code
            await context.abort(
                grpc_code(exc.status_code),
                bounded(exc.message),
                trailing_metadata(exc) + outcome.id_metadata(),
            )
        outcome.revision, outcome.arm = arm.revision, arm.role
        return await self._forward(method, raw, metadata, route, arm, context, arrived, outcome)

    def _route(self, name: str, metadata: dict[str, str]) -> tuple[ServiceRoute, Arm]:
        """Resolve the InferenceService, check the key, pick the arm (no await: the split stays exact)."""
        namespace = metadata.get("x-serving-namespace", "default")
        route = self.router.table.services.get((namespace, name))
        if route is None:  # over gRPC the namespace is chosen by metadata, not by Host
            raise self.router.unknown_service(
                name, namespace, elsewhere_hint="send metadata x-serving-namespace: {namespace}"
            )
        if self.router.auth is not None:
            self.router.auth.check(route.namespace, [(k.encode(), v.encode()) for k, v in metadata.items()])
        return route, self.router.choose(route, metadata.get("x-serving-tag"))

    async def _forward(
        self,
        method: str,
        raw: bytes,
        metadata: tuple[tuple[str, str], ...],
        route: ServiceRoute,
        arm: Arm,
        context: Context,
        arrived: float,
        outcome: _Outcome,
    ) -> bytes:
        # In flight from here, before any await: a request let go by the activator counts against the arm's
        # containerConcurrency at once, so the next in line does not see room that is already taken.
        started, code = time.monotonic(), 500
        self.router.request_started(route, arm)
        outcome.sent_to = arm
        try:
            try:
                result, route_timeout = await self._send(
                    method, raw, metadata, route, context, arrived, outcome
                )
            except ServingError as exc:
                code = exc.status_code
                trailing = tuple(trailing_metadata(exc)) + outcome.trailer()
                await context.abort(grpc_code(exc.status_code), bounded(exc.message), trailing)
            arm = outcome.sent_to
            if isinstance(result, grpc.aio.AioRpcError):
                code = http_status(result.code())
                if result.code() == grpc.StatusCode.DEADLINE_EXCEEDED and not route_timeout:
                    code = CLIENT_GONE  # the client's own deadline passed: it left, as over HTTP
                # the replica's own id is the router's (sent on): once is enough
                theirs = tuple((k, v) for k, v in result.trailing_metadata() or () if k != REQUEST_ID_KEY)
                details = _clearer(result, route, arm, route_timeout)
                await context.abort(result.code(), details, theirs + outcome.trailer())
            code = 200
            await context.send_initial_metadata(((REVISION_KEY, arm.revision),))
            if outcome.request_id:
                context.set_trailing_metadata(outcome.id_metadata())
            return result
        except asyncio.CancelledError:  # the client cancelled, or its deadline passed: it left
            code = CLIENT_GONE
            raise
        finally:
            outcome.status = code
            self.router.request_finished(route, outcome.sent_to, code, time.monotonic() - started)

    async def _send(
        self,
        method: str,
        raw: bytes,
        metadata: tuple[tuple[str, str], ...],
        route: ServiceRoute,
        context: Context,
        arrived: float,
        outcome: _Outcome,
    ) -> tuple[bytes | grpc.aio.AioRpcError, bool]:
        """The upstream's answer (or its error) for the call, and whether its timeout was the route's. A call
        that reached no replica (they are restarting: a crash, kill -9) waits in the activator for one and goes
        again, within what is left of its timeout, as over HTTP; `outcome.sent_to` follows the arm."""
        arm = outcome.sent_to
        dropped = _KEYS_AND_ID if outcome.request_id else _KEYS
        # the id the router chose goes on: the replica logs the same one
        forwarded = (
            tuple((k, v) for k, v in metadata if not k.startswith(":") and k not in dropped)
            + outcome.id_metadata()
        )
        closed = 0
        while True:
            try:
                targets = await self._grpc_targets(route, arm)
                timeout, route_timeout = self._time_left(route, arm, arrived, context)
                return await self._call_arm(method, raw, forwarded, targets, timeout, closed), route_timeout
            except _Unreached as unreached:
                if not route.activator:
                    raise unreached.error() from None
                closed = unreached.closed
            # a replica the table still lists that refuses again (its replacement not published yet) is marked
            # down, so the next hold waits for it; the hold and the route's timeout bound the whole
            fresh = await self.router.activator.hold(route, arm, arrived + route.timeout_s, counted=True)
            if fresh is not arm:  # counted on the arm it goes to
                self.router.request_withdrawn(route, arm)
                outcome.sent_to = arm = fresh
                outcome.revision, outcome.arm = arm.revision, arm.role
                self.router.request_started(route, arm)

    @staticmethod
    def _time_left(route: ServiceRoute, arm: Arm, arrived: float, context: Context) -> tuple[float, bool]:
        """The call's timeout from now: what is left of its route's (a hold in the activator counted) or of the
        client's deadline, whichever ends first; and whether it is the route's. None left of the route's: a
        504, as over HTTP, without calling the replica."""
        left = route.timeout_s - (time.monotonic() - arrived)
        if left <= 0:
            raise timed_out(route, arm)
        remaining = context.time_remaining()
        if remaining is None or left <= remaining:
            return left, True
        return remaining, False

    async def _grpc_targets(self, route: ServiceRoute, arm: Arm) -> tuple[tuple[str, str], ...]:
        """The arm's (replica, gRPC target) pairs: targets from the route table, else asked once of each replica
        (`GET /serving/grpc-port`, answered by `serving serve --grpc-port`); a replica without gRPC (a
        transformer) stays REST only. The replica (its base URL) is what the router marks down when its target
        cannot be reached, so that HTTP requests and the activator skip it too. Replicas that could not be
        asked, and none found: _Unreached (they are restarting), not REST only."""
        if arm.grpc_endpoints:
            if len(arm.grpc_endpoints) == len(arm.endpoints):
                return tuple(zip(arm.endpoints, arm.grpc_endpoints, strict=True))
            return tuple((target, target) for target in arm.grpc_endpoints)
        found = []
        unasked = False
        for endpoint in arm.endpoints:
            target = self._discovered.get(endpoint)
            if target is None:
                target = await self._ask_grpc_port(endpoint)
                if target is not None:
                    self._discovered[endpoint] = target
                else:
                    unasked = True
            if target:
                found.append((endpoint, target))
        if not found and unasked:
            raise _Unreached(None, 0)
        if not found:
            raise _RestOnly(
                f"revision {arm.revision!r} of {route.name!r} serves "
                "REST only (a transformer in front of its predictor, or no gRPC port)"
            )
        return tuple(found)

    async def _ask_grpc_port(self, endpoint: str) -> str | None:
        """'host:port', '' for a replica without gRPC, None when it could not be asked (ask again next time)."""
        try:
            _, response = await self.router.upstreams.forward(
                (endpoint,), "GET", GRPC_PORT_PATH, [], b"", 5.0
            )
        except ServingError:
            return None
        if response.status == 503:  # listener not started yet
            return None
        if response.status != 200:  # 404 from a transformer or a predictor started without --grpc-port
            return ""
        return f"{urlsplit(endpoint).hostname}:{int(orjson.loads(response.body)['port'])}"

    async def _call_arm(
        self,
        method: str,
        raw: bytes,
        metadata: tuple[tuple[str, str], ...],
        targets: tuple[tuple[str, str], ...],
        timeout: float,
        closed: int = 0,
    ) -> bytes | grpc.aio.AioRpcError:
        """Try the arm's replicas in turn, past those marked down; move on only when one cannot be reached (no
        Retry-After), marking it down as the HTTP path does. A call whose stream was cut after it was sent
        counts as HTTP's closed deliveries do: after MAX_CLOSED_DELIVERIES it is not sent again
        (ServiceUnavailable), so a request that crashes replicas reaches two, not every one. None reached:
        _Unreached, for the activator to hold it until a replica is back."""
        first = next(self._turns)
        failure: grpc.aio.AioRpcError | None = None
        busy = self._outstanding
        down = self.router.upstreams.down_until
        now = time.monotonic()
        # the least busy first (as the HTTP pool chooses), ties taken in turn
        rotation = [targets[(first + i) % len(targets)] for i in range(len(targets))]
        usable = [pair for pair in rotation if down.get(pair[0], 0.0) <= now]
        for replica, target in sorted(usable, key=lambda pair: busy.get(pair[1], 0)):
            call = self._callable(target, method)
            busy[target] = busy.get(target, 0) + 1
            try:
                response: bytes = await call(raw, metadata=metadata, timeout=timeout)
                return response
            except grpc.aio.AioRpcError as exc:
                failure = exc
                if exc.code() != grpc.StatusCode.UNAVAILABLE or _has_retry_after(exc):
                    return exc
                self._discovered = {e: t for e, t in self._discovered.items() if t != target}  # restarted?
                down[replica] = time.monotonic() + DOWN_FOR_S
                if not _never_sent(exc):
                    closed += 1
                    if closed >= MAX_CLOSED_DELIVERIES:
                        raise ServiceUnavailable(
                            f"the model server closed the stream without an answer, {closed} times: the "
                            "request is not sent again (it may be what makes replicas fail)"
                        ) from exc
            finally:
                left = busy[target] - 1
                if left:
                    busy[target] = left
                else:
                    del busy[target]  # (a replaced replica's target is not kept)
        raise _Unreached(failure, closed)

    def _callable(self, endpoint: str, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        """One pooled channel per endpoint (HTTP/2 multiplexes every call over it), one callable per method."""
        call = self._calls.get((endpoint, method))
        if call is None:
            channel = self._channels.get(endpoint)
            if channel is None:
                options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
                channel = self._channels[endpoint] = grpc.aio.insecure_channel(endpoint, options=options)
            call = self._calls[(endpoint, method)] = channel.unary_unary(f"/{pb.SERVICE}/{method}")
        return call


_TRACE_KEYS = ("traceparent", "tracestate")
_KEYS = ("authorization", "x-api-key")  # the router's API key: not the replica's business
_KEYS_AND_ID = (*_KEYS, REQUEST_ID_KEY)  # and the client's id, when the router sends the one it chose


class _RestOnly(ServingError):
    status_code = 501  # UNIMPLEMENTED


class _Unreached(Exception):
    """No replica of the arm took the call: each refused it, cut its stream before an answer (`closed` of
    those so far), is marked down, or could not be asked for its gRPC port."""

    def __init__(self, failure: grpc.aio.AioRpcError | None, closed: int) -> None:
        super().__init__()
        self.failure = failure
        self.closed = closed

    def error(self) -> ServiceUnavailable:
        """The 503 (UNAVAILABLE) the client gets when the call cannot wait for a replica."""
        if self.failure is None:
            return ServiceUnavailable(
                "no replica could take the call: every one is restarting or marked down"
            )
        what = "none could be reached" if _never_sent(self.failure) else "the model server closed the stream"
        return ServiceUnavailable(f"no replica could take the call: {what}")


@dataclass(slots=True)
class _Outcome:
    """How one proxied call ended, for its access line: the HTTP-equivalent status and who answered."""

    status: int = 500
    model: str = ""
    isvc: str = ""
    revision: str = ""
    arm: str = ""
    request_id: str = ""  # ModelInfer's (observed) calls only
    sent_to: Any = None  # the Arm the call goes to (the activator may choose another after a hold)

    def id_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((REQUEST_ID_KEY, self.request_id),) if self.request_id else ()

    def trailer(self) -> tuple[tuple[str, str], ...]:
        """An error's trailing metadata: which revision, and which request."""
        return ((REVISION_KEY, self.sent_to.revision), *self.id_metadata())


# What grpc-core says of a call that never left for its endpoint (no connection could be made): safe to send on.
_NOT_SENT = (
    "failed to connect",
    "connection refused",
    "connections to all backends failing",
    "dns resolution",
)


def _never_sent(error: grpc.aio.AioRpcError) -> bool:
    details = (error.details() or "").lower()
    return any(marker in details for marker in _NOT_SENT)


def _clearer(error: grpc.aio.AioRpcError, route: ServiceRoute, arm: Arm, route_timeout: bool) -> str:
    """The message the client gets for an upstream failure: the replica's own when it said something, else
    (grpc-core's "Deadline Exceeded", "Stream removed ...") what happened, as the HTTP path says it."""
    details = error.details() or ""
    code = error.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and details == "Deadline Exceeded":
        return timed_out(route, arm).message if route_timeout else "the client's deadline passed"
    if (
        code == grpc.StatusCode.UNAVAILABLE
        and not _has_retry_after(error)
        and (
            _never_sent(error) or details.startswith(("Stream removed", "Socket closed", "Connection reset"))
        )
    ):
        return f"no replica of revision {arm.revision} answered: " + (
            "none could be reached" if _never_sent(error) else "the model server closed the stream"
        )
    return details


def _has_retry_after(error: Any) -> bool:
    return any(key == "retry-after" for key, _ in error.trailing_metadata() or ())
