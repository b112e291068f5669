"""The transformer's hop to its predictor: one pooled async httpx client, V1 or V2 JSON, mapped errors.

Failures keep their meaning for the client: the predictor's own error comes back with its status and
message; a predictor that cannot be reached is a 503 with Retry-After (the supervisor is restarting it);
one that does not answer within the timeout is a 504.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import numpy as np
import orjson

from serving.errors import GatewayTimeout, ModelFailure, ServiceUnavailable, ServingError
from serving.protocol.dtypes import numpy_dtype, v2_datatype
from serving.protocol.v2_codec import decode_json_data, json_data
from serving.settings import Limits
from serving.types import TensorDict

PROTOCOLS = ("v1", "v2")
_JSON = {"content-type": "application/json"}
_NO_LIMITS = Limits(max_tensor_elements=2**62, max_json_depth=1024)  # the predictor's answer is trusted


class PredictorError(ServingError):
    """An error the predictor answered with: same status and message for the transformer's client."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.status_code = status_code


class PredictorClient:
    """Calls one model on one predictor server over V1 or V2; connections are kept alive and reused."""

    def __init__(self, url: str, model: str, protocol: str = "v1", timeout_s: float = 60.0,
                 max_connections: int = 100) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
        self.url = url.rstrip("/")
        self.model = model
        self.protocol = protocol
        self.timeout_s = timeout_s
        self._infer_path = f"/v1/models/{model}:predict" if protocol == "v1" else f"/v2/models/{model}/infer"
        self._ready_path = f"/v1/models/{model}" if protocol == "v1" else f"/v2/models/{model}/ready"
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout_s, limits=limits)

    async def infer(self, inputs: TensorDict, parameters: dict[str, Any] | None = None) -> TensorDict:
        body = encode_v1(inputs) if self.protocol == "v1" else encode_v2(inputs, parameters)
        response = await self._post(body)
        if response.status_code != 200:
            raise _predictor_error(response)
        try:
            doc = orjson.loads(response.content)
            return decode_v1(doc) if self.protocol == "v1" else decode_v2(doc)
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
            raise ModelFailure(f"predictor {self.model!r} at {self.url} sent an unreadable answer: {exc}") from exc

    async def _post(self, body: bytes) -> httpx.Response:
        try:
            return await self._http.post(self._infer_path, content=body, headers=_JSON)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise ServiceUnavailable(f"predictor {self.model!r} at {self.url} is unreachable: {_why(exc)}") from exc
        except httpx.PoolTimeout as exc:
            raise ServiceUnavailable(
                f"predictor {self.model!r} at {self.url}: all connections busy for {self.timeout_s:g}s"
            ) from exc
        except httpx.TimeoutException as exc:
            raise GatewayTimeout(f"predictor {self.model!r} did not answer within {self.timeout_s:g}s") from exc
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"predictor {self.model!r} at {self.url} failed: {_why(exc)}") from exc

    async def ready(self, timeout_s: float = 1.0) -> tuple[bool, str]:
        """(ready, why not) from the predictor's model readiness endpoint."""
        try:
            response = await self._http.get(self._ready_path, timeout=min(timeout_s, self.timeout_s))
        except httpx.HTTPError as exc:
            return False, f"predictor {self.model!r} at {self.url} is unreachable: {_why(exc)}"
        if response.status_code == 200:
            return True, ""
        return False, f"predictor {self.model!r} at {self.url} is not ready ({response.status_code})"

    async def aclose(self) -> None:
        await self._http.aclose()


def _why(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _predictor_error(response: httpx.Response) -> PredictorError:
    try:
        doc = orjson.loads(response.content)
        message = doc["error"] if isinstance(doc, dict) and isinstance(doc.get("error"), str) else response.text
    except orjson.JSONDecodeError:
        message = response.text
    retry_after = response.headers.get("retry-after")
    headers = {"Retry-After": retry_after} if retry_after else None
    return PredictorError(response.status_code, message or f"predictor answered {response.status_code}", headers)


def encode_v1(inputs: TensorDict) -> bytes:
    """One tensor -> `instances` (rows); several -> `inputs` as named columns."""
    if len(inputs) == 1:
        (array,) = inputs.values()
        doc: dict[str, Any] = {"instances": _jsonable(array)}
    else:
        doc = {"inputs": {name: _jsonable(array) for name, array in inputs.items()}}
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def _jsonable(array: np.ndarray) -> Any:
    if array.dtype.kind in "OSU":
        return np.asarray(json_data(array, "BYTES"), dtype=object).reshape(array.shape).tolist()
    return np.ascontiguousarray(array) if array.dtype.isnative else array.tolist()


def encode_v2(inputs: TensorDict, parameters: dict[str, Any] | None = None) -> bytes:
    tensors = []
    for name, array in inputs.items():
        datatype = v2_datatype(array.dtype)
        tensors.append({"name": name, "datatype": datatype, "shape": list(array.shape), "data": json_data(array, datatype)})
    doc: dict[str, Any] = {"inputs": tensors}
    if parameters:
        doc["parameters"] = parameters
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_v1(doc: Any) -> TensorDict:
    """`predictions` rows -> one tensor named `predictions`; rows of objects -> one tensor per key."""
    predictions = doc["predictions"]
    if not isinstance(predictions, list):
        raise ValueError("'predictions' is not a list")
    if predictions and isinstance(predictions[0], dict):
        return {key: _array([row[key] for row in predictions]) for key in predictions[0]}
    return {"predictions": _array(predictions)}


def _array(values: list[Any]) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind == "U":
        array = np.char.encode(array, "utf-8").astype(object)
    return array


def decode_v2(doc: Any) -> TensorDict:
    outputs: TensorDict = {}
    for raw in doc["outputs"]:
        name, datatype = raw["name"], raw["datatype"]
        shape = tuple(raw["shape"])
        outputs[name] = decode_json_data(
            raw["data"], name, datatype, numpy_dtype(datatype), shape, math.prod(shape), _NO_LIMITS
        )
    return outputs
