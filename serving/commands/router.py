"""`serving router --routes-configmap NS/NAME`: the router in a cluster, fed by the operator's route table.

The same `serving.router.app.Router` as `serving up`, with no control plane behind it: the table comes
from the ConfigMap the operator writes (polled every second), the arms are the revisions' Services.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.autoscale.metrics import ScalingMetrics
from serving.http.errors import EXCEPTION_HANDLERS
from serving.http.launcher import run_http_server
from serving.metrics import EXPOSITION_CONTENT_TYPE, RouterMetrics
from serving.observability import log_format
from serving.observability.hook import observed_router
from serving.router.app import Router
from serving.router.auth import KeyRing
from serving.router.configmap_source import ConfigMapSource
from serving.router.table import RouteTable

log = logging.getLogger("serving.router")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("router", help="run the router alone, reading its route table from a ConfigMap")
    p.add_argument("--routes-configmap", required=True, help="NAMESPACE/NAME written by `serving operator`")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="also route gRPC (Open Inference Protocol) on this port (0: a free one, logged)",
    )
    p.add_argument("--poll-seconds", type=float, default=1.0)
    p.add_argument("--api-keys", type=Path, help="a file of NAMESPACE:KEY lines (also env SERVING_API_KEYS)")
    p.add_argument(
        "--activator-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="hold a request this long for a revision scaled to zero (KEDA wakes it), then 503",
    )
    p.add_argument("--log-level", default="info", choices=log_format.LEVELS)
    p.set_defaults(func=main)


def build_app(args: argparse.Namespace) -> Router:
    namespace, _, name = args.routes_configmap.partition("/")
    source = ConfigMapSource(namespace, name, interval_s=args.poll_seconds)
    router = Router(metrics=RouterMetrics(), auth=KeyRing.from_environment(args.api_keys))
    # The activator's queue depth is in /metrics: KEDA's trigger adds it, so a held request wakes a revision at 0.
    router.activator.metrics = ScalingMetrics(router.metrics.registry if router.metrics is not None else None)
    router.activator.timeout_s = getattr(args, "activator_timeout", 60.0)
    seen = asyncio.Event()
    grpc_front = None
    if getattr(args, "grpc_port", None) is not None:
        from serving.router.grpc_proxy import GrpcProxy  # grpcio is imported only when gRPC is asked for

        grpc_front = GrpcProxy(router)

    def on_table(table: RouteTable) -> None:
        router.set_table(table)
        seen.set()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(source.run(on_table), name="routes")
        if grpc_front is not None:
            await grpc_front.start(args.host, args.grpc_port)
        try:
            yield
        finally:
            # Shutdown: uvicorn stopped accepting and finished its requests; finish gRPC calls, stop polling.
            if grpc_front is not None:
                await grpc_front.stop()
            task.cancel()
            await router.upstreams.close()

    async def metrics(request: Request) -> Response:
        return Response(router.metrics.exposition(), media_type=EXPOSITION_CONTENT_TYPE)

    router.ready_check = seen.is_set  # ready once the first table is in
    router.fallback = Starlette(
        routes=[Route("/metrics", metrics)], exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan
    )
    return router


def main(args: argparse.Namespace) -> int:
    logging.getLogger().setLevel(log_format.numeric_level(args.log_level))
    run_http_server(observed_router(build_app(args), args), args.host, args.port, lifespan="on")
    return 0
