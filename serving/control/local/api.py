"""The control API of `serving up` (loopback only, bearer token from the state directory).

GET/POST /api/v1/inferenceservices, GET/DELETE /api/v1/namespaces/{ns}/inferenceservices/{name},
POST .../{name}/rollout/{promote|rollback|pause|resume|undo}, GET .../{name}/rollout/{status|history}
(status?since=SEQ: also the Canary's status changes after SEQ);
GET /api/v1/canaries, GET/DELETE /api/v1/namespaces/{ns}/canaries/{name}, GET /api/v1/servingruntimes,
DELETE /api/v1/namespaces/{ns}/servingruntimes/{name} and /api/v1/clusterservingruntimes/{name};
PUT/DELETE /api/v1/namespaces/{ns}/secrets/{name} and .../serviceaccounts/{name} (a `v1` Secret or
ServiceAccount document; answers its name and created / configured / unchanged, never a value) and GET
/api/v1/secrets, /api/v1/serviceaccounts (names only). Bodies
are JSON; POST takes a list of documents (InferenceService, Canary, ServingRuntime, ClusterServingRuntime),
validated all (explicit `runtime:` names against the runtimes as they will be) before any is applied).
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.canary.spec import parse_canary
from serving.control.local.canaries import LocalCanaries
from serving.control.local.control_plane import LocalControlPlane, Service
from serving.control.local.rollout_api import (
    ACTIONS,
    delete_canary,
    rollout_action,
    rollout_history,
    rollout_status,
)
from serving.control.local.secrets import KEPT_KINDS, is_kept_document
from serving.control.process_args import check_local_predictor, check_local_transformer
from serving.control.runtime_catalog import is_runtime_document
from serving.errors import BadRequest, Forbidden, NotFound, Unauthorized
from serving.http.body import JSONBody, read_body
from serving.http.errors import EXCEPTION_HANDLERS, InternalErrors
from serving.revision import Revision
from serving.runtime_effects import runtime_warnings
from serving.servingruntime import parse_runtime
from serving.spec import parse

PREFIX = "/api/v1"
_KEPT_BY_PLURAL = {plural: kind for kind, plural in KEPT_KINDS.items()}


def _kept_kind(request: Request, segment: int) -> str:
    """Secret or ServiceAccount, from the path's plural (the routes are only those two)."""
    return _KEPT_BY_PLURAL[request.url.path.rstrip("/").split("/")[segment]]


def service_document(service: Service) -> dict[str, Any]:
    """The InferenceService as stored, with server-side metadata and its full status."""
    doc = dict(service.document)
    meta = dict(doc.get("metadata", {}))
    meta.setdefault("namespace", service.isvc.metadata.namespace)
    meta["generation"] = service.generation
    meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(service.created))
    doc["metadata"] = meta
    doc["status"] = service.status
    return doc


