"""Explicit assembly of the model server: every route in one list, middleware order in one place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.datastructures import URL
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.dataplane import DataPlane
from serving.errors import NotFound
from serving.http.errors import EXCEPTION_HANDLERS, InternalErrors
from serving.http.infer_endpoint import InferenceFastLane, InferEndpoint
from serving.http.openapi import openapi_endpoint
from serving.http.v1_routes import V1Endpoints
from serving.http.v2_routes import V2Endpoints
from serving.metrics import EXPOSITION_CONTENT_TYPE
from serving.protocol.codec import V1, V2


def build_routes(dataplane: DataPlane) -> list[Route]:
    """Every route of the model server; the inference ones (endpoint `InferEndpoint`) also feed the fast lane."""
    v1, v2 = V1Endpoints(dataplane), V2Endpoints(dataplane)

    async def metrics(request: Request) -> Response:
        return Response(dataplane.metrics.exposition(), media_type=EXPOSITION_CONTENT_TYPE)

    v1_predict, v2_infer = InferEndpoint(dataplane, V1), InferEndpoint(dataplane, V2)
    routes = [  # the two inference routes first: every prediction is matched against the list in order
        Route("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
        Route("/v1/models/{name}:predict", v1_predict, methods=["POST"]),
        Route("/v2", v2.server_metadata, methods=["GET"]),
        Route("/v2/health/live", v2.live, methods=["GET"]),
        Route("/v2/health/ready", v2.ready, methods=["GET"]),
        Route("/v2/repository/index", v2.repository_index, methods=["POST"]),
        Route("/v2/repository/models/{name}/load", v2.repository_load, methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", v2.repository_unload, methods=["POST"]),
        Route("/v1/models/{name}:explain", _no_explainer, methods=["POST"]),
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


def relative_slash_redirect(router: Router) -> ASGIApp:
    """What `router` answers when no route matches: Starlette's `redirect_slashes` (307 to the path with its
    trailing slash toggled, when that one has a route; the query kept), but with a relative Location (RFC 9110
    §10.2.2); a POST (an inference) is served at the toggled path instead, since clients do not follow. Starlette's names the Host of the request, which behind `serving up`'s router is the replica's
    own address: a client following it would bypass the router. Else the 404. Set as `router.default`, with
    `router.redirect_slashes` off; nothing on a matched request's way changes."""
    not_found = router.not_found

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path != "/":
                toggled = {**scope, "path": path.rstrip("/") if path.endswith("/") else path + "/"}
                if any(route.matches(toggled)[0] is not Match.NONE for route in router.routes):
                    if scope.get("method") not in ("GET", "HEAD"):
                        # a POST is served where it meant to go: clients (tritonclient's) follow no redirect
                        await router(toggled, receive, send)
                        return
                    # no host and no server: Starlette's URL is then the path and query alone ("//x" escaped)
                    relative = URL(scope={**toggled, "headers": [], "server": None})
                    await RedirectResponse(str(relative))(scope, receive, send)
                    return
        await not_found(scope, receive, send)

    return default


async def _no_explainer(request: Request) -> Response:
    raise NotFound(  # a 4xx: the route is KServe's, the thing it names is not here
        f"model {request.path_params['name']!r} has no explainer: KServe's explainers (spec.explainer, "
        ":explain) are not supported here; use :predict"
    )


def build_app(
    dataplane: DataPlane, load_on_start: bool = True, load_before_serving: bool = False
) -> InferenceFastLane:
    """The model server app; models load in the background so `/v2/health/live` answers at once.

    With several worker processes sharing one socket, each worker loads before it accepts a connection
    (`load_before_serving`): a probe answered by a ready worker must not hide one that would still say 503."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if load_before_serving:
            dataplane.metrics.hold_readiness()  # a worker that takes no connection yet is not counted
            await dataplane.repository.load_all()
            dataplane.metrics.publish_readiness()
        task = (
            asyncio.create_task(dataplane.repository.load_all())
            if load_on_start and not load_before_serving
            else None
        )
        try:
            yield
        finally:
            # Shutdown checklist: uvicorn has stopped accepting and drained connections;
            # stop any load still running, then release the model threads.
            if task is not None and not task.done():
                task.cancel()
            dataplane.close()

    middleware = [Middleware(InternalErrors)]  # innermost of Starlette's own: catches what no handler claimed
    routes = build_routes(dataplane)
    app = Starlette(
        routes=routes, exception_handlers=EXCEPTION_HANDLERS, middleware=middleware, lifespan=lifespan
    )
    app.router.redirect_slashes = False
    app.router.default = relative_slash_redirect(app.router)
    return InferenceFastLane(app, routes, dataplane.limits.max_body_bytes)
