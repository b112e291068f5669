"""Explicit assembly of the model server: every route in one list, middleware order in one place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.dataplane import DataPlane
from serving.http.errors import EXCEPTION_HANDLERS, InternalErrors
from serving.http.infer_endpoint import InferEndpoint, InferFrontDoor
from serving.http.openapi import openapi_endpoint
from serving.http.v1_routes import V1Endpoints
from serving.http.v2_routes import V2Endpoints
from serving.protocol.codec import V1, V2

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def build_routes(dataplane: DataPlane, v1_predict: InferEndpoint | None = None,
                 v2_infer: InferEndpoint | None = None) -> list[Route]:
    v1, v2 = V1Endpoints(dataplane), V2Endpoints(dataplane)

    async def metrics(request: Request) -> Response:
        return Response(dataplane.metrics.exposition(), media_type=PROMETHEUS_TEXT)

    v1_predict = v1_predict or InferEndpoint(dataplane, V1)
    v2_infer = v2_infer or InferEndpoint(dataplane, V2)
    routes = [  # the two inference routes first: every prediction is matched against the list in order
        Route("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
        Route("/v1/models/{name}:predict", v1_predict, methods=["POST"]),
        Route("/v2", v2.server_metadata, methods=["GET"]),
        Route("/v2/health/live", v2.live, methods=["GET"]),
        Route("/v2/health/ready", v2.ready, methods=["GET"]),
        Route("/v2/repository/index", v2.repository_index, methods=["POST"]),
        Route("/v2/repository/models/{name}/load", v2.repository_load, methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", v2.repository_unload, methods=["POST"]),
        Route("/v1/models", v1.list_models, methods=["GET"]),
        Route("/v1/models/{name}", v1.model_status, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
    ]
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [
            Route(prefix, v2.model_metadata, methods=["GET"]),
            Route(prefix + "/ready", v2.model_ready, methods=["GET"]),
            Route(prefix + "/config", v2.model_config, methods=["GET"]),
        ]
    routes.append(Route("/v2/models/{name}/versions/{version}/infer", v2_infer, methods=["POST"]))
    return routes


def build_app(dataplane: DataPlane, load_on_start: bool = True, load_before_serving: bool = False) -> InferFrontDoor:
    """The model server app; models load in the background so `/v2/health/live` answers at once.

    With several worker processes sharing one socket, each worker loads before it accepts a connection
    (`load_before_serving`): a probe answered by a ready worker must not hide one that would still say 503."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if load_before_serving:
            await dataplane.repository.load_all()
        task = asyncio.create_task(dataplane.repository.load_all()) if load_on_start and not load_before_serving else None
        try:
            yield
        finally:
            # Shutdown checklist: uvicorn has stopped accepting and drained connections;
            # stop any load still running, then release the model threads.
            if task is not None and not task.done():
                task.cancel()
            dataplane.close()

    middleware = [Middleware(InternalErrors)]  # innermost of Starlette's own: catches what no handler claimed
    v1_predict, v2_infer = InferEndpoint(dataplane, V1), InferEndpoint(dataplane, V2)
    app = Starlette(routes=build_routes(dataplane, v1_predict, v2_infer), exception_handlers=EXCEPTION_HANDLERS,
                    middleware=middleware, lifespan=lifespan)
    app.state.dataplane = dataplane
    return InferFrontDoor(app, v1_predict, v2_infer)
