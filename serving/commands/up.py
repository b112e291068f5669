"""`serving up`: control plane + router in the foreground, on one port. Ctrl-C drains and stops all."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from serving import sched
from serving.control.local.state import DEFAULT_STATE_DIR, clear_server, write_server
from serving.control.local.warm_spawn import WarmSpawner, warm_start_enabled
from serving.errors import MethodNotAllowed
from serving.observability import log_format

if TYPE_CHECKING:  # the rest is imported in build_app, after main started the warm spawner (see main)
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from serving.autoscale.metrics import ScalingMetrics
    from serving.control.local.runner import ReplicaFactory
    from serving.router.app import Router
    from serving.storage import StorageConfig

log = logging.getLogger("serving.up")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("up", help="run the control plane and router on this machine")
    p.add_argument(
        "-f", "--filename", action="append", default=[], help="InferenceService YAML to apply at start"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="also route the Open Inference Protocol over gRPC on this port (0: a free one, logged)",
    )
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help=f"default {DEFAULT_STATE_DIR}")
    p.add_argument("--domain", default="example.com", help="URLs are http://NAME.NAMESPACE.DOMAIN")
    p.add_argument("--pvc-root", type=Path, help="pvc://NAME/path maps to PVC_ROOT/NAME/path")
    p.add_argument(
        "--cache-dir", type=Path, help="download cache for http(s) storage URIs (default STATE_DIR/cache)"
    )
    p.add_argument(
        "--model-root",
        type=Path,
        action="append",
        default=[],
        help="only serve local models inside this folder (repeatable; default: anywhere)",
    )
    p.add_argument(
        "--no-pickle",
        action="store_true",
        help="refuse joblib/pickle artifacts: loading a pickle runs code from the file",
    )
    p.add_argument(
        "--api-keys",
        type=Path,
        help="require API keys on the router: a file of NAMESPACE:KEY lines "
        "(also env SERVING_API_KEYS=ns:key,...)",
    )
    p.add_argument(
        "--auth-health", action="store_true", help="with API keys, require one on /v2/health/* too"
    )
    p.add_argument(
        "--activator-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long the router holds a request while a revision scales up from zero (then 503)",
    )
    p.add_argument(
        "--activator-queue",
        type=int,
        default=1000,
        metavar="N",
        help="requests held per revision while it scales up from zero (more: 503 with Retry-After)",
    )
    p.add_argument(
        "--default-max-replicas",
        type=_replica_count,
        default=None,
        metavar="N",
        help="the most replicas a revision whose spec sets no maxReplicas scales to (KServe: no upper bound; "
        "on one machine that would be unsafe); default the CPU count. An explicit maxReplicas is not capped",
    )
    p.add_argument("--prometheus-url", help="Prometheus for Canary metrics given as PromQL (metrics[].query)")
    p.add_argument(
        "--no-warm-start",
        action="store_true",
        help="start each model server as a fresh process instead of forking it from a process that has "
        "already imported the model server and scikit-learn (also env SERVING_WARM_START=0)",
    )
    p.add_argument(
        "--sched",
        choices=sched.POLICIES,
        default=sched.default_policy(),
        help="CPU scheduling of the router and every model server it starts: batch (Linux SCHED_BATCH: a "
        "process woken by another does not preempt it, so processes sharing a core run whole turns: "
        "+10-16%% throughput on one core, one-connection latency unchanged) or normal (the kernel's "
        "default). Default batch (env SERVING_SCHED)",
    )
    p.add_argument(
        "--log-level",
        choices=log_format.LEVELS,
        help="this process's lines (default info); when given, also every model server's and transformer's it "
        "starts (access lines below info: none)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="only warnings and failures (no per-event lines, no access log)",
    )
    p.set_defaults(func=main)


def _replica_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of replicas from 1 to 1000")
    return value


def restored_summary(keys: list[tuple[str, str]]) -> str:
    """`restored 2 InferenceServices: iris, ml/fraud` (namespace shown when not default): nothing comes back
    from the state directory without the user reading which."""
    if not keys:
        return "no InferenceServices to restore"
    names = ", ".join(
        name if namespace == "default" else f"{namespace}/{name}" for namespace, name in sorted(keys)
    )
    return f"restored {len(keys)} InferenceService{'s' if len(keys) != 1 else ''}: {names}"


def storage_config(args: argparse.Namespace) -> StorageConfig:
    from serving.storage import StorageConfig

    return StorageConfig(
        cache_dir=args.cache_dir or args.state_dir / "cache",
        pvc_root=args.pvc_root,
        allowed_roots=tuple(root.resolve() for root in args.model_root),
    )


def _activator(router: Router, args: argparse.Namespace) -> ScalingMetrics:
    """The router's activator settings, its demand signal to the control plane set by the caller; the scaling
    series go into the router's registry (one /metrics)."""
    from serving.autoscale.metrics import ScalingMetrics

    scaling = ScalingMetrics(router.metrics.registry if router.metrics is not None else None)
    router.activator.timeout_s = getattr(args, "activator_timeout", 60.0)
    router.activator.max_queue = getattr(args, "activator_queue", 1000)
    router.activator.metrics = scaling
    return scaling


