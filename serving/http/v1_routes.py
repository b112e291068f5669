"""KServe V1 endpoints: list, status and `:predict`, over the same data plane as V2."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from serving.dataplane import DataPlane
from serving.http.body import JSONBody, read_body
from serving.protocol.codec import V1


class V1Endpoints:
    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self.repository = dataplane.repository

    async def list_models(self, request: Request) -> Response:
        return JSONBody({"models": self.repository.names()})

    async def model_status(self, request: Request) -> Response:
        model = self.repository.get(request.path_params["name"])
        return JSONBody({"name": model.name, "ready": model.ready}, status_code=200 if model.ready else 503)

    async def predict(self, request: Request) -> Response:
        body = await read_body(request, self.dataplane.limits.max_body_bytes)
        content, headers = await self.dataplane.infer(request.path_params["name"], None, body, request.headers, V1)
        return Response(content, headers=headers)
