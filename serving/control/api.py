"""The control API of `serving up` (loopback only, bearer token from the state directory).

GET/POST /api/v1/inferenceservices, GET/DELETE /api/v1/namespaces/{ns}/inferenceservices/{name},
POST .../{name}/rollout/{promote|rollback}. Bodies are JSON; POST takes a list of InferenceService documents.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.control.local import LocalControlPlane, Service
from serving.errors import BadRequest, Forbidden, Unauthorized
from serving.http.body import JSONBody, read_body
from serving.http.errors import EXCEPTION_HANDLERS
from serving.spec import parse

PREFIX = "/api/v1"


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
    def __init__(self, control: LocalControlPlane, token: str) -> None:
        self.control = control
        self.token = token

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
            raise Unauthorized("missing or wrong control API token (it is in the state directory's 'token' file)")

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
        parsed = [parse(doc) for doc in documents]  # validate all before touching anything
        applied = []
        for isvc, doc in zip(parsed, documents, strict=True):
            service = await self.control.apply(isvc, doc)
            applied.append({**service_document(service), "warnings": isvc.warnings()})
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
        """promote = drop canaryTrafficPercent; rollback = canaryTrafficPercent 0 (KServe's semantics)."""
        self._authorise(request)
        p = request.path_params
        service = self.control.get(p["namespace"], p["name"])
        action = p["action"]
        if action not in ("promote", "rollback"):
            raise BadRequest(f"unknown rollout action {action!r}; use promote or rollback")
        doc = orjson.loads(orjson.dumps(service.document))
        predictor = doc["spec"]["predictor"]
        if action == "promote":
            predictor.pop("canaryTrafficPercent", None)
        else:
            predictor["canaryTrafficPercent"] = 0
        updated = await self.control.apply(parse(doc), doc)
        return JSONBody(service_document(updated))


def build_control_app(control: LocalControlPlane, token: str) -> Starlette:
    api = ControlAPI(control, token)
    item = PREFIX + "/namespaces/{namespace}/inferenceservices/{name}"
    routes = [
        Route(PREFIX + "/inferenceservices", api.list_services, methods=["GET"]),
        Route(PREFIX + "/inferenceservices", api.apply, methods=["POST"]),
        Route(item, api.get_service, methods=["GET"]),
        Route(item, api.delete_service, methods=["DELETE"]),
        Route(item + "/rollout/{action}", api.rollout, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
