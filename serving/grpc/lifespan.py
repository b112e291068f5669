"""Run the gRPC listener inside the HTTP app's lifespan: same process, same event loop, same DataPlane.

A pure-ASGI wrapper: the listener starts after the app's own start-up completed (so the repository's
loading has begun and the same loop runs both transports) and stops before the app's shutdown (which
closes the DataPlane). HTTP requests pass straight through, except `GET /serving/grpc-port`, which tells a
router (`serving up` starts its predictors with `--grpc-port 0`) where this replica's gRPC listener is.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.dataplane import DataPlane
from serving.errors import BadRequest
from serving.grpc.server import GrpcListener
from serving.observability.asgi import Observed
from serving.observability.grpc_calls import GrpcCalls

GRPC_PORT_PATH = "/serving/grpc-port"


class WithGrpc:
    def __init__(self, app: ASGIApp, listener: GrpcListener) -> None:
        self.app = app
        self.listener = listener

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            if scope["type"] == "http" and scope["path"] == GRPC_PORT_PATH:
                await self._tell_port(send)
            else:
                await self.app(scope, receive, send)
            return

        async def receive_shutdown_first() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.listener.stop()
            return message

        async def send_after_start(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                try:
                    await self.listener.start()
                except (
                    Exception
                ) as exc:  # a taken port: fail start-up with the reason, as uvicorn does for HTTP
                    await send({"type": "lifespan.startup.failed", "message": f"gRPC listener: {exc}"})
                    return
            await send(message)

        await self.app(scope, receive_shutdown_first, send_after_start)

    async def _tell_port(self, send: Send) -> None:
        port = self.listener.bound_port
        body = orjson.dumps({"port": port} if port else {"error": "the gRPC listener has not started yet"})
        await send(
            {
                "type": "http.response.start",
                "status": 200 if port else 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def with_grpc(app: ASGIApp, dataplane: DataPlane, host: str, port: int, workers: int = 1) -> WithGrpc:
    """The app plus a gRPC listener on `port` (0: a free one, logged). Several workers share a fixed port
    (SO_REUSEPORT, the kernel spreads connections); with port 0 each would pick its own, so that is refused."""
    check_port(port, workers)
    # the HTTP side's access log and identity (`Observed`), so gRPC calls get the same lines and ids
    calls = GrpcCalls.like(app) if isinstance(app, Observed) else None
    return WithGrpc(app, GrpcListener(dataplane, host, port, reuse_port=workers > 1, calls=calls))


def check_port(port: int, workers: int) -> None:
    """Before any worker starts: a port per worker process would leave clients no port to call."""
    if workers > 1 and port == 0:
        raise BadRequest("--grpc-port 0 picks a port per process; give a fixed port with --workers > 1")
