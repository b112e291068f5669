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
from serving.grpc.service import Context, Handler, stream_infer_refused, unserved
from serving.grpc.status import bounded, grpc_code, http_status, trailing_metadata
from serving.observability.grpc_calls import CLIENT_GONE, REQUEST_ID_KEY
from serving.router.activator import timed_out
from serving.router.app import Router
from serving.router.table import Arm, ServiceRoute
from serving.router.upstream import MAX_CLOSED_DELIVERIES

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

        return grpc.unary_unary_rpc_method_handler(proxy)

    async def _proxy(self, method: str, raw: bytes, context: Context, outcome: _Outcome) -> bytes:
        """Route, hold and forward one call; `outcome` says how it ended (for its access line)."""
        metadata = tuple((k, v) for k, v in context.invocation_metadata() or () if isinstance(v, str))
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
        revision = ((REVISION_KEY, arm.revision),)
        trailer = revision + outcome.id_metadata()  # an error's trailing metadata: who and which request
        # In flight from here, before any await: a request let go by the activator counts against the arm's
        # containerConcurrency at once, so the next in line does not see room that is already taken.
        started, code = time.monotonic(), 500
        self.router.request_started(route, arm)
        try:
            targets = await self._grpc_targets(arm)
            if not targets:
                code = 501
                await context.abort(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"revision {arm.revision!r} of {route.name!r} serves "
                    "REST only (a transformer in front of its predictor, or no gRPC port)",
                    trailer,
                )
            remaining = context.time_remaining()
            left = route.timeout_s - (time.monotonic() - arrived)  # a hold in the activator counted
            if left <= 0:  # the hold used it all: as over HTTP, a 504 without calling the replica
                code = 504
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, timed_out(route, arm).message, trailer)
            timeout = left if remaining is None else min(remaining, left)
            dropped = _KEYS_AND_ID if outcome.request_id else _KEYS
            # the id the router chose goes on: the replica logs the same one
            forwarded = (
                tuple((k, v) for k, v in metadata if not k.startswith(":") and k not in dropped)
                + outcome.id_metadata()
            )
            try:
                result = await self._call_arm(method, raw, forwarded, targets, timeout)
            except ServingError as exc:
                code = exc.status_code
                trailing = tuple(trailing_metadata(exc)) + trailer
                await context.abort(grpc_code(exc.status_code), bounded(exc.message), trailing)
            if isinstance(result, grpc.aio.AioRpcError):
                route_timeout = timeout < remaining if remaining is not None else True
                code = http_status(result.code())
                if result.code() == grpc.StatusCode.DEADLINE_EXCEEDED and not route_timeout:
                    code = CLIENT_GONE  # the client's own deadline passed: it left, as over HTTP
                # the replica's own id is the router's (sent on): once is enough
                theirs = tuple((k, v) for k, v in result.trailing_metadata() or () if k != REQUEST_ID_KEY)
                details = _clearer(result, route, arm, route_timeout)
                await context.abort(result.code(), details, theirs + trailer)
            code = 200
            await context.send_initial_metadata(revision)
            if outcome.request_id:
                context.set_trailing_metadata(outcome.id_metadata())
            return result
        except asyncio.CancelledError:  # the client cancelled, or its deadline passed: it left
            code = CLIENT_GONE
            raise
        finally:
            outcome.status = code
            self.router.request_finished(route, arm, code, time.monotonic() - started)

    async def _grpc_targets(self, arm: Arm) -> tuple[str, ...]:
        """The arm's gRPC targets: from the route table, else asked once of each replica (`GET /serving/grpc-port`,
        answered by `serving serve --grpc-port`); a replica without gRPC (a transformer) stays REST only."""
        if arm.grpc_endpoints:
            return arm.grpc_endpoints
        found = []
        for endpoint in arm.endpoints:
            target = self._discovered.get(endpoint)
            if target is None:
                target = await self._ask_grpc_port(endpoint)
                if target is not None:
                    self._discovered[endpoint] = target
            if target:
                found.append(target)
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
        endpoints: tuple[str, ...],
        timeout: float,
    ) -> bytes | grpc.aio.AioRpcError:
        """Try the arm's endpoints in turn; move on only when one cannot be reached (no Retry-After). A call
        whose stream was cut after it was sent counts as HTTP's closed deliveries do: after
        MAX_CLOSED_DELIVERIES it is not sent again (ServiceUnavailable), so a request that crashes replicas
        reaches two, not every one."""
        first = next(self._turns)
        failure: grpc.aio.AioRpcError | None = None
        closed = 0
        busy = self._outstanding
        # the least busy first (as the HTTP pool chooses), ties taken in turn
        rotation = [endpoints[(first + i) % len(endpoints)] for i in range(len(endpoints))]
        for endpoint in sorted(rotation, key=lambda e: busy.get(e, 0)):
            call = self._callable(endpoint, method)
            busy[endpoint] = busy.get(endpoint, 0) + 1
            try:
                response: bytes = await call(raw, metadata=metadata, timeout=timeout)
                return response
            except grpc.aio.AioRpcError as exc:
                failure = exc
                if exc.code() != grpc.StatusCode.UNAVAILABLE or _has_retry_after(exc):
                    break
                self._discovered = {e: t for e, t in self._discovered.items() if t != endpoint}  # restarted?
                if not _never_sent(exc):
                    closed += 1
                    if closed >= MAX_CLOSED_DELIVERIES:
                        raise ServiceUnavailable(
                            f"the model server closed the stream without an answer, {closed} times: the "
                            "request is not sent again (it may be what makes replicas fail)"
                        ) from exc
            finally:
                left = busy[endpoint] - 1
                if left:
                    busy[endpoint] = left
                else:
                    del busy[endpoint]  # (a replaced replica's target is not kept)
        assert failure is not None
        return failure

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


_KEYS = ("authorization", "x-api-key")  # the router's API key: not the replica's business
_KEYS_AND_ID = (*_KEYS, REQUEST_ID_KEY)  # and the client's id, when the router sends the one it chose


@dataclass(slots=True)
class _Outcome:
    """How one proxied call ended, for its access line: the HTTP-equivalent status and who answered."""

    status: int = 500
    model: str = ""
    isvc: str = ""
    revision: str = ""
    arm: str = ""
    request_id: str = ""  # ModelInfer's (observed) calls only

    def id_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((REQUEST_ID_KEY, self.request_id),) if self.request_id else ()


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