def build_app(args: argparse.Namespace, replica_factory: ReplicaFactory | None = None) -> Router:
    """The router with the local control plane behind it; `replica_factory` (tests) replaces OS processes."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import Response
    from starlette.routing import Mount, Route

    from serving.control.documents import read_documents
    from serving.control.local.api import build_control_app
    from serving.control.local.canaries import LocalCanaries
    from serving.control.local.control_plane import LocalControlPlane
    from serving.control.local.secrets import is_kept_document
    from serving.control.local.state import StateStore
    from serving.http.errors import EXCEPTION_HANDLERS, InternalErrors
    from serving.http.openapi import openapi_endpoint
    from serving.metrics import EXPOSITION_CONTENT_TYPE, RouterMetrics
    from serving.router.app import Router
    from serving.router.auth import KeyRing
    from serving.router.federation import (
        SCRAPE_TIMEOUT_HEADER,
        ScrapeTarget,
        federated_exposition,
        scrape_budget,
    )
    from serving.router.upstream import Upstreams
    from serving.servingruntime import KINDS as RUNTIME_KINDS
    from serving.spec import parse

    sockets_dir: str | None = getattr(args, "unix_socket_dir", None)
    store = StateStore(args.state_dir)
    store.prepare()
    token = store.token()
    router = Router(
        upstreams=Upstreams(unix_socket_dir=sockets_dir),
        metrics=RouterMetrics(),
        auth=KeyRing.from_environment(args.api_keys, public_health=not args.auth_health),
    )
    control = LocalControlPlane(
        store,
        router,
        domain=args.domain,
        storage=storage_config(args),
        predictor_flags=(
            ("--no-pickle",) if args.no_pickle else ()
        )  # predictors speak gRPC when the router does:
        + (
            ("--grpc-port", "0") if getattr(args, "grpc_port", None) is not None else ()
        ),  # it asks each its port
        replica_factory=replica_factory,
        load=router.load,
        scaling_metrics=_activator(router, args),
        default_max_replicas=getattr(args, "default_max_replicas", None),
    )
    router.activator.on_demand = control.autoscalers.activate  # a held request asks for a replica
    canaries = LocalCanaries(
        control,
        lambda: [router.metrics.exposition()] if router.metrics is not None else [],
        router.metrics.registry if router.metrics is not None else None,
        getattr(args, "prometheus_url", None),
    )
    documents = [doc for path in args.filename for doc in read_documents(Path(path), log.warning)]
    grpc_front = None
    if getattr(args, "grpc_port", None) is not None:
        from serving.router.grpc_proxy import GrpcProxy  # grpcio is imported only when gRPC is asked for

        grpc_front = GrpcProxy(router)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await control.start(
            lambda keys: log.info("serving up: state in %s; %s", args.state_dir, restored_summary(keys))
        )
        canaries.start()
        # Secrets and ServiceAccounts first: the models' fetches read them
        for doc in sorted(documents, key=lambda d: (not is_kept_document(d), d.get("kind") != "Secret")):
            if is_kept_document(doc):
                await control.apply_object(doc["metadata"].get("namespace") or "default", doc)
            elif doc.get("kind") == "Canary":
                canaries.apply(doc)
            elif doc.get("kind") in RUNTIME_KINDS:
                await control.apply_runtimes([doc])
            else:
                await control.apply(parse(doc), doc)
        if grpc_front is not None:
            await grpc_front.start(args.host, args.grpc_port)
        log.info("serving up: router on http://%s:%s", args.host, args.port)
        own_url = control_url(args.host, args.port)
        if own_url is not None:
            write_server(Path(args.state_dir), own_url)
        try:
            yield
        finally:
            if own_url is not None:
                clear_server(Path(args.state_dir), own_url)
            # Shutdown checklist: uvicorn stopped accepting and finished open requests; now stop routing,
            # drain and stop every model process, then close upstream connections.
            if grpc_front is not None:
                await grpc_front.stop()
            await canaries.stop()
            await control.shutdown()
            await router.mirror.close()
            await router.upstreams.close()
            if sockets_dir is not None:  # here: on SIGTERM nothing after uvicorn's run is reached
                shutil.rmtree(sockets_dir, ignore_errors=True)

    async def metrics(request: Request) -> Response:
        """The router's own metrics, then every model server's, labelled by isvc/revision/component."""
        own = router.metrics.exposition() if router.metrics is not None else b""
        federated = await federated_exposition(
            [ScrapeTarget(t.url, t.labels) for t in control.scrape_targets()],
            router.upstreams.pool,
            scrape_budget(request.headers.get(SCRAPE_TIMEOUT_HEADER)),
        )
        return Response(own + federated, media_type=EXPOSITION_CONTENT_TYPE)

    fallback = Starlette(
        routes=[
            # every method routed here, so the control API's Mount("/") below does not answer them 404
            Route("/metrics", _read_only(metrics), methods=_ANY_METHOD),
            # the data plane the router serves is the model server's
            Route("/openapi.json", _read_only(openapi_endpoint), methods=_ANY_METHOD),
            Mount("/", build_control_app(control, token, canaries)),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[Middleware(InternalErrors)],  # a JSON 500 naming the type, logged without its message
        lifespan=lifespan,
    )
    router.fallback = fallback
    router.ready_check = control.ready
    return router


_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def control_url(host: str, port: int) -> str | None:
    """The URL a client on this machine reaches the control API at (None for port 0: not known yet here)."""
    if not port:
        return None
    local = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return f"http://[{local}]:{port}" if ":" in local else f"http://{local}:{port}"


def _read_only(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """GET/HEAD only, other methods 405 with Allow, as the model server's own routes answer."""

    async def guarded(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(
                f"method {request.method} not allowed on {request.url.path}", headers={"Allow": "GET, HEAD"}
            )
        return await endpoint(request)

    return guarded


@contextlib.contextmanager
def _passed_down(name: str, value: str | None) -> Iterator[None]:
    """`value` in the environment the processes started meanwhile inherit (forked ones get it in their
    spawn message); the variable as it was afterwards (`serving demo` runs this in its own process)."""
    if value is None:
        yield
        return
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def main(args: argparse.Namespace, replica_factory: ReplicaFactory | None = None) -> int:
    logging.getLogger().setLevel(log_format.numeric_level(args.log_level or "info"))
    if args.quiet:  # events (serving.control.events) and the access log keep their warnings only
        for name in ("serving.events", "serving.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # First: the warm spawner, the replicas and this process's threads inherit it (see serving/sched.py).
    sched.apply(getattr(args, "sched", sched.default_policy()))
    spawner = None
    if replica_factory is None and warm_start_enabled(getattr(args, "no_warm_start", False)):
        # First thing: it imports the model server on the other core while this process imports the rest.
        spawner = WarmSpawner.launch(args.state_dir / "logs")
    try:
        from serving.control.local.processes import Replica
        from serving.http import local_sockets
        from serving.http.launcher import run_http_server
        from serving.observability.hook import observed_router

        processes = replica_factory is None  # OS processes: the router reaches them through Unix sockets
        with (
            local_sockets.private_directory(args.state_dir / local_sockets.RECORD)
            if processes
            else contextlib.nullcontext()
        ) as sockets:
            if processes:
                args.unix_socket_dir = sockets
                replica_factory = functools.partial(Replica, spawner=spawner, unix_socket_dir=sockets)
            app = build_app(args, replica_factory)
            with _passed_down(log_format.LEVEL_ENV, args.log_level if processes else None):
                run_http_server(
                    observed_router(app, args, for_children=True), args.host, args.port, lifespan="on"
                )
    finally:
        if spawner is not None:
            spawner.close()
    return 0
