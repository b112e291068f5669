"""The inference endpoint for both protocols, and the fast lane that reaches it without Starlette's layers.

Every prediction crosses `InferEndpoint`, so it skips the per-request `Request` object and handler
wrapping: read the body from the ASGI channel, hand bytes to the data plane with the protocol's codec,
send the bytes back. It is declared once, as the endpoint of the inference `Route`s in `http/app.py`.

`InferenceFastLane` wraps the Starlette app and matches a POST against exactly those routes' own path
patterns first: a match calls the endpoint directly, skipping six awaited layers (error middlewares,
exception middleware, router, route) per prediction; anything else — other paths, other methods (405),
odd names (404) — goes to the Starlette app unchanged. Both ways answer errors with the one
`errors.send_error` / `errors.error_response` pair built on `errors.error_answer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from re import Pattern

from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.client_gone import CONNECTION_KEY
from serving.dataplane import DataPlane
from serving.http.body import receive_body
from serving.http.errors import send_error
from serving.protocol.codec import Codec
from serving.protocol.v2_codec import HEADER_LENGTH

_HEADER_LENGTH = HEADER_LENGTH.encode()
_EXPECT = b"expect"
Headers = list[tuple[bytes, bytes]]


class InferEndpoint:
    """ASGI endpoint of an inference route: `{name}` (and `{version}`) from the path params."""

    def __init__(self, dataplane: DataPlane, codec: Codec) -> None:
        self.dataplane = dataplane
        self.codec = codec

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope["path_params"]
        await send_answer(send, *await self.answer(params["name"], params.get("version"), scope, receive))

    async def answer(
        self, name: str, version: str | None, scope: Scope, receive: Receive
    ) -> tuple[bytes, Headers]:
        """The response body and raw headers for one inference request (errors raise ServingError)."""
        raw_headers = scope["headers"]
        headers = {}
        for key, value in raw_headers:
            if key == _HEADER_LENGTH:
                headers[HEADER_LENGTH] = value.decode("latin-1")
            elif key == _EXPECT:  # its `100 Continue` goes out on the first receive: not for a wrong name
                self.dataplane.refuse_unknown(name, version, self.codec)
        body = await receive_body(raw_headers, receive, self.dataplane.limits.max_body_bytes)
        # past its body, `receive` resolves only when the client hangs up: a queued request then leaves
        content, out = await self.dataplane.infer(
            name, version, body, headers, self.codec, receive, scope.get(CONNECTION_KEY)
        )
        response_headers = [(k.encode(), v.encode()) for k, v in out.items()]
        response_headers.append((b"content-length", str(len(content)).encode()))
        return content, response_headers


async def send_answer(send: Send, content: bytes, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})


class InferenceFastLane:
    """ASGI: a POST matching an inference route's pattern goes straight to that route's endpoint."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], max_body_bytes: int | None = None) -> None:
        self.app = app
        # Read by our protocol (serving/http/header_limit.py): a body declared over it is not gathered first,
        # so the 413 goes out on its Content-Length alone.
        self.max_body_bytes = max_body_bytes
        self.lanes: list[tuple[Pattern[str], InferEndpoint]] = [
            (route.path_regex, route.endpoint)
            for route in routes
            if isinstance(route, Route) and isinstance(route.endpoint, InferEndpoint)
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            for pattern, endpoint in self.lanes:
                match = pattern.match(path)
                if match is not None:
                    await self._infer(
                        endpoint, match["name"], match.groupdict().get("version"), scope, receive, send
                    )
                    return
        await self.app(scope, receive, send)

    async def _infer(
        self,
        endpoint: InferEndpoint,
        name: str,
        version: str | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        try:
            content, headers = await endpoint.answer(name, version, scope, receive)
        except ClientDisconnect:
            return
        except Exception as exc:  # noqa: BLE001 - ServingError or the last resort, as the app's handlers do
            await send_error(send, exc, "POST", scope["path"])
            return
        await send_answer(send, content, headers)
