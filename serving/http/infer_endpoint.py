"""The inference endpoint for both protocols, as a plain ASGI app under its Starlette Route.

Every prediction crosses it, so it skips the per-request `Request` object and handler wrapping: read the
body from the ASGI channel, hand bytes to the data plane with the protocol's codec, send the bytes back.
Errors still propagate to the app's one exception handler.

`InferFrontDoor` goes one step further for the two unversioned inference paths: it sits outside Starlette and
calls the endpoint directly, answering errors itself the way the app's handlers do. That skips six awaited
layers (error middlewares, exception middleware, router, route) per prediction; every other request, and
every request it does not recognise, goes to the Starlette app unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from serving.dataplane import DataPlane
from serving.errors import ServingError
from serving.http.body import receive_body
from serving.http.errors import log_unexpected, send_error
from serving.protocol.codec import Codec
from serving.protocol.v2_codec import HEADER_LENGTH

_HEADER_LENGTH = HEADER_LENGTH.encode()


class InferEndpoint:
    def __init__(self, dataplane: DataPlane, codec: Codec) -> None:
        self.dataplane = dataplane
        self.codec = codec

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        params = scope["path_params"]
        await send_answer(send, *await self.answer(params["name"], params.get("version"), scope, receive))

    async def answer(self, name: str, version: str | None, scope: Any, receive: Callable) -> tuple[bytes, list]:
        """The response body and raw headers for one inference request (errors raise ServingError)."""
        raw_headers = scope["headers"]
        body = await receive_body(raw_headers, receive, self.dataplane.limits.max_body_bytes)
        headers = {}
        for key, value in raw_headers:
            if key == _HEADER_LENGTH:
                headers[HEADER_LENGTH] = value.decode("latin-1")
        content, out = await self.dataplane.infer(name, version, body, headers, self.codec)
        response_headers = [(k.encode(), v.encode()) for k, v in out.items()]
        response_headers.append((b"content-length", str(len(content)).encode()))
        return content, response_headers


async def send_answer(send: Callable, content: bytes, headers: list) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})


class InferFrontDoor:
    """ASGI: `POST /v2/models/NAME/infer` and `POST /v1/models/NAME:predict` straight to their endpoint."""

    def __init__(self, app: Any, v1: InferEndpoint, v2: InferEndpoint) -> None:
        self.app, self.v1, self.v2 = app, v1, v2

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = self._target(scope["path"])
            if target is not None:
                await self._infer(*target, scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _target(self, path: str) -> tuple[InferEndpoint, str] | None:
        """Endpoint and model name for the two unversioned inference paths; None for anything else."""
        if path.startswith("/v2/models/") and path.endswith("/infer"):
            endpoint, name = self.v2, path[11:-6]
        elif path.startswith("/v1/models/") and path.endswith(":predict"):
            endpoint, name = self.v1, path[11:-8]
        else:
            return None
        if not name or "/" in name:
            return None  # versioned, or not a model path at all: Starlette's routing decides
        return endpoint, name

    async def _infer(self, endpoint: InferEndpoint, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            content, headers = await endpoint.answer(name, None, scope, receive)
        except ServingError as exc:
            await send_error(send, "POST", scope["path"], exc)
            return
        except ClientDisconnect:
            return
        except Exception as exc:  # noqa: BLE001 - the last resort, as InternalErrors does for the app
            log_unexpected("POST", scope["path"], exc)
            await send_error(send, "POST", scope["path"], unexpected=exc)
            return
        await send_answer(send, content, headers)

