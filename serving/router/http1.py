"""A lean pooled HTTP/1.1 client for the router's hop to model servers (asyncio + httptools).

Measured: aiohttp's client was ~45 % of the router's CPU per request; this keeps only what a reverse
proxy to our own loopback servers needs — keep-alive pools per endpoint, Content-Length or chunked
responses, a timeout, and a clean distinction between "never reached the server" (safe to retry
elsewhere) and "failed after sending".
"""

from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import urlsplit

import httptools


class UpstreamConnectError(ConnectionError):
    """The request never reached a server that answered: retrying it elsewhere is safe."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.waiter: asyncio.Future | None = None
        self.received = False
        self.keep_alive = False
        self._reset()

    def _reset(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.received = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"bad response from model server: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.received:
            self._fail(ConnectionError("model server closed the connection mid-response"))
        else:
            self._fail(UpstreamConnectError("model server closed the connection before answering"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        # Read it now: once the message is complete the parser resets and would always say False.
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            self.waiter.set_result((self.parser.get_status_code(), self.headers, body))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes, timeout_s: float) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._reset()
        self.waiter = loop.create_future()
        self.transport.write(request)
        timer = loop.call_later(timeout_s, self._timeout)
        try:
            return await self.waiter
        finally:
            timer.cancel()
            self.waiter = None

    def _timeout(self) -> None:
        self._fail(TimeoutError())
        self.close()


class HTTP1Pool:
    """Keep-alive connections per endpoint (`http://host:port`)."""

    def __init__(self, connect_timeout_s: float = 5.0) -> None:
        self.connect_timeout_s = connect_timeout_s
        self._idle: dict[str, deque[_Connection]] = {}
        self._addresses: dict[str, tuple[str, int, bytes]] = {}

    def _address(self, endpoint: str) -> tuple[str, int, bytes]:
        address = self._addresses.get(endpoint)
        if address is None:
            parts = urlsplit(endpoint)
            host, port = parts.hostname or "127.0.0.1", parts.port or 80
            address = (host, port, f"{host}:{port}".encode())
            self._addresses[endpoint] = address
        return address

    async def request(
        self, endpoint: str, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes, timeout_s: float
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        host, port, host_header = self._address(endpoint)
        head = [f"{method} {target} HTTP/1.1\r\n".encode(), b"host: ", host_header, b"\r\ncontent-length: ",
                str(len(body)).encode(), b"\r\n"]
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        request = b"".join(head) + body
        idle = self._idle.setdefault(endpoint, deque())
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            try:
                result = await conn.exchange(request, timeout_s)
            except UpstreamConnectError:
                continue  # an idle connection the server had closed: try the next or a fresh one
            self._release(endpoint, conn)
            return result
        conn = await self._connect(host, port)
        result = await conn.exchange(request, timeout_s)
        self._release(endpoint, conn)
        return result

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(_Connection, host, port), self.connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            raise UpstreamConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return conn

    def _release(self, endpoint: str, conn: _Connection) -> None:
        if not conn.closed and conn.keep_alive:
            self._idle[endpoint].append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
