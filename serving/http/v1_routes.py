"""KServe V1 endpoints: list, status and `:predict`, over the same data plane as V2."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from serving.dataplane import DataPlane
from serving.errors import MethodNotAllowed
from serving.http.body import JSONBody


class V1Endpoints:
    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self.repository = dataplane.repository

    async def list_models(self, request: Request) -> Response:
        return JSONBody({"models": self.repository.names()})

    async def model_status(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        if name.endswith(":predict"):  # `GET .../NAME:predict`: a known path with the wrong method
            raise MethodNotAllowed(
                f"method {request.method} not allowed on {request.url.path}; use POST",
                headers={"Allow": "POST"},
            )
        model = self.repository.get(name)
        return JSONBody({"name": model.name, "ready": model.ready}, status_code=200 if model.ready else 503)
