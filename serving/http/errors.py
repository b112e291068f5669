"""The one error handler: every failure becomes `{"error": "..."}` with the right status."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from serving.errors import ServingError
from serving.http.body import JSONBody

log = logging.getLogger("serving.http")


async def serving_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    return JSONBody({"error": exc.message}, status_code=exc.status_code, headers=exc.headers or None)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: f"no route for {request.url.path}", 405: f"method {request.method} not allowed on {request.url.path}"}
    message = messages.get(exc.status_code, str(exc.detail))
    return JSONBody({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONBody({"error": f"internal error: {type(exc).__name__}"}, status_code=500)


EXCEPTION_HANDLERS = {ServingError: serving_error, HTTPException: http_error, Exception: unexpected_error}
