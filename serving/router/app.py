"""The router's ASGI app: resolve the InferenceService, pick an arm, forward the bytes, tag the response.

A raw ASGI callable (no per-request framework routing) because every request crosses it. The control
API and anything else not on the data path is delegated to `fallback` (a Starlette app).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

import serving
from serving.client_gone import unless_client_leaves
from serving.errors import (
    BadRequest,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    ServiceUnavailable,
    ServingError,
    existing_names,
    scrubbed,
    statistics_hint,
)
from serving.http.body import receive_body
from serving.http.errors import send_error
from serving.router.activator import Activator, timed_out
from serving.router.auth import KEY_HEADERS, KeyRing
from serving.router.balancer import Balancer
from serving.router.load import RevisionLoad
from serving.router.mirror import Mirror
from serving.router.table import Arm, RouteTable, ServiceRoute
from serving.router.upstream import NoReplicaReached, Upstreams, forwarded_headers, upstream_target

if TYPE_CHECKING:
    from serving.metrics import RouteSeries

REVISION_HEADER = b"x-serving-revision"
TAG_HEADER = b"x-serving-tag"
LANE_STARTED = "serving.router.started"  # scope key: when the lane first sent a request it hands over
LANE_CLOSED = "serving.router.closed"  # scope key: the endpoint that closed the lane's try without an answer
CHOSEN_ARM = "serving.router.arm"  # scope key: an arm the direct lane chose (serving/router/lane.py) before handing over
_JSON = [(b"content-type", b"application/json")]


class Router:
    def __init__(
        self,
        upstreams: Upstreams | None = None,
        *,
        metrics: Any = None,
        fallback: ASGIApp | None = None,
        max_body_bytes: int = 64 * 1024 * 1024,
        ready: Callable[[], bool] | None = None,
        auth: KeyRing | None = None,
    ) -> None:
        self.auth = auth
        self.upstreams = upstreams or Upstreams()
        self.metrics = metrics
        self.fallback = fallback
        self.max_body_bytes = max_body_bytes
        self.balancer = Balancer()
        self.mirror = Mirror(self.upstreams, metrics)
        self.load = RevisionLoad()  # per-revision in-flight/started counts: what the autoscaler observes
        self.activator = Activator(self.load)  # holds requests for a revision scaled to zero or restarting
        self.activator.usable = lambda endpoints: self.upstreams.pick(endpoints) is not None
        self.ready_check: Callable[[], bool] = ready or (lambda: True)
        self.grpc_calls: Any = None  # request ids and access lines of gRPC calls (observability's GrpcCalls)
        self._table = RouteTable()
        self._hosts: dict[str, ServiceRoute] = {}
        self._domains: tuple[str, ...] = ()

    @property
    def table(self) -> RouteTable:
        return self._table

    def set_table(self, table: RouteTable) -> None:
        """Swap the whole table at once; requests in flight keep the arm they already picked."""
        self._table, self._hosts = table, {h.lower(): r for h, r in table.by_host().items()}  # as host_name
        # ".DOMAIN" of every route's NAME.NAMESPACE.DOMAIN: a Host of that shape names a service (KServe routes
        # by Host), so one that is not there is a 404, not the same-named service of `default`
        self._domains = tuple({"." + h.split(".", 2)[2] for h in self._hosts if h.count(".") >= 2})
        self.balancer.retain(table)
        self.activator.table_changed(table)

    async def drain(self, endpoints: Sequence[str]) -> None:
        """Return once no request is in flight to these endpoints (the control plane calls this)."""
        await self.upstreams.drain(list(endpoints))

    def forget(self, isvc: str, namespace: str, revision: str) -> None:
        """Drop the metric series of a retired revision."""
        self.load.forget(namespace, revision)
        if self.metrics is not None:
            self.metrics.forget_revision(isvc, namespace, revision)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if self.fallback is not None:
                await self.fallback(scope, receive, send)
            return
        path: str = scope["path"]
        try:
            if path.startswith(("/v1/models/", "/v2/models/")):
                await self._proxy(scope, receive, send, path)
            elif path in _LOCAL:
                await self._local(scope, send, path)
            elif path.endswith("/") and path.rstrip("/") in _LOCAL and scope["method"] in ("GET", "HEAD"):
                # as the model server answers a trailing slash: 307 to its route, relative, the query kept
                query = scope.get("query_string", b"")
                where = path.rstrip("/").encode() + (b"?" + query if query else b"")
                await _reply(send, 307, {"location": where.decode("latin-1")}, [(b"location", where)])
            elif path.startswith("/v2/repository"):
                raise NotFound(
                    "the repository extension (/v2/repository/...) is not routed: call it on a model server's "
                    "own port"
                )
            elif self.fallback is not None:
                await self.fallback(scope, receive, send)
            else:
                raise NotFound(f"no route for {path}")
        except ServingError as exc:
            await send_error(send, exc, scope["method"], path)
        except (
            ClientDisconnect
        ):  # gone mid-body (or cut off by the HTTP layer): nobody to answer, nothing broke
            return
        except Exception as exc:  # a bug of ours: a JSON 500 naming its type, logged without its message
            with contextlib.suppress(Exception):  # (an answer already started: the log line is all)
                await send_error(send, exc, scope["method"], path)

    async def _local(self, scope: Scope, send: Send, path: str) -> None:
        if scope["method"] not in ("GET", "HEAD"):  # as the model server's own routes answer
            raise MethodNotAllowed(
                f"method {scope['method']} not allowed on {path}", headers={"Allow": "GET, HEAD"}
            )
        if self.auth is not None and not (self.auth.public_health and path.startswith("/v2/health/")):
            namespace = self._namespace_of(scope) if path == "/v1/models" else None
            self.auth.check(namespace, scope["headers"])
        if path == "/v2/health/live":
            await _reply(send, 200, {"live": True})
        elif path == "/v2/health/ready":
            ready = self.ready_check()
            await _reply(send, 200 if ready else 503, {"ready": ready})
        elif path == "/v2":
            await _reply(
                send,
                200,
                {
                    "name": "serving-router",
                    "version": serving.__version__,
                    # what works through the router: /v2/models/NAME/config is routed, /v2/repository/* is not
                    "extensions": ["binary_tensor_data", "classification", "model_configuration"],
                },
            )
        else:
            namespace = self._namespace_of(scope)
            names = sorted(n for (ns, n) in self._table.services if ns == namespace)
            await _reply(send, 200, {"models": names})

    def _namespace_of(self, scope: Scope) -> str:
        route = self._hosts.get(host_of(scope))
        return route.namespace if route is not None else "default"

    def route_for(self, host: str, name: str) -> ServiceRoute | None:
        """The service a request names: by its Host (NAME.NAMESPACE.DOMAIN), else by model name in `default`."""
        route = self._hosts.get(host)
        if route is not None:
            return route
        if host.endswith(self._domains) and _names_a_service(host, self._domains):
            return None  # NAME.NAMESPACE.DOMAIN that is not a service here
        named = _in_cluster(host)
        if named is not None:  # else a Host such as example.com: the path's name, in default
            found = self._table.services.get((named[1], named[0]))
            if found is not None:
                return found
        return self._table.services.get(("default", name))

    def resolve(self, scope: Scope, name: str) -> ServiceRoute:
        host = host_of(scope)
        route = self.route_for(host, name)
        if route is None:
            named = _in_cluster(host)
            in_cluster = named is not None and any(ns == named[1] for ns, _ in self._table.services)
            by_host = _names_a_service(host, self._domains) or in_cluster
            wanted, namespace = host.split(".", 2)[:2] if by_host else (name, "default")
            where = f" (Host {host!r}: namespace {namespace!r})" if by_host else ""
            raise self.unknown_service(wanted, namespace, where)
        return route

    def unknown_service(
        self, name: str, namespace: str, where: str = "", elsewhere_hint: str = "send Host {host}"
    ) -> ModelNotFound:
        """404 naming the services that exist (the first few), unless API keys guard the listing; counted."""
        if self.metrics is not None:
            self.metrics.unknown_service(namespace)
        hint = ""
        if self.auth is None:  # API keys guard the listing
            here = [n for (ns, n) in self._table.services if ns == namespace]
            elsewhere = sorted(ns for (ns, n) in self._table.services if n == name and ns != namespace)
            hint = f" in namespace {namespace!r}" if elsewhere and not where else ""
            hint += existing_names(here)
            if elsewhere:
                route = self._table.services[(elsewhere[0], name)]
                host = route.host or f"{name}.{elsewhere[0]}"
                advice = elsewhere_hint.format(host=host, namespace=elsewhere[0])
                hint += f"; {name!r} is in namespace {elsewhere[0]!r}: {advice}"
        return ModelNotFound(f"InferenceService {name!r} not found{where}{statistics_hint(name)}{hint}")

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        if "/." in path and any(part in (".", "..") for part in path.split("/")):
            # A server behind that resolves them would see another path than the one routed here (e.g. one
            # under /v2/repository/, which the router does not route)
            raise BadRequest(f"path {path!r} holds a '.' or '..' segment: not routed")
        name = _model_name(path)
        route = self.resolve(scope, name)
        if self.auth is not None:
            self.auth.check(route.namespace, scope["headers"])
        headers = _headers(scope)
        if self.auth is not None:  # the key was for the router: a replica (and its payload log) never sees it
            headers = [(k, v) for k, v in headers if k not in KEY_HEADERS]
        # As sent: a compressed body goes on compressed, with its Content-Encoding (the model server inflates it,
        # within its own limit; the router's applies to the bytes it receives), and so does a mirror's copy.
        body = await receive_body(scope["headers"], receive, self.max_body_bytes, inflated=False)
        # No await between choosing the arm and counting the request in flight on its endpoint:
        # a revision being drained either is not chosen or is waited for.
        pin = header_value(headers, TAG_HEADER)
        try:
            arm = scope.get(CHOSEN_ARM) or self.choose(
                route,
                pin,
                header_value(headers, route.affinity_header.encode()) if route.affinity_header else None,
            )
            if route.starting and not arm.endpoints and _asks_readiness(scope["method"], path):
                raise _no_ready_revision(route)  # a probe of a loading service is answered, not held
        except ServiceUnavailable as exc:
            if not _asks_readiness(scope["method"], path):
                raise
            # A readiness probe is answered as a model server answers it: not ready, and why
            headers_out = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
            await _reply(send, 503, {"name": name, "ready": False, "reason": exc.message}, headers_out)
            return
        started = time.monotonic()
        # handed over by the lane after a try that reached no model: its clock started there
        arrived = scope.get(LANE_STARTED, started)
        timeout_s = route.timeout_s - (started - arrived)
        # scaled to zero (route.activator), or others wait for room: held until a replica has it, or 503/504
        if not arm.endpoints or self.activator.queued(route, arm):
            arm = await self._hold(scope, name, route, arm, arrived + route.timeout_s, receive=receive)
            # the request's own timeout counts from its arrival: what the hold took is not given again
            started = time.monotonic()
            timeout_s = route.timeout_s - (started - arrived)
        target = upstream_target(scope)
        code = 500
        self.request_started(route, arm)
        try:
            try:
                if timeout_s <= 0:
                    raise timed_out(route, arm)
                # the client gone first: the exchange is cancelled and closes its upstream connection, so the
                # replica sees it go too (a request queued there for a slot leaves)
                _, response = await unless_client_leaves(
                    self.upstreams.forward(
                        arm.endpoints,
                        scope["method"],
                        target,
                        headers,
                        body,
                        timeout_s,
                        route.timeout_s,
                        scope.get(LANE_CLOSED, ""),
                    ),
                    receive,
                    "the client left before the answer",
                )
            except NoReplicaReached as first:
                if not route.activator:
                    raise
                unreached = first
                while True:
                    # Its replicas are restarting (a crash, kill -9): nothing reached a model, so it waits for one
                    # and goes again, within what is left of its timeout; an endpoint the table still lists
                    # that refuses again (its replacement not published yet) sends it back to wait
                    fresh = await self._hold(
                        scope, name, route, arm, arrived + route.timeout_s, counted=True, receive=receive
                    )
                    if fresh is not arm:  # counted on the arm it goes to
                        self.request_withdrawn(route, arm)
                        arm = fresh
                        self.request_started(route, arm)
                    left = route.timeout_s - (time.monotonic() - arrived)
                    if left <= 0:
                        raise timed_out(route, arm) from None
                    try:
                        _, response = await self.upstreams.forward(
                            arm.endpoints,
                            scope["method"],
                            target,
                            headers,
                            body,
                            left,
                            route.timeout_s,
                            "",  # no endpoint to avoid: the hold waited for one that takes requests
                            unreached.closed_on,
                        )
                        break
                    except NoReplicaReached as again:
                        unreached = again
            code = response.status
            response.headers.append((REVISION_HEADER, arm.revision_header))
            await send(
                {"type": "http.response.start", "status": response.status, "headers": response.headers}
            )
            await send({"type": "http.response.body", "body": response.body})
            if route.mirror is not None and arm.role == "stable" and pin is None:
                self.mirror.send(route, scope["method"], target, headers, body)
        except ServingError as exc:
            code = exc.status_code
            exc.headers = {**exc.headers, "x-serving-revision": arm.revision}
            raise
        finally:
            self.request_finished(route, arm, code, time.monotonic() - started)

    async def _hold(
        self,
        scope: Scope,
        name: str,
        route: ServiceRoute,
        arm: Arm,
        deadline: float,
        counted: bool = False,
        receive: Receive | None = None,
    ) -> Arm:
        """The activator's hold, its errors answered as the router's own: the revision header on a 503/504, and
        for a service deleted meanwhile the 404 a request arriving now gets."""
        try:
            return await self.activator.hold(route, arm, deadline, counted, receive)
        except ModelNotFound:
            # the 404 a request arriving now gets (by Host, naming the services that exist)
            self.resolve(scope, name)
            raise
        except ServingError as exc:
            exc.headers = {**exc.headers, "x-serving-revision": arm.revision}
            raise

    def request_started(self, route: ServiceRoute, arm: Arm) -> None:
        """A request forwarded to `arm`: in flight for the autoscaler and the route metrics."""
        self.load.begin(route.namespace, arm.revision)
        series = self._series_of(route, arm)
        if series is not None:
            series.started()

    def request_finished(self, route: ServiceRoute, arm: Arm, code: int, seconds: float) -> None:
        self.load.end(route.namespace, arm.revision)
        if route.replica_concurrency:
            self.activator.capacity_freed(
                route.namespace, arm.revision
            )  # the first in line may go in its place
        series = self._series_of(route, arm)
        if series is not None:
            series.finished(code, seconds)

    def request_withdrawn(self, route: ServiceRoute, arm: Arm) -> None:
        """A started request taken back before it reached a model (it is forwarded again, and counted then)."""
        self.load.withdraw(route.namespace, arm.revision)
        series = self._series_of(route, arm)
        if series is not None:
            series.withdrawn()

    def _series_of(self, route: ServiceRoute, arm: Arm) -> RouteSeries | None:
        metrics = self.metrics
        return (
            None if metrics is None else metrics.series(route.name, route.namespace, arm.revision, arm.role)
        )

    def choose(self, route: ServiceRoute, pin: str | None, affinity: str | None = None) -> Arm:
        if pin:
            named = [arm for arm in route.arms if pin in (arm.tag, arm.revision)]
            if not named:  # no such tag or revision: retrying cannot help
                known = sorted({a.tag for a in route.arms} | {a.revision for a in route.arms})
                raise NotFound(
                    f"InferenceService {route.name!r} has no tag or revision {pin!r} "
                    f"(x-serving-tag takes: {', '.join(known) or 'none yet'})"
                )
            for arm in named:  # at zero with the activator on, a pinned request is held like any other
                if arm.endpoints or route.activator:
                    return arm
            raise _no_ready_revision(route, f" for tag {pin!r}")
        chosen = self.balancer.choose(route, affinity)
        if chosen is None:
            raise _no_ready_revision(route)
        return chosen


def _in_cluster(host: str) -> tuple[str, str] | None:
    """(NAME, NAMESPACE) of KServe's in-cluster Host forms: NAME.NAMESPACE, NAME.NAMESPACE.svc[.CLUSTER_DOMAIN]."""
    if not host[:1].isalpha() or "." not in host:  # not an IP address, nor a bare name
        return None
    parts = host.split(".")
    return (parts[0], parts[1]) if len(parts) == 2 or parts[2] == "svc" else None