class ControlAPI:
    def __init__(self, control: LocalControlPlane, token: str, canaries: LocalCanaries | None = None) -> None:
        self.control = control
        self.token = token
        self.canaries = canaries

    def _authorise(self, request: Request) -> None:
        host = request.client.host if request.client else ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise Forbidden("the control API answers loopback clients only")
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise Unauthorized(
                "missing or wrong control API token (it is in the state directory's 'token' file)"
            )

    async def list_services(self, request: Request) -> Response:
        self._authorise(request)
        return JSONBody({"items": [service_document(s) for s in self.control.services.values()]})

    async def apply(self, request: Request) -> Response:
        self._authorise(request)
        body = await read_body(request, 4 * 1024 * 1024)
        try:
            documents = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"body is not JSON: {exc}") from exc
        if not isinstance(documents, list) or not documents:
            raise BadRequest("body must be a non-empty JSON list of InferenceService documents")
        canaries = [d for d in documents if isinstance(d, dict) and d.get("kind") == "Canary"]
        runtimes = [d for d in documents if is_runtime_document(d)]
        services = [
            d
            for d in documents
            if not (isinstance(d, dict) and d.get("kind") == "Canary") and not is_runtime_document(d)
        ]
        if canaries and self.canaries is None:
            raise BadRequest("this server does not run Canary policies")
        for doc in canaries:  # validate all before touching anything
            parse_canary(doc)
        catalog = self.control.runtimes.preview(runtimes)  # explicit `runtime:` checked against these
        parsed = [parse(doc) for doc in services]
        grpc_routed = "--grpc-port" in self.control.predictor_flags
        warned = []
        for isvc in parsed:
            catalog.check(isvc)
            check_local_predictor(isvc.spec.predictor)  # every document checked before any is applied
            if isvc.spec.transformer is not None:  # a custom transformer image: refused now, not later
                check_local_transformer(Revision.from_spec(isvc))
            # (and its warnings made: nothing after)
            warned.append(isvc.warnings(grpc_routed=grpc_routed) + self.control.storage_warnings(isvc))
        runtime_warned = [runtime_warnings(parse_runtime(d), local=True) for d in runtimes]
        applied = [
            {**doc, "warnings": warnings}
            for doc, warnings in zip(await self.control.apply_runtimes(runtimes), runtime_warned, strict=True)
        ]
        for isvc, doc, warnings in zip(parsed, services, warned, strict=True):
            service = await self.control.apply(isvc, doc)
            applied.append({**service_document(service), "warnings": warnings})
        for doc in canaries:
            assert self.canaries is not None
            canary = self.canaries.apply(doc)
            applied.append({**self.canaries.document_with_status(canary.target_key), "warnings": []})
        return JSONBody({"items": applied})

    async def get_service(self, request: Request) -> Response:
        self._authorise(request)
        p = request.path_params
        return JSONBody(service_document(self.control.get(p["namespace"], p["name"])))

    async def delete_service(self, request: Request) -> Response:
        self._authorise(request)
        p = request.path_params
        await self.control.delete(p["namespace"], p["name"])
        return JSONBody({"deleted": f"{p['namespace']}/{p['name']}"})

    async def rollout(self, request: Request) -> Response:
        """Steer a rollout (see serving.control.local.rollout_api); answers the service and its rollout status."""
        self._authorise(request)
        p = request.path_params
        service = self.control.get(p["namespace"], p["name"])
        action = p["action"]
        if action not in ACTIONS:
            raise BadRequest(f"unknown rollout action {action!r}; use one of {', '.join(ACTIONS)}")
        body = await read_body(request, 64 * 1024)
        try:
            options = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"body is not JSON: {exc}") from exc
        updated, outcome = await rollout_action(
            self.control, service, self.canaries, action, options if isinstance(options, dict) else {}
        )
        return JSONBody(
            {**service_document(updated), "rollout": rollout_status(updated, self.canaries), **outcome}
        )

    async def rollout_info(self, request: Request) -> Response:
        self._authorise(request)
        p = request.path_params
        service = self.control.get(p["namespace"], p["name"])
        if p["what"] == "status":
            since = request.query_params.get("since")
            if since is not None and not since.isdigit():
                raise BadRequest(
                    f"since={since!r}: give the `seq` of an earlier answer (0: every change kept)"
                )
            return JSONBody(rollout_status(service, self.canaries, None if since is None else int(since)))
        if p["what"] == "history":
            return JSONBody(rollout_history(self.control, service, self.canaries))
        raise NotFound(f"no rollout view {p['what']!r}; use status or history")

    async def list_runtimes(self, request: Request) -> Response:
        self._authorise(request)
        return JSONBody({"items": self.control.runtimes.items()})

    async def delete_runtime(self, request: Request) -> Response:
        """Answers `{"deleted": ..., "warnings": [...]}`: a runtime in use is deleted, with a warning."""
        self._authorise(request)
        p = request.path_params
        namespace = p.get("namespace")
        kind = "ServingRuntime" if namespace is not None else "ClusterServingRuntime"
        warnings = await self.control.delete_runtime(kind, namespace, p["name"])
        deleted = f"{namespace}/{p['name']}" if namespace is not None else p["name"]
        return JSONBody({"deleted": deleted, "kind": kind, "warnings": warnings})

    async def put_object(self, request: Request) -> Response:
        """Keep a `v1` Secret or ServiceAccount (what a model's `storage:` or its service account's credentials
        read); the answer never holds a value."""
        self._authorise(request)
        p = request.path_params
        kind = _kept_kind(request, -2)
        body = await read_body(request, 2 * 1024 * 1024)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest("body is not JSON") from exc  # never the parser's excerpt of the body
        if not is_kept_document(doc) or doc.get("kind") != kind:
            raise BadRequest(f"body must be a v1 {kind} document")
        if (doc.get("metadata") or {}).get("name") != p["name"]:
            raise BadRequest(f"the {kind}'s metadata.name must be {p['name']!r}, as in the path")
        outcome = await self.control.apply_object(p["namespace"], doc)
        return JSONBody({"namespace": p["namespace"], "name": p["name"], "outcome": outcome})

    async def delete_object(self, request: Request) -> Response:
        self._authorise(request)
        p = request.path_params
        await self.control.delete_object(_kept_kind(request, -2), p["namespace"], p["name"])
        return JSONBody({"deleted": f"{p['namespace']}/{p['name']}"})

    async def list_objects(self, request: Request) -> Response:
        self._authorise(request)
        return JSONBody({"items": self.control.kept(_kept_kind(request, -1)).names()})

    async def list_canaries(self, request: Request) -> Response:
        self._authorise(request)
        return JSONBody({"items": self.canaries.items() if self.canaries else []})

    async def canary(self, request: Request) -> Response:
        self._authorise(request)
        p = request.path_params
        if self.canaries is None:
            raise NotFound("this server runs no Canary policies")
        if request.method == "DELETE":
            kept = await delete_canary(self.control, self.canaries, p["namespace"], p["name"])
            return JSONBody({"deleted": f"{p['namespace']}/{p['name']}", "warnings": kept})
        match = [
            c
            for c in self.canaries.items()
            if c["metadata"]["name"] == p["name"]
            and c["metadata"].get("namespace", "default") == p["namespace"]
        ]
        if not match:
            raise NotFound(f"Canary {p['namespace']}/{p['name']} not found")
        return JSONBody(match[0])


