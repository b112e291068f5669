"""Reading request bodies within the size limit, and JSON responses via orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive

from serving.errors import PayloadTooLarge, UnsupportedMediaType
from serving.http.content_encoding import inflate

_REFUSED_TYPES = (b"multipart/", b"image/", b"audio/", b"video/")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body of a Starlette request (see `receive_body`)."""
    return await receive_body(request.scope["headers"], request.receive, limit)


async def receive_body(
    headers: list[tuple[bytes, bytes]], receive: Receive, limit: int, inflated: bool = True
) -> bytes:
    """The whole body from the ASGI channel, refusing (413) as soon as it is known to exceed `limit` bytes;
    a compressed one inflated (within the same limit), unless `inflated` is False: then the bytes as they came
    (a proxy forwards them with their Content-Encoding)."""
    encoding = b""
    for name, value in headers:
        if name == b"content-encoding":
            encoding = value
        if name == b"content-type" and value.startswith(_REFUSED_TYPES):
            kind = value.decode("latin-1").split(";")[0]
            raise UnsupportedMediaType(
                f"Content-Type {kind!r} is not accepted; send JSON "
                "(or the binary tensor extension as application/octet-stream)"
            )
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(f"request body of {int(value)} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            return inflate(body, encoding, limit) if encoding and inflated else body


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