def _names_a_service(host: str, domains: tuple[str, ...]) -> bool:
    """NAME.NAMESPACE before one of the domains (not a bare sub-domain such as serving.example.com)."""
    return any(host.endswith(d) and host[: -len(d)].count(".") == 1 for d in domains)


def _no_ready_revision(route: ServiceRoute, for_tag: str = "") -> ServiceUnavailable:
    """503. While a revision loads, `Retry-After: 1`; once it has failed, its reason and no Retry-After (retrying
    cannot help until the spec changes). The reason is scrubbed: no server path reaches a client."""
    what = f"InferenceService {route.name!r} has no ready revision{for_tag}"
    if route.failure:
        return ServiceUnavailable(f"{what}: {scrubbed(route.failure)}", headers={})
    return ServiceUnavailable(
        f"{what} yet (starting); retry, or `serving wait {route.name}` until it is ready"
    )


def _asks_readiness(method: str, path: str) -> bool:
    """GET/HEAD of `/v2/models/NAME[/versions/V]/ready` or `/v1/models/NAME` (V1's model status)."""
    if method not in ("GET", "HEAD"):
        return False
    if path.startswith("/v2/"):
        return path.endswith("/ready")
    return path.count("/") == 3 and ":" not in path


def _model_name(path: str) -> str:
    rest = path[len("/v1/models/") :]  # same length for /v2/models/
    name = rest.split("/", 1)[0]
    return name.split(":", 1)[0]


def host_of(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == b"host":
            return host_name(value)
    return ""


@functools.lru_cache(maxsize=256)  # a router sees few Host values; decoding one per request cost ~1 µs
def host_name(value: bytes) -> str:
    """A Host header's host, without its port, lower-cased and without a trailing dot (RFC 9110 4.2.3: the
    same host either way)."""
    host = value.decode("latin-1").lower()
    if b"]" not in value:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


def _headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    return forwarded_headers(scope["headers"])


def header_value(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


_LOCAL = ("/v2/health/live", "/v2/health/ready", "/v2", "/v1/models")  # answered by the router itself


async def _reply(send: Send, status: int, doc: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps(doc)  # sized, not chunked: an HTTP/1.0 client cannot read chunks
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": _JSON + length + (headers or [])})
    await send({"type": "http.response.body", "body": body})
