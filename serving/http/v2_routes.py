"""Open Inference Protocol (V2) REST endpoints: health, metadata, infer, repository extension."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

import serving
from serving.dataplane import DataPlane
from serving.errors import BadRequest, ModelFailure
from serving.http.body import JSONBody, read_body
from serving.protocol.dtypes import v2_datatype
from serving.protocol.json_body import loads_object
from serving.repository import Model
from serving.types import TensorSpec

EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "model_configuration"]


class V2Endpoints:
    def __init__(self, dataplane: DataPlane, server_name: str = "serving") -> None:
        self.dataplane = dataplane
        self.repository = dataplane.repository
        self.server_name = server_name

    async def server_metadata(self, request: Request) -> Response:
        return JSONBody({"name": self.server_name, "version": serving.__version__, "extensions": EXTENSIONS})

    async def live(self, request: Request) -> Response:
        return JSONBody({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self.repository.all_ready()
        return JSONBody({"ready": ready}, status_code=200 if ready else 503)

    async def model_ready(self, request: Request) -> Response:
        model = self._model(request)
        body: dict[str, Any] = {"name": model.name, "ready": model.ready}
        if not model.ready and model.reason:
            body["reason"] = model.reason
        return JSONBody(body, status_code=200 if model.ready else 503)

    async def model_metadata(self, request: Request) -> Response:
        model = self.repository.ready_model(request.path_params["name"], request.path_params.get("version"))
        return JSONBody(model_metadata(model))

    async def model_config(self, request: Request) -> Response:
        model = self.repository.ready_model(request.path_params["name"], request.path_params.get("version"))
        return JSONBody(model_config(model))

    async def repository_index(self, request: Request) -> Response:
        body = await read_body(request, 65536)
        ready_only = loads_object(body).get("ready") if body.strip() else None
        if ready_only is not None and not isinstance(ready_only, bool):  # "false" would filter as if true
            raise BadRequest(f"'ready' must be true or false, not {ready_only!r}")
        return JSONBody(self.repository.index(ready_only))

    async def repository_load(self, request: Request) -> Response:
        body = await read_body(request, 65536)
        if body.strip():
            parameters = loads_object(body).get("parameters")
            if parameters is not None and not isinstance(parameters, dict):
                raise BadRequest(f"'parameters' must be an object, not {type(parameters).__name__}")
            check_load_parameters(parameters or {})
        model = await self.repository.load(request.path_params["name"], requested=True)
        if not model.ready:
            raise ModelFailure(
                model.reason or f"failed to load model {model.name!r}"
            )  # the reason names model and cause
        return JSONBody({})

    async def repository_unload(self, request: Request) -> Response:
        await self.repository.unload(request.path_params["name"])
        return JSONBody({})

    def _model(self, request: Request) -> Model:
        return self.repository.get(request.path_params["name"], request.path_params.get("version"))


def check_load_parameters(names: Iterable[str]) -> None:
    """Repository `load` takes none of Triton's parameters: a model configuration override (`config`) or model
    files (`file:<version>/<name>`) that were ignored would load something other than what the caller sent."""
    for name in sorted(names, key=lambda name: name != "config"):
        if name == "config":
            raise BadRequest(
                "load parameter 'config' is not supported: this server takes no model configuration "
                "overrides; the model loads (or reloads) from its folder as it is"
            )
        if name.startswith("file:"):
            raise BadRequest(
                f"load parameter {name!r} is not supported: this server takes no model files in a load "
                "request; put them in the model's folder, then load"
            )
        raise BadRequest(f"unknown load parameter {name!r}; load takes no parameters")


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": v2_datatype(spec.dtype), "shape": list(spec.shape)}


def model_metadata(model: Model) -> dict[str, Any]:
    meta = model.meta
    if meta is None:
        raise BadRequest(f"model {model.name!r} has no metadata yet")
    return {
        "name": model.name,
        "versions": [model.settings.version],
        "platform": meta.platform,
        "inputs": [_tensor(t) for t in meta.inputs],
        "outputs": [_tensor(t) for t in meta.outputs],
    }


def model_config(model: Model) -> dict[str, Any]:
    """Triton-style model configuration (the `model_configuration` extension, read-only). Triton's rule:
    with max_batch_size > 0 a tensor's full shape is [-1] + dims, so `dims` leave out the leading batch
    dimension the batcher stacks requests along; metadata keeps the full shapes."""
    meta = model.meta
    assert meta is not None
    batched = model.settings.max_batch_size > 0

    def entry(t: TensorSpec) -> dict[str, Any]:
        return {
            "name": t.name,
            "data_type": "TYPE_" + v2_datatype(t.dtype).replace("BYTES", "STRING"),
            "dims": list(t.shape[1:] if batched else t.shape),
        }

    return {
        "name": model.name,
        "platform": meta.platform,
        "backend": meta.platform,
        "max_batch_size": model.settings.max_batch_size,
        "input": [entry(t) for t in meta.inputs],
        "output": [entry(t) for t in meta.outputs],
    }
