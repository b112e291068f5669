"""The transformer's hop to its predictor: pooled keep-alive HTTP/1.1, V1 or V2 JSON, mapped errors.

The connections come from our one HTTP/1.1 client (`serving.http_client`, also the router's): measured on
the iris example (wrk, 16 connections, records in -> labels out), the transformer served 625 req/s with it
and 215 req/s with an httpx.AsyncClient, whose request machinery was ~58 % of the transformer's CPU.

Failures keep their meaning for the client: the predictor's own error comes back with its status and
message; a predictor that cannot be reached is a 503 with Retry-After (the supervisor is restarting it);
one that does not answer within the timeout is a 504.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from serving.errors import GatewayTimeout, ModelFailure, ServiceUnavailable, ServingError
from serving.http_client import HTTPClient, UpstreamConnectError
from serving.observability.propagation import outgoing
from serving.protocol.dtypes import numpy_dtype, v2_datatype
from serving.protocol.v2_codec import decode_json_data, json_data
from serving.settings import Limits
from serving.types import TensorDict

PROTOCOLS = ("v1", "v2")
_JSON = [(b"content-type", b"application/json")]
Headers = list[tuple[bytes, bytes]]
_NO_LIMITS = Limits(max_tensor_elements=2**62, max_json_depth=1024)  # the predictor's answer is trusted


class PredictorError(ServingError):
    """An error the predictor answered with: same status and message for the transformer's client."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.status_code = status_code


class PredictorRefused(ServingError):
    """The predictor answers, and will not serve the model whatever the wait: it has no such model, or its load
    failed. The transformer is then unavailable with this reason (not waiting), which `serving up` reports."""

    status_code = 503


class PredictorClient:
    """Calls one model on one predictor server over V1 or V2; connections are kept alive and reused."""

    def __init__(
        self, url: str, model: str, protocol: str = "v1", timeout_s: float = 60.0, retries: int = 0
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
        if not url.startswith("http://"):
            raise ValueError(
                f"predictor URL {url!r}: only plain http:// is supported (loopback or in-cluster)"
            )
        self.url = url.rstrip("/")
        self.model = model
        self.protocol = protocol
        self.timeout_s = timeout_s
        self.retries = retries  # KServe's predictor_request_retries: connection failures only
        self._infer_path = f"/v1/models/{model}:predict" if protocol == "v1" else f"/v2/models/{model}/infer"
        self._ready_path = f"/v1/models/{model}" if protocol == "v1" else f"/v2/models/{model}/ready"
        where = urlsplit(self.url)
        # OpenTelemetry's HTTP client span attributes of every call (its status is set per call)
        self.span_attributes = {
            "http.request.method": "POST",
            "server.address": where.hostname or "",
            "server.port": where.port or 80,
            "url.full": self.url + self._infer_path,
            "serving.predictor": self.url,
        }
        self._pool = HTTPClient(connect_timeout_s=min(timeout_s, 5.0))

    async def infer(
        self,
        inputs: TensorDict,
        parameters: dict[str, Any] | None = None,
        outputs: tuple[str, ...] | None = None,
    ) -> TensorDict:
        body = encode_v1(inputs) if self.protocol == "v1" else encode_v2(inputs, parameters, outputs)
        status, headers, content = await self._request("POST", self._infer_path, body, self.timeout_s)
        if status != 200:
            raise _predictor_error(status, headers, content)
        try:
            doc = orjson.loads(content)
            return decode_v1(doc) if self.protocol == "v1" else decode_v2(doc)
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
            raise ModelFailure(
                f"predictor {self.model!r} at {self.url} sent an unreadable answer: {exc}"
            ) from exc

    async def _request(
        self, method: str, path: str, body: bytes, timeout_s: float
    ) -> tuple[int, Headers, bytes]:
        try:
            for _ in range(self.retries):  # nothing reached the predictor: safe to send again
                try:
                    return await self._pool.request(self.url, method, path, outgoing(_JSON), body, timeout_s)
                except UpstreamConnectError:
                    continue
            return await self._pool.request(self.url, method, path, outgoing(_JSON), body, timeout_s)
        except UpstreamConnectError as exc:
            raise ServiceUnavailable(f"predictor {self.model!r} at {self.url} is unreachable: {exc}") from exc
        except TimeoutError as exc:
            raise GatewayTimeout(f"predictor {self.model!r} did not answer within {timeout_s:g}s") from exc
        except ConnectionError as exc:
            raise ServiceUnavailable(
                f"predictor {self.model!r} at {self.url} failed mid-answer: {exc}"
            ) from exc

    async def ready(self, timeout_s: float = 1.0) -> tuple[bool, str]:
        """(ready, why not) from the predictor's model readiness endpoint; PredictorRefused if it answers that
        it has no such model (404: the transformer calls a name its predictor does not serve)."""
        try:
            status, headers, content = await self._request(
                "GET", self._ready_path, b"", min(timeout_s, self.timeout_s)
            )
        except ServingError as exc:
            return False, exc.message
        if status == 200:
            return True, ""
        if status == 404:
            said = _predictor_error(status, headers, content).message
            raise PredictorRefused(
                f"the predictor at {self.url} has no model {self.model!r}, which this transformer calls (it answered "
                f"404: {said}); "
                "the transformer's --model_name (or --predictor-model) must name the model its predictor serves"
            )
        return False, f"predictor {self.model!r} at {self.url} is not ready ({status})"

    def close(self) -> None:
        self._pool.close()


def _predictor_error(status: int, headers: Headers, content: bytes) -> PredictorError:
    try:
        doc = orjson.loads(content)
        message = doc["error"] if isinstance(doc, dict) and isinstance(doc.get("error"), str) else None
    except orjson.JSONDecodeError:
        message = None
    message = message or content.decode("utf-8", errors="replace").strip() or f"predictor answered {status}"
    retry_after = next((v.decode("latin-1") for k, v in headers if k == b"retry-after"), None)
    return PredictorError(status, message, {"Retry-After": retry_after} if retry_after else None)


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


def encode_v2(
    inputs: TensorDict, parameters: dict[str, Any] | None = None, outputs: tuple[str, ...] | None = None
) -> bytes:
    tensors = []
    for name, array in inputs.items():
        datatype = v2_datatype(array.dtype)
        tensors.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
                "data": json_data(array, datatype),
            }
        )
    doc: dict[str, Any] = {"inputs": tensors}
    if outputs:
        doc["outputs"] = [{"name": name} for name in outputs]
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
