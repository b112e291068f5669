"""serving.http_client alone, against real loopback servers: a scriptable raw HTTP/1.1 server (asyncio)
for the edge cases (HEAD, close-delimited bodies, hanging answers) and uvicorn serving a Starlette app."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from serving import http_client
from serving.http.direct_body import DIRECT_BODY_MIN_BYTES
from serving.http_client import HTTPClient, UpstreamConnectError

pytestmark = pytest.mark.asyncio

Handler = Callable[[str, str, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """Reads request heads (no bodies: the tests send none) and lets `handler` write the answer."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.max_open = 0
        self.closed = asyncio.Event()  # set each time a client connection ends

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
                await self.handler(method, target, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            self.closed.set()
            writer.close()


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[RawServer, str]]:
    raw = RawServer(handler)
    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield raw, f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def answer_ok(method: str, target: str, writer: asyncio.StreamWriter) -> None:
    body = target.encode()
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), b"" if method == "HEAD" else body)
    )


async def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_keep_alive_reuse_and_stale_connection_replaced() -> None:
    async with raw_server(answer_ok) as (server, url):
        client = HTTPClient()
        for i in range(20):
            assert await client.request(url, "GET", f"/r{i}", timeout_s=5) == (
                200,
                [(b"content-length", b"3" if i < 10 else b"4")],
                f"/r{i}".encode(),
            )
        assert server.connections == 1
        for conn in client._endpoints[url].idle:
            assert conn.transport is not None
            conn.transport.close()  # as if the server had dropped its idle keep-alive connection
        assert (await client.request(url, "GET", "/again", timeout_s=5)).body == b"/again"
        assert server.connections == 2 and client.connections(url) == (1, 1)
        client.close()


