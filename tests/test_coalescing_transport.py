"""Responses of one loop turn leave together, each in one write (head + body), and nothing is held back for
long: the last open request's answer sends everything at once, a streaming response that waits between chunks,
a HEAD, and pipelined keep-alive requests all arrive whole."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from serving.http.turn_writes import COALESCE_MAX_BYTES, TurnBatchedTransport, turn_writes
from tests.support import free_port, uvicorn_in_thread


class RecordingTransport(asyncio.Transport):
    """Stands in for the socket so the test can count writes (a real socket would hide the segments)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes | list[bytes]] = []
        self.closed = False

    def write(self, data) -> None:  # noqa: ANN001
        self.writes.append(bytes(data))

    def writelines(self, pieces) -> None:  # noqa: ANN001
        self.writes.append([bytes(p) for p in pieces])

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_a_turns_responses_leave_together_when_the_last_open_request_finishes() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        turn = turn_writes(loop)
        first_raw, second_raw = RecordingTransport(), RecordingTransport()
        first, second = TurnBatchedTransport(first_raw, loop), TurnBatchedTransport(second_raw, loop)
        turn.opened(2)
        first.write(b"HTTP/1.1 200 OK\r\n\r\n")
        first.write(bytearray(b"one"))  # a buffer the caller may reuse: copied
        turn.finished()
        assert first_raw.writes == []  # another request is still open: held
        second.write(b"HTTP/1.1 200 OK\r\n\r\n")
        second.write(b"two")
        turn.finished()
        assert first_raw.writes == [b"HTTP/1.1 200 OK\r\n\r\none"]  # both now, each in one write
        assert second_raw.writes == [b"HTTP/1.1 200 OK\r\n\r\ntwo"]

        first.write(b"chunk")  # no request open (a streaming body between chunks): the next turn sends it
        assert first_raw.writes[-1] != b"chunk"
        await asyncio.sleep(0)
        assert first_raw.writes[-1] == b"chunk"

        big = b"x" * (COALESCE_MAX_BYTES + 1)
        first.write(b"head")
        first.write(big)
        await asyncio.sleep(0)
        assert first_raw.writes[-1] == [b"head", big]  # not copied into one piece

        first.write(b"last words")
        first.close()
        assert first_raw.writes[-1] == b"last words" and first_raw.closed
        second_raw.closed = True  # the peer went away: what is held is dropped, not written to a dead socket
        second.write(b"late")
        await asyncio.sleep(0)
        assert second_raw.writes[-1] == b"HTTP/1.1 200 OK\r\n\r\ntwo"
        turn.finished(5)  # never below zero
        assert turn.open_requests == 0

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
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http="serving.http.header_limit:HeaderLimitedProtocol",
    )
    with uvicorn_in_thread(config):
        yield f"http://127.0.0.1:{port}"


def test_concurrent_keep_alive_clients_get_every_answer_whole(url: str) -> None:
    async def clients() -> list[dict[str, bool]]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            return [r.json() for r in await asyncio.gather(*(client.get("/plain") for _ in range(64)))]

    assert asyncio.run(clients()) == [{"ok": True}] * 64
    single = httpx.get(url + "/plain", timeout=10)  # one request alone: answered at once, not after a turn
    assert single.json() == {"ok": True}


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
