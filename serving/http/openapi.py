"""The OpenAPI 3.0 document of the model server's REST API (V1 and Open Inference Protocol V2), at `/openapi.json`.

Written by hand from the OIP REST specification's field names (our own schemas, not a copy), so clients and
fuzzers (schemathesis in tests/test_fuzz_openapi.py) know every route; a test checks that every route in
`http/app.py` appears here. Serialised once at import: the endpoint returns the same bytes every time.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

import serving

DATATYPES = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
_ERRORS = {
    "400": "Bad input: malformed JSON, wrong types, shape/data mismatch, a limit exceeded (names the problem)",
    "404": "Unknown model or version",
    "413": "Body over --max-body-bytes",
    "415": "Content-Type not accepted (multipart, image, audio, video)",
    "503": "Model not ready (loading, unloaded or failed); retry after Retry-After seconds",
    "504": "Model did not answer within --request-timeout",
    "500": "The model failed",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_PARAMETERS = {"type": "object", "additionalProperties": True, "description": "free-form parameters"}
_SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 0}}
_ANY_JSON: dict[str, Any] = {}

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": {"type": "string", "description": "what was wrong"}}, ["error"]),
    "Live": _obj({"live": _BOOL}, ["live"]),
    "Ready": _obj({"ready": _BOOL}, ["ready"]),
    "ModelReady": _obj({"name": _STR, "ready": _BOOL, "reason": _STR}, ["name", "ready"]),
    "ServerMetadata": _obj(
        {"name": _STR, "version": _STR, "extensions": {"type": "array", "items": _STR}},
        ["name", "version", "extensions"],
    ),
    "TensorMetadata": _obj(
        {
            "name": _STR,
            "datatype": {"type": "string", "enum": DATATYPES},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
        ["name", "datatype", "shape"],
    ),
    "ModelMetadata": _obj(
        {
            "name": _STR,
            "versions": {"type": "array", "items": _STR},
            "platform": _STR,
            "inputs": {"type": "array", "items": _ref("TensorMetadata")},
            "outputs": {"type": "array", "items": _ref("TensorMetadata")},
        },
        ["name", "platform"],
    ),
    "ModelConfig": {"type": "object", "description": "Triton-style model configuration (read-only)"},
    "RequestInput": _obj(
        {
            "name": _STR,
            "shape": _SHAPE,
            "datatype": {"type": "string", "enum": DATATYPES},
            "parameters": _obj({"binary_data_size": {"type": "integer", "minimum": 0}}),
            "data": {"description": "row-major values, flat or nested; strings for BYTES", **_ANY_JSON},
        },
        ["name", "shape", "datatype"],
    ),
    "RequestOutput": _obj({"name": _STR, "parameters": _obj({"binary_data": _BOOL})}, ["name"]),
    "InferenceRequest": _obj(
        {
            "id": _STR,
            "parameters": _obj({"binary_data_output": _BOOL}),
            "inputs": {"type": "array", "minItems": 1, "items": _ref("RequestInput")},
            "outputs": {"type": "array", "items": _ref("RequestOutput")},
        },
        ["inputs"],
    ),
    "ResponseOutput": _obj(
        {
            "name": _STR,
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string", "enum": DATATYPES},
            "parameters": _PARAMETERS,
            "data": {"type": "array", "items": _ANY_JSON},
        },
        ["name", "shape", "datatype"],
    ),
    "InferenceResponse": _obj(
        {
            "model_name": _STR,
            "model_version": _STR,
            "id": _STR,
            "parameters": _PARAMETERS,
            "outputs": {"type": "array", "items": _ref("ResponseOutput")},
        },
        ["model_name", "outputs"],
    ),
    "RepositoryIndexRequest": _obj({"ready": _BOOL}),
    "RepositoryLoadRequest": _obj(
        {
            "parameters": {
                "type": "object",
                "maxProperties": 0,
                "description": "none taken: Triton's `config` and `file:...` overrides are a 400",
            }
        }
    ),
    "RepositoryIndex": {
        "type": "array",
        "items": _obj(
            {
                "name": _STR,
                "version": _STR,
                "state": {"type": "string", "enum": ["LOADING", "READY", "UNAVAILABLE"]},
                "reason": _STR,
            },
            ["name", "state"],
        ),
    },
    "V1Request": {
        "type": "object",
        "description": "`instances` (rows) or `inputs` (a list, or an object of named columns)",
        "properties": {
            "instances": {"type": "array", "minItems": 1, "items": _ANY_JSON},
            "inputs": _ANY_JSON,
            "parameters": _PARAMETERS,
        },
    },
    "V1Response": _obj({"predictions": {"type": "array", "items": _ANY_JSON}}, ["predictions"]),
    "V1Models": _obj({"models": {"type": "array", "items": _STR}}, ["models"]),
    "V1ModelStatus": _obj({"name": _STR, "ready": _BOOL}, ["name", "ready"]),
}

_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "model name",
}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
_HEADER_LENGTH = {
    "name": "Inference-Header-Content-Length",
    "in": "header",
    "required": False,
    "schema": {"type": "integer", "minimum": 0},
    "description": "binary tensor extension: bytes of JSON before the binary tensor data",
}


def _op(summary: str, ok: dict[str, Any], errors: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "OK", "content": ok}}
    for code in errors:
        responses[code] = {"description": _ERRORS[code], "content": _json(_ref("Error"))}
    return {"summary": summary, "responses": responses, **extra}


def _body(schema_name: str, binary: bool = False, required: bool = True) -> dict[str, Any]:
    content = _json(_ref(schema_name))
    if binary:
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    return {"required": required, "content": content}


_INFER_ERRORS = ("400", "404", "413", "415", "500", "503", "504")


def _model_paths(prefix: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        prefix: {
            "get": _op("Model metadata", _json(_ref("ModelMetadata")), ("404", "503"), parameters=params)
        },
        prefix + "/ready": {
            "get": _op(
                "Model readiness (503 when not ready)", _json(_ref("ModelReady")), ("404",), parameters=params
            )
        },
        prefix + "/config": {
            "get": _op("Model configuration", _json(_ref("ModelConfig")), ("404", "503"), parameters=params)
        },
        prefix + "/infer": {
            "post": _op(
                "Inference (JSON, or the binary tensor extension)",
                {
                    **_json(_ref("InferenceResponse")),
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
                _INFER_ERRORS,
                parameters=[*params, _HEADER_LENGTH],
                requestBody=_body("InferenceRequest", binary=True),
            )
        },
    }


def build_document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v2": {"get": _op("Server metadata", _json(_ref("ServerMetadata")))},
        "/v2/health/live": {"get": _op("Liveness", _json(_ref("Live")))},
        "/v2/health/ready": {
            "get": _op("Readiness: every model ready (503 otherwise)", _json(_ref("Ready")))
        },
        "/v2/repository/index": {
            "post": _op(
                "Repository index",
                _json(_ref("RepositoryIndex")),
                ("400", "413"),
                requestBody=_body("RepositoryIndexRequest", required=False),
            )
        },
        "/v2/repository/models/{name}/load": {
            "post": _op(
                "Load a model, or reload it if loaded",
                _json({"type": "object"}),
                ("400", "404", "413", "500"),
                parameters=[_NAME],
                requestBody=_body("RepositoryLoadRequest", required=False),
            )
        },
        "/v2/repository/models/{name}/unload": {
            "post": _op("Unload a model", _json({"type": "object"}), ("404",), parameters=[_NAME])
        },
        **_model_paths("/v2/models/{name}", [_NAME]),
        **_model_paths("/v2/models/{name}/versions/{version}", [_NAME, _VERSION]),
        "/v1/models": {"get": _op("V1: model names", _json(_ref("V1Models")))},
        "/v1/models/{name}": {
            "get": _op(
                "V1: model status (503 when not ready)",
                _json(_ref("V1ModelStatus")),
                ("404",),
                parameters=[_NAME],
            )
        },
        "/v1/models/{name}:predict": {
            "post": _op(
                "V1: predict",
                _json(_ref("V1Response")),
                _INFER_ERRORS,
                parameters=[_NAME],
                requestBody=_body("V1Request"),
            )
        },
        "/v1/models/{name}:explain": {
            "post": {
                "summary": "V1: explain (KServe's explainer verb): not supported here, always 404 saying so",
                "parameters": [_NAME],
                "responses": {"404": {"description": "No explainer here", "content": _json(_ref("Error"))}},
            }
        },
        "/metrics": {"get": _op("Prometheus metrics", {"text/plain": {"schema": {"type": "string"}}})},
        "/openapi.json": {"get": _op("This document", _json({"type": "object"}))},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "serving model server",
            "version": serving.__version__,
            "description": 'KServe V1 and Open Inference Protocol (V2) REST; every error is {"error": ...}.',
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }


DOCUMENT_BYTES = orjson.dumps(build_document())


async def openapi_endpoint(request: Request) -> Response:
    return Response(DOCUMENT_BYTES, media_type="application/json")
