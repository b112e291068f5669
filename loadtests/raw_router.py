"""The floor of a router written in Python: what is left of direct once any Python process sits in the path.

Not a router to use: one upstream, no route table, no canary split, metrics, logs, request ids, limits, retries
or errors. It is the least such a process can do (uvloop, httptools on both sides, plain callbacks, no task or
coroutine per request, responses written as they complete), so `python -m loadtests.bench --only router` can
set our router against it on the same core: the gap between the two is what our router's features cost, and
this row bounds what any Python router can reach on this machine.

    python -m loadtests.raw_router --upstream http://127.0.0.1:8081 --port 8090
"""

from __future__ import annotations

import argparse
import asyncio
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import httptools
import uvloop

DROPPED = frozenset({b"host", b"content-length", b"connection", b"date", b"server", b"transfer-encoding"})


class _Messages(asyncio.Protocol):
    """One HTTP/1.1 connection read with httptools: the headers to pass on and the body, per message."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser
        self.transport: asyncio.Transport | None = None
        self.headers: list[bytes] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.headers, self.body = [], []

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in DROPPED:
            self.headers.append(b"%s: %s\r\n" % (name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)


class Upstream(_Messages):
    """One keep-alive connection to the model server; answers go back in request order."""

    def __init__(self, pool: Pool) -> None:
        super().__init__(httptools.HttpResponseParser(self))
        self.pool = pool
        self.waiting: deque[Downstream] = deque()

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        head = b"HTTP/1.1 %d OK\r\n%scontent-length: %d\r\n\r\n" % (
            self.parser.get_status_code(),
            b"".join(self.headers),
            len(body),
        )
        self.waiting.popleft().respond(head + body)
        self.pool.idle.append(self)


class Pool:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.idle: list[Upstream] = []

    def send(self, down: Downstream, request: bytes) -> None:
        if self.idle:
            self._send(self.idle.pop(), down, request)
        else:
            asyncio.get_running_loop().create_task(self._connect_and_send(down, request))

    async def _connect_and_send(self, down: Downstream, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, up = await loop.create_connection(lambda: Upstream(self), self.host, self.port)
        self._send(up, down, request)

    @staticmethod
    def _send(up: Upstream, down: Downstream, request: bytes) -> None:
        assert up.transport is not None
        up.waiting.append(down)
        up.transport.write(request)


class Downstream(_Messages):
    """One client connection: each whole request is forwarded as soon as it has been read."""

    def __init__(self, pool: Pool) -> None:
        super().__init__(httptools.HttpRequestParser(self))
        self.pool = pool
        self.url = b"/"

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        head = b"%s %s HTTP/1.1\r\nhost: upstream\r\n%scontent-length: %d\r\n\r\n" % (
            self.parser.get_method(),
            self.url,
            b"".join(self.headers),
            len(body),
        )
        self.pool.send(self, head + body)

    def respond(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)


async def serve(upstream: str, host: str, port: int) -> None:
    pool = Pool(upstream)
    server = await asyncio.get_running_loop().create_server(
        lambda: Downstream(pool), host, port, backlog=1024
    )
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--upstream", required=True, help="the model server's base URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    uvloop.run(serve(args.upstream, args.host, args.port))


if __name__ == "__main__":
    main()
