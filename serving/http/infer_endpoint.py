"""The inference endpoint for both protocols, as a plain ASGI app under its Starlette Route.

Every prediction crosses it, so it skips the per-request `Request` object and handler wrapping: read the
body from the ASGI channel, hand bytes to the data plane with the protocol's codec, send the bytes back.
Errors still propagate to the app's one exception handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from serving.dataplane import DataPlane
from serving.http.body import receive_body
from serving.protocol.codec import Codec
from serving.protocol.v2_codec import HEADER_LENGTH

_HEADER_LENGTH = HEADER_LENGTH.encode()


class InferEndpoint:
    def __init__(self, dataplane: DataPlane, codec: Codec) -> None:
        self.dataplane = dataplane
        self.codec = codec

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        raw_headers = scope["headers"]
        body = await receive_body(raw_headers, receive, self.dataplane.limits.max_body_bytes)
        headers = {}
        for key, value in raw_headers:
            if key == _HEADER_LENGTH:
                headers[HEADER_LENGTH] = value.decode("latin-1")
        params = scope["path_params"]
        content, out = await self.dataplane.infer(params["name"], params.get("version"), body, headers, self.codec)
        response_headers = [(k.encode(), v.encode()) for k, v in out.items()]
        response_headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send({"type": "http.response.body", "body": content})
