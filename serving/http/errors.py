"""The one error handler: every failure becomes `{"error": "..."}` with the right status."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import ServingError, unserved_extension

log = logging.getLogger("serving.http")


def error_answer(exc: BaseException, method: str, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The one mapping from an exception to its answer: status, raw headers and `{"error": ...}` body.

    Every error of every HTTP entrance (model server, router, control API) is answered from here."""
    if isinstance(exc, ServingError):
        _log_model_failure(exc, method, path)
        status, message = exc.status_code, exc.message
        extra: Mapping[str, str] = exc.headers or {}
    elif isinstance(exc, HTTPException):  # Starlette's routing: no route, wrong method
        status, extra = exc.status_code, exc.headers or {}
        message = {
            404: f"no route for {path}{unserved_extension(path)}",
            405: f"method {method} not allowed on {path}",
        }.get(status, str(exc.detail))
    else:
        log_unexpected(method, path, exc)
        status, message, extra = 500, f"internal error: {type(exc).__name__}", {}
    content = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
    return status, headers, content


def _log_model_failure(exc: ServingError, method: str, path: str) -> None:
    if (
        exc.status_code == 500
    ):  # a model failure: operators need to know, but its message may quote the payload
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else type(exc).__name__
        log.error("model failure on %s %s: %s (message withheld from logs)", method, path, cause)


async def send_error(send: Send, exc: BaseException, method: str, path: str) -> None:
    """`error_answer` sent as raw ASGI messages, for code outside Starlette's handlers."""
    status, headers, content = error_answer(exc, method, path)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


async def error_response(request: Request, exc: Exception) -> Response:
    """`error_answer` as Starlette's exception handler."""
    status, headers, content = error_answer(exc, request.method, request.url.path)
    response = Response(content, status_code=status)
    response.raw_headers = headers
    return response


def log_unexpected(method: str, path: str, exc: BaseException) -> None:
    # The traceback's frames, not the exception's message: messages can quote request data (no payloads in logs).
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error(
        "unhandled %s on %s %s (message withheld from logs)\n%s", type(exc).__name__, method, path, frames
    )


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
            if started:
                log_unexpected(scope.get("method", ""), scope.get("path", ""), exc)
            else:
                await send_error(send, exc, scope.get("method", ""), scope.get("path", ""))


EXCEPTION_HANDLERS = {ServingError: error_response, HTTPException: error_response}
