"""The one error handler: every failure becomes `{"error": "..."}` with the right status."""

from __future__ import annotations

import logging
import traceback

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from serving.errors import ServingError
from serving.http.body import JSONBody

log = logging.getLogger("serving.http")


async def serving_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    if exc.status_code == 500:  # a model failure: operators need to know, but its message may quote the payload
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else type(exc).__name__
        log.error("model failure on %s %s: %s (message withheld from logs)", request.method, request.url.path, cause)
    return JSONBody({"error": exc.message}, status_code=exc.status_code, headers=exc.headers or None)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: f"no route for {request.url.path}", 405: f"method {request.method} not allowed on {request.url.path}"}
    message = messages.get(exc.status_code, str(exc.detail))
    return JSONBody({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    # The traceback's frames, not the exception's message: messages can quote request data (no payloads in logs).
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unhandled %s on %s %s (message withheld from logs)\n%s", type(exc).__name__, request.method,
              request.url.path, frames)
    return JSONBody({"error": f"internal error: {type(exc).__name__}"}, status_code=500)


EXCEPTION_HANDLERS = {ServingError: serving_error, HTTPException: http_error, Exception: unexpected_error}
