"""Each response leaves in one write (head + body together), and nothing is held back: a streaming
response that waits between chunks, a HEAD, and pipelined keep-alive requests all arrive whole."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from serving.http.header_limit import COALESCE_MAX_BYTES, CoalescingTransport
from tests.support import free_port, wait_until


class RecordingTransport(asyncio.Transport):
    """Stands in for the socket so the test can count writes (a real socket would hide the segments)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data) -> None:  # noqa: ANN001
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True


def test_head_and_body_go_out_in_one_write() -> None:
    async def scenario() -> RecordingTransport:
        raw = RecordingTransport()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"body")
        await asyncio.sleep(0)
        assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")  # nothing follows: flushed on the next loop iteration
        await asyncio.sleep(0)
        assert raw.writes[-1] == b"HTTP/1.1 200 OK\r\n\r\n"
        big = b"x" * (COALESCE_MAX_BYTES + 1)
        transport.write(b"head")
        transport.write(big)  # not copied into the head
        assert raw.writes[-2:] == [b"head", big]
        transport.write(b"last words")
        transport.close()
        assert raw.writes[-1] == b"last words" and raw.closed
        return raw

    asyncio.run(scenario())


async def _stream() -> AsyncIterator[bytes]:
    for part in (b"one,", b"two,", b"three"):
        await asyncio.sleep(0.02)
        yield part


async def _plain(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def _streamed(request: Request) -> StreamingResponse:
    return StreamingResponse(_stream(), media_type="text/plain")


async def _pieces(request: Request) -> JSONResponse:
    """How the body came through the ASGI channel: the number of non-empty pieces and the bytes in all."""
    sizes = [len(piece) async for piece in request.stream() if piece]
    return JSONResponse({"pieces": len(sizes), "bytes": sum(sizes)})


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    port = free_port()
    app = Starlette(
        routes=[
            Route("/plain", _plain, methods=["GET", "HEAD"]),
            Route("/stream", _streamed),
            Route("/pieces", _pieces, methods=["POST"]),
        ]
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            http="serving.http.header_limit:HeaderLimitedProtocol",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, what="uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_real_server_answers_plain_head_and_streamed(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/plain").json() == {"ok": True}
        head = client.head("/plain")
        assert head.status_code == 200 and head.content == b""
        assert client.get("/stream").content == b"one,two,three"
        assert client.get("/plain").json() == {"ok": True}  # the keep-alive connection is still in step


def test_pipelined_requests_get_whole_responses_in_order(url: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    request = b"GET /plain HTTP/1.1\r\nhost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request * 3 + b"GET /plain HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK") == 4
    assert received.count(b'{"ok":true}') == 4


def test_a_declared_body_arrives_in_one_piece_and_a_chunked_one_still_streams(url: str) -> None:
    """4 MB with a Content-Length: one message once complete (uvicorn alone hands over every 64 KiB, pausing the
    socket in between). Without a length (chunked), the body streams as before."""
    body = bytes(range(256)) * (4 * 4096)
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/pieces", content=body).json() == {"pieces": 1, "bytes": len(body)}

        def chunked() -> Iterator[bytes]:
            for start in range(0, len(body), 1 << 20):
                yield body[start : start + (1 << 20)]

        streamed = client.post("/pieces", content=chunked()).json()
        assert streamed["bytes"] == len(body) and streamed["pieces"] > 1
        assert client.get("/plain").json() == {"ok": True}  # the connection is still in step
