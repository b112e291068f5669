"""The one error handler: every failure becomes `{"error": "..."}` with the right status."""

from __future__ import annotations

import logging
import traceback

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import ServingError
from serving.http.body import JSONBody

log = logging.getLogger("serving.http")


async def serving_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    _log_model_failure(exc, request.method, request.url.path)
    return JSONBody({"error": exc.message}, status_code=exc.status_code, headers=exc.headers or None)


def _log_model_failure(exc: ServingError, method: str, path: str) -> None:
    if exc.status_code == 500:  # a model failure: operators need to know, but its message may quote the payload
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else type(exc).__name__
        log.error("model failure on %s %s: %s (message withheld from logs)", method, path, cause)


async def send_error(
    send: Send, method: str, path: str, exc: ServingError | None = None, unexpected: BaseException | None = None
) -> None:
    """The JSON error `serving_error` would answer for `exc` (or the 500 for an `unexpected` exception), sent
    as raw ASGI messages: for code that runs outside Starlette's handlers."""
    if exc is None:
        content = orjson.dumps({"error": f"internal error: {type(unexpected).__name__}"})
        status, extra = 500, {}
    else:
        _log_model_failure(exc, method, path)
        content = orjson.dumps({"error": exc.message})
        status, extra = exc.status_code, exc.headers or {}
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: f"no route for {request.url.path}", 405: f"method {request.method} not allowed on {request.url.path}"}
    message = messages.get(exc.status_code, str(exc.detail))
    return JSONBody({"error": message}, status_code=exc.status_code, headers=exc.headers)


def log_unexpected(method: str, path: str, exc: BaseException) -> None:
    # The traceback's frames, not the exception's message: messages can quote request data (no payloads in logs).
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unhandled %s on %s %s (message withheld from logs)\n%s", type(exc).__name__, method, path, frames)


class InternalErrors:
    """Pure-ASGI last resort for exceptions no handler claimed: logged without their message, answered 500 JSON.

    Starlette's own `Exception` handler re-raises to the server after answering, and uvicorn then logs the full
    exception (message included) — so unexpected errors stop here instead.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            log_unexpected(scope.get("method", ""), scope.get("path", ""), exc)
            if not started:
                await send_error(send, scope.get("method", ""), scope.get("path", ""), unexpected=exc)


EXCEPTION_HANDLERS = {ServingError: serving_error, HTTPException: http_error}
