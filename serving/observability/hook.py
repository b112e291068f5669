"""Wrapping a process's ASGI app in `Observed` from its options: the one call each entry point makes."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.types import Scope

from serving.errors import ServingError
from serving.observability import tracing
from serving.observability.access_log import AccessLog
from serving.observability.asgi import Describe, Observed
from serving.observability.cloudevent import Source
from serving.observability.grpc_calls import GrpcCalls
from serving.observability.options import ObservabilityOptions, export_to_children, from_args
from serving.observability.payload_logger import PayloadLogger
from serving.observability.sinks import sink_for
from serving.router.lane import RouterLane

log = logging.getLogger("serving.observability")


def observe(
    app: Any,
    options: ObservabilityOptions,
    registry: CollectorRegistry | None = None,
    describe: Describe | None = None,
    forwards_headers: bool = False,
) -> Observed:
    """`app` with request ids, access log, tracing (when wanted) and payload logging (when configured).

    `registry`: where the logger's metrics go (the process's own, so `/metrics` shows them)."""
    component = options.component or "predictor"
    if tracing.wanted(options.otel or bool(options.otel_endpoint)) and not tracing.enabled():
        tracing.setup(f"serving-{component}", endpoint=options.otel_endpoint)
    url = options.payload_logger_url()
    if options.logger_mode and not url:
        log.warning("payload logger: a logger block but no url and no default sink; nothing is logged")
    payloads = (
        PayloadLogger(
            sink_for(url),
            options.logger_mode or "all",
            registry=registry,
            metadata_headers=options.logger_metadata_headers,
        )
        if url
        else None
    )
    source = Source(
        isvc=options.isvc,
        namespace=options.namespace,
        component=component,
        endpoint=options.revision,
        annotations=options.logger_annotations,
    )
    return Observed(app, source, AccessLog(options.access_log_sample), payloads, describe, forwards_headers)


def observe_router(
    router: Any, options: ObservabilityOptions, registry: CollectorRegistry | None = None
) -> Observed:
    """The router's hook: isvc, namespace and arm come from its route table, the revision from its answer."""

    def describe(scope: Scope, model: str, revision: str) -> tuple[str, str, str, str]:
        try:
            route = router.resolve(scope, model)
        except ServingError:
            return model, "", revision, ""
        arm = next((a.role for a in route.arms if a.revision == revision), "")
        return route.name, route.namespace, revision, arm

    observed = observe(router, _as_router(options), registry, describe, forwards_headers=True)
    observed.direct_lane = RouterLane(observed)  # the common routed request, answered without the ASGI call
    router.grpc_calls = GrpcCalls.like(observed)  # its gRPC front's calls: the same ids and access lines
    return observed


def _as_router(options: ObservabilityOptions) -> ObservabilityOptions:
    return replace(options, component=options.component or "router")


def observed_router(router: Any, args: argparse.Namespace, for_children: bool = False) -> Observed:
    """`serving router` / `serving up`: the router wrapped from its CLI flags; with `for_children`, the
    processes this one starts inherit the log format, sampling, tracing and default logger sink."""
    options = from_args(args, "router")
    # `serving up --logger-url` is the default sink of spec logger blocks (the components log), not the router's.
    own = replace(options, logger_url=None, logger_mode=None) if for_children else options
    metrics = getattr(router, "metrics", None)
    observed = observe_router(router, own, metrics.registry if metrics is not None else None)
    if for_children:
        observed.on_shutdown.append(export_to_children(options))
    return observed