async def test_connections_capped_per_endpoint() -> None:
    release = asyncio.Event()

    async def slow(method: str, target: str, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        await answer_ok(method, target, writer)

    async with raw_server(slow) as (server, url):
        client = HTTPClient(max_per_endpoint=2)
        tasks = [asyncio.create_task(client.request(url, "GET", f"/{i}", timeout_s=5)) for i in range(8)]
        await wait_for(lambda: server.open == 2, "two connections")
        release.set()
        bodies = [r.body for r in await asyncio.gather(*tasks)]
        assert bodies == [f"/{i}".encode() for i in range(8)]
        assert server.max_open == 2 and server.connections == 2
        assert client.connections(url) == (2, 2)
        client.close()


async def test_idle_connections_expire() -> None:
    async with raw_server(answer_ok) as (server, url):
        client = HTTPClient(idle_timeout_s=0.1)
        await client.request(url, "GET", "/", timeout_s=5)
        assert client.connections(url) == (1, 1)
        await wait_for(
            lambda: client.connections(url) == (0, 0) and server.open == 0, "the idle connection to close"
        )
        client.close()


async def test_cancelled_exchange_closes_its_connection_and_frees_its_slot() -> None:
    async def hang_first(method: str, target: str, writer: asyncio.StreamWriter) -> None:
        if target != "/hang":
            await answer_ok(method, target, writer)

    async with raw_server(hang_first) as (server, url):
        client = HTTPClient(max_per_endpoint=1)
        task = asyncio.create_task(client.request(url, "GET", "/hang", timeout_s=30))
        await wait_for(lambda: server.connections == 1, "the request to arrive")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.connections(url) == (0, 0)
        await wait_for(lambda: server.open == 0, "the server to see the connection closed")
        assert (await client.request(url, "GET", "/next", timeout_s=5)).body == b"/next"  # the slot is free
        client.close()


async def test_timeouts_free_the_slot_and_waiters_time_out() -> None:
    async def hang(method: str, target: str, writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()

    async with raw_server(hang) as (server, url):
        client = HTTPClient(max_per_endpoint=1)
        first = asyncio.create_task(client.request(url, "GET", "/a", timeout_s=0.3))
        with pytest.raises(TimeoutError):  # waits for the one slot, which stays busy beyond its deadline
            await client.request(url, "GET", "/b", timeout_s=0.1)
        with pytest.raises(TimeoutError):
            await first
        assert client.connections(url) == (0, 0) and not client._endpoints[url].waiters
        client.close()


async def test_each_exchange_on_a_kept_connection_is_timed_by_its_own_deadline() -> None:
    """A connection keeps one timer across exchanges: a timer left from a short deadline must not end a later
    exchange with a longer one, and a later short deadline must not wait for an earlier long one."""

    async def answer_after(method: str, target: str, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(int(target.rsplit("/", 1)[1]) / 1000)  # the server's answer time, in ms
        await answer_ok(method, target, writer)

    async with raw_server(answer_after) as (server, url):
        client = HTTPClient(max_per_endpoint=1)
        assert (await client.request(url, "GET", "/0", timeout_s=0.5)).body == b"/0"
        # the timer armed for 0.5 s fires while this one (3 s allowed) is still being answered
        assert (await client.request(url, "GET", "/800", timeout_s=3)).body == b"/800"
        assert server.connections == 1  # one kept connection for both
        with pytest.raises(TimeoutError):  # due long before the timer armed for the 3 s deadline
            await client.request(url, "GET", "/2000", timeout_s=0.3)
        assert (await client.request(url, "GET", "/1", timeout_s=2)).body == b"/1"  # on a new connection
        client.close()


async def test_a_large_body_is_read_into_its_buffer_and_the_connection_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A body of a declared length from DIRECT_BODY_MIN_BYTES up is read past the parser (serving/http/
    direct_body.py): whole however it arrives, and the connection stays in step for the next exchange."""
    readers: list[object] = []
    original = http_client.BodyReader

    class Counted(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            readers.append(self)

    monkeypatch.setattr(http_client, "BodyReader", Counted)
    big = bytes(range(256)) * (3 * DIRECT_BODY_MIN_BYTES // 256) + b"tail"

    async def answer_in_pieces(method: str, target: str, writer: asyncio.StreamWriter) -> None:
        if target == "/small":
            return await answer_ok(method, target, writer)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big) + big[:100])
        await writer.drain()
        if target == "/cut":
            await wait_for(lambda: len(readers) > 0, "the client to read the rest into the body's buffer")
            writer.write(big[100:5000])
            await writer.drain()
            writer.close()
            return
        await wait_for(lambda: len(readers) > 0, "the client to read the rest into the body's buffer")
        for start in range(100, len(big), 300_001):
            writer.write(big[start : start + 300_001])
            await writer.drain()

    async with raw_server(answer_in_pieces) as (server, url):
        client = HTTPClient(max_per_endpoint=1)
        first = await client.request(url, "GET", "/big", timeout_s=5)
        assert first.status == 200 and first.body == big and len(readers) == 1
        assert (await client.request(url, "GET", "/small", timeout_s=5)).body == b"/small"  # a fresh parser
        readers.clear()
        assert (await client.request(url, "GET", "/big", timeout_s=5)).body == big
        assert server.connections == 1
        readers.clear()
        with pytest.raises(ConnectionError, match="mid-response"):
            await client.request(url, "GET", "/cut", timeout_s=5)
        assert client.connections(url) == (0, 0)  # the broken connection is not kept
        client.close()


async def test_head_answer_ends_at_its_head_and_the_connection_is_reused() -> None:
    async def head_with_length(method: str, target: str, writer: asyncio.StreamWriter) -> None:
        if method == "HEAD":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
        else:
            await answer_ok(method, target, writer)

    async with raw_server(head_with_length) as (server, url):
        client = HTTPClient()
        head = await client.request(url, "HEAD", "/x", timeout_s=2)
        assert head.status == 200 and head.body == b"" and (b"content-length", b"100") in head.headers
        assert (await client.request(url, "GET", "/after", timeout_s=2)).body == b"/after"
        assert server.connections == 1
        client.close()


async def test_close_delimited_and_chunked_bodies() -> None:
    async def answers(method: str, target: str, writer: asyncio.StreamWriter) -> None:
        if target == "/eof":
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
            await writer.drain()
            writer.close()
        else:
            writer.write(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            )

    async with raw_server(answers) as (server, url):
        client = HTTPClient()
        assert (await client.request(url, "GET", "/chunked", timeout_s=2)).body == b"abcde"
        assert (await client.request(url, "GET", "/eof", timeout_s=2)).body == b"until the end"
        assert client.connections(url) == (0, 0)
        client.close()


async def test_one_request_gets_one_response_and_a_connection_that_says_more_is_closed() -> None:
    """A second response after the answer (in the same read), or one while no request waits, is never read as
    an answer: not merged into the first, not handed to the next request. Interim 100s still are fine."""

    async def answers(method: str, target: str, writer: asyncio.StreamWriter) -> None:
        if target == "/twice":
            writer.write(
                b"HTTP/1.1 200 OK\r\nx-first: 1\r\ncontent-length: 3\r\n\r\none"
                b"HTTP/1.1 404 Not Found\r\nx-second: 1\r\ncontent-length: 3\r\n\r\ntwo"
            )
        elif target == "/late":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 7\r\n\r\nnobody!")
        elif target == "/continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        else:
            await answer_ok(method, target, writer)

    async with raw_server(answers) as (server, url):
        client = HTTPClient()
        first = await client.request(url, "GET", "/twice", timeout_s=2)
        assert first == (200, [(b"x-first", b"1"), (b"content-length", b"3")], b"one")
        assert (await client.request(url, "GET", "/next", timeout_s=2)).body == b"/next"
        assert server.connections == 2  # the one that answered twice was not used again

        assert (await client.request(url, "GET", "/late", timeout_s=2)).body == b"late"
        idle = client._endpoints[url].idle[-1]
        await wait_for(lambda: idle.closed, "the connection that answered unasked to close")
        assert (await client.request(url, "GET", "/after", timeout_s=2)).body == b"/after"
        assert server.connections == 3

        assert (await client.request(url, "GET", "/continue", timeout_s=2)).body == b"ok"
        assert (await client.request(url, "GET", "/kept", timeout_s=2)).body == b"/kept"
        assert server.connections == 3
        client.close()


async def test_a_target_with_a_line_break_or_space_is_refused_before_anything_is_sent() -> None:
    async with raw_server(answer_ok) as (server, url):
        client = HTTPClient()
        assert (await client.request(url, "GET", "/first", timeout_s=2)).status == 200
        for target in ("/a\r\nGET /b", "/a b", "/a\x00"):
            with pytest.raises(ValueError, match="space or a control character"):
                await client.request(url, "GET", target, timeout_s=2)
            done: list[Any] = []
            with pytest.raises(ValueError):
                client.try_send(url, "GET", target, [], b"", 2, done.append)
        assert client.connections(url) == (1, 1)  # the idle connection stayed in the pool
        assert (await client.request(url, "GET", "/%0D%0A", timeout_s=2)).body == b"/%0D%0A"
        assert server.connections == 1
        client.close()


async def test_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        client = HTTPClient()
        with pytest.raises(UpstreamConnectError):
            await client.request(f"http://127.0.0.1:{port}", "GET", "/", timeout_s=2)
        assert client.connections(f"http://127.0.0.1:{port}") == (0, 0)
    with pytest.raises(ValueError):
        await HTTPClient().request("https://127.0.0.1:1", "GET", "/")


async def test_against_uvicorn() -> None:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(await request.body(), headers={"x-method": request.method})

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(iter([b"a" * 70000, b"b"]))

    app = Starlette(routes=[Route("/echo", echo, methods=["GET", "POST", "HEAD"]), Route("/stream", stream)])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, "uvicorn to start")
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    client = HTTPClient()
    try:
        posted = await client.request(url, "POST", "/echo", [(b"content-type", b"text/plain")], b"hello", 5)
        assert posted.status == 200 and posted.body == b"hello" and (b"x-method", b"POST") in posted.headers
        head = await client.request(url, "HEAD", "/echo", timeout_s=5)
        assert head.status == 200 and head.body == b""
        assert len((await client.get(url + "/stream", 5)).body) == 70001
        assert (await client.get(url + "/missing?q=1", 5)).status == 404
        assert client.connections(url) == (1, 1)
    finally:
        client.close()
        server.should_exit = True
        await task
