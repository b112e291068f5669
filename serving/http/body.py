"""Reading request bodies within the size limit, and JSON responses via orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from serving.errors import PayloadTooLarge, UnsupportedMediaType

_REFUSED_TYPES = ("multipart/", "image/", "audio/", "video/")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed `limit` bytes."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(_REFUSED_TYPES):
        raise UnsupportedMediaType(
            f"Content-Type {content_type.split(';')[0]!r} is not accepted; send JSON "
            "(or the binary tensor extension as application/octet-stream)"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
