"""Hostile HTTP below the app (raw sockets): oversized or never-ending heads and malformed requests get a JSON
4xx and a closed connection, fast — never a hang, never unbounded buffering — and the server keeps serving."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.inprocess import InProcessServer, serving_inprocess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    folder = tmp_path_factory.mktemp("echo-http") / "echo"
    folder.mkdir()
    with serving_inprocess(
        ["serve", "--model-dir", str(folder), "--runtime", "tests.runtimes_for_tests:EchoRuntime"]
    ) as s:
        yield s


def exchange(server: InProcessServer, payload: bytes, chunk: int = 1 << 20) -> bytes:
    """Send `payload` (in chunks) and read until the server closes; a send error after it answered is fine."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            for i in range(0, len(payload), chunk):
                sock.sendall(payload[i : i + chunk])
        except OSError:
            pass  # the server answered and closed while we were still sending
        received = b""
        try:
            while data := sock.recv(65536):
                received += data
        except ConnectionResetError:
            pass
    return received


def parse(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, orjson.loads(body)


def assert_serving(server: InProcessServer) -> None:
    body = {"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [5]}]}
    response = httpx.post(server.url + "/v2/models/echo/infer", json=body, timeout=30)
    assert response.status_code == 200 and response.json()["outputs"][0]["data"] == [5]


REQUEST = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n"

HEADS = {
    "one-100KB-header": REQUEST + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n",
    "2000-headers": REQUEST + b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 100) for i in range(2000)) + b"\r\n",
    "100KB-url": b"GET /v2/health/live?" + b"q" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("name", list(HEADS))
def test_an_oversized_head_is_431_json(server: InProcessServer, name: str) -> None:
    status, doc = parse(exchange(server, HEADS[name]))
    assert status == 431
    assert "over the limit of 65536 bytes" in doc["error"]
    assert_serving(server)


def test_a_head_that_never_ends_is_cut_off_at_the_limit(server: InProcessServer) -> None:
    """1 MB of header in 8 KB pieces and no blank line: refused once past the limit, not buffered to the end."""
    started = time.monotonic()
    raw = exchange(server, REQUEST + b"X-Endless: " + b"b" * 1_000_000, chunk=8192)
    status, doc = parse(raw)
    assert status == 431, doc
    assert time.monotonic() - started < 5
    assert_serving(server)


@pytest.mark.parametrize(
    "payload",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
        b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nzzzz\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
    ],
    ids=["garbage", "content-length-not-a-number", "length-and-chunked", "space-in-header-name"],
)
def test_malformed_http_is_400_json(server: InProcessServer, payload: bytes) -> None:
    status, doc = parse(exchange(server, payload))
    assert status == 400
    assert "malformed HTTP request" in doc["error"]
    assert_serving(server)


@pytest.mark.parametrize("values", [30_000, 250_000], ids=["120KB-in-one-read", "1MB"])
def test_a_large_body_arriving_with_the_head_is_not_mistaken_for_a_large_head(
    server: InProcessServer, values: int
) -> None:
    """The head limit counts the head only: a body far over it, in the same reads as a small head (a whole
    120 KB request usually arrives in one read), is served — every time."""
    body = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP64", "shape": [values], "data": [0.5] * values}]}
    )
    head = b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    for _ in range(10):
        raw = exchange(server, head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