def build_control_app(
    control: LocalControlPlane, token: str, canaries: LocalCanaries | None = None
) -> Starlette:
    api = ControlAPI(control, token, canaries)
    item = PREFIX + "/namespaces/{namespace}/inferenceservices/{name}"
    routes = [
        Route(PREFIX + "/inferenceservices", api.list_services, methods=["GET"]),
        Route(PREFIX + "/inferenceservices", api.apply, methods=["POST"]),
        Route(item, api.get_service, methods=["GET"]),
        Route(item, api.delete_service, methods=["DELETE"]),
        Route(item + "/rollout/{action}", api.rollout, methods=["POST"]),
        Route(item + "/rollout/{what}", api.rollout_info, methods=["GET"]),
        Route(PREFIX + "/canaries", api.list_canaries, methods=["GET"]),
        *[
            route
            for plural in KEPT_KINDS.values()
            for route in (
                Route(f"{PREFIX}/{plural}", api.list_objects, methods=["GET"]),
                Route(
                    f"{PREFIX}/namespaces/{{namespace}}/{plural}/{{name}}", api.put_object, methods=["PUT"]
                ),
                Route(
                    f"{PREFIX}/namespaces/{{namespace}}/{plural}/{{name}}",
                    api.delete_object,
                    methods=["DELETE"],
                ),
            )
        ],
        Route(PREFIX + "/servingruntimes", api.list_runtimes, methods=["GET"]),
        Route(
            PREFIX + "/namespaces/{namespace}/servingruntimes/{name}", api.delete_runtime, methods=["DELETE"]
        ),
        Route(PREFIX + "/clusterservingruntimes/{name}", api.delete_runtime, methods=["DELETE"]),
        Route(PREFIX + "/namespaces/{namespace}/canaries/{name}", api.canary, methods=["GET", "DELETE"]),
    ]
    # InternalErrors: an unexpected exception is a JSON 500 naming its type, logged without its message
    return Starlette(
        routes=routes, exception_handlers=EXCEPTION_HANDLERS, middleware=[Middleware(InternalErrors)]
    )
