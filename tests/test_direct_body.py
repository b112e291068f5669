"""Large bodies are read from the socket straight into the buffer the app gets (serving/http/direct_body.py,
used by serving/http/header_limit.py): whole and in order however they arrive, the connection carrying on after them (keep-alive,
pipelining), a body the app refused early dropped without being kept, a client leaving mid-body harmless,
and tensors decoded from such a buffer read-only like any other."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import psutil
import pytest

import serving.http.header_limit as header_limit
from serving.http import direct_body
from serving.http.launcher import http_config
from serving.protocol import v2_codec
from tests.inprocess import serving_inprocess
from tests.support import free_port, train_iris_sklearn, uvicorn_in_thread, wait_until

BIG = direct_body.DIRECT_BODY_MIN_BYTES * 3 + 12345  # several reads' worth, not a multiple of anything


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/digest: the body's length, sha256 and Python type; /refuse: 413 before reading anything."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/refuse":
        answer = b"too big"
        status = 413
    else:
        message = await receive()
        body = message["body"]
        answer = f"{len(body)} {hashlib.sha256(body).hexdigest()} {type(body).__name__}".encode()
        status = 200
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


class Readers:
    """Counts the body readers the server starts and what became of their buffers."""

    def __init__(self) -> None:
        self.started: list[Any] = []


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> Readers:
    seen = Readers()
    original = header_limit.BodyReader

    class Counted(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            seen.started.append(self)

    monkeypatch.setattr(header_limit, "BodyReader", Counted)
    return seen


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    chosen = free_port()
    with uvicorn_in_thread(http_config(app, "127.0.0.1", chosen, lifespan="off")):
        yield chosen


def _head(path: str, length: int, extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {length}\r\n{extra}\r\n".encode()


def _responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """`count` whole responses read off the socket: (status, body) each."""
    data, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} responses"
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(data) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed mid-body"
            data += chunk
        out.append((int(head.split(b" ")[1]), data[:length]))
        data = data[length:]
    return out


def _digest(body: bytes, kind: str = "bytearray") -> bytes:
    return f"{len(body)} {hashlib.sha256(body).hexdigest()} {kind}".encode()


def test_a_body_arriving_in_pieces_is_read_whole_and_the_connection_carries_on(
    port: int, readers: Readers
) -> None:
    body = np.random.default_rng(1).integers(0, 256, BIG, dtype=np.uint8).tobytes()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_head("/digest", BIG) + body[:1000])
        wait_until(
            lambda: len(readers.started) == 1, what="the server to read the rest into the body's buffer"
        )
        for start in range(1000, BIG, 300_001):  # the rest, in uneven pieces
            sock.sendall(body[start : start + 300_001])
        assert _responses(sock, 1) == [(200, _digest(body))]
        # the same connection: a small request (a fresh parser), then a large one again
        sock.sendall(_head("/digest", 5) + b"hello")
        assert _responses(sock, 1) == [(200, _digest(b"hello", "bytes"))]
        sock.sendall(_head("/digest", BIG) + body)
        assert _responses(sock, 1) == [(200, _digest(body))]


def test_pipelined_requests_behind_a_large_body_keep_their_order(port: int) -> None:
    first, second = b"a" * BIG, b"b" * (BIG + 1)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            _head("/digest", BIG) + first + _head("/digest", 2) + b"ok" + _head("/digest", BIG + 1) + second
        )
        answers = _responses(sock, 3)
    # (behind a pending response uvicorn's own cycle takes a request: it hands the body over as bytes)
    assert [(status, answer.rsplit(b" ", 1)[0]) for status, answer in answers] == [
        (200, _digest(first).rsplit(b" ", 1)[0]),
        (200, _digest(b"ok").rsplit(b" ", 1)[0]),
        (200, _digest(second).rsplit(b" ", 1)[0]),
    ]


def test_a_body_refused_before_it_is_read_is_never_read(port: int, readers: Readers) -> None:
    """uvicorn's cycle (here for `Expect: 100-continue`) runs the app before the body is in: it may answer
    first. That answer says `connection: close` and the connection closes after it: the rest of the body is
    never read (its buffer goes with the connection), and the server serves on."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_head("/refuse", BIG, "expect: 100-continue\r\n") + b"x" * 1000)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ") and answer.endswith(b"\r\n\r\ntoo big"), answer
    assert b"\r\nconnection: close\r\n" in answer
    assert readers.started[0].filled == 1000  # nothing past what came with the head
    assert httpx.post(f"http://127.0.0.1:{port}/digest", content=b"ok", timeout=10).status_code == 200


def test_a_client_leaving_mid_body_leaves_the_server_serving(port: int, readers: Readers) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_head("/digest", BIG) + b"x" * 1000)
        wait_until(lambda: len(readers.started) == 1, what="the server to start reading the body")
        sock.sendall(b"x" * 100_000)
    answer = httpx.post(f"http://127.0.0.1:{port}/digest", content=b"after", timeout=10)
    assert answer.status_code == 200 and answer.text.startswith("5 ")


def test_tensors_decoded_from_a_bytearray_body_are_read_only() -> None:
    values = np.arange(12, dtype=np.float32)
    header = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[3,4],"parameters":{"binary_data_size":48}}]}'
    request = v2_codec.decode_request(bytearray(header + values.tobytes()), str(len(header)))
    array = request.inputs["x"]
    assert not array.flags.writeable
    np.testing.assert_array_equal(array, values.reshape(3, 4))


def test_a_large_binary_tensor_is_predicted_as_the_model_predicts_it(
    tmp_path: Path, readers: Readers
) -> None:
    model_file = train_iris_sklearn(tmp_path / "iris")
    rows = np.random.default_rng(2).uniform(0.1, 7.9, (40_000, 4)).astype(np.float32)  # 640 kB of tensor
    header = (
        b'{"inputs":[{"name":"x","datatype":"FP32","shape":[40000,4],"parameters":{"binary_data_size":%d}}],'
        b'"parameters":{"binary_data_output":false}}' % rows.nbytes
    )
    with serving_inprocess(["serve", "--model-dir", str(model_file.parent), "--name", "iris"]) as server:
        answer = httpx.post(
            f"{server.url}/v2/models/iris/infer",
            content=header + rows.tobytes(),
            headers={"inference-header-content-length": str(len(header))},
            timeout=30,
        )
    assert answer.status_code == 200, answer.text
    assert len(readers.started) == 1  # more than one read's worth: read past the parser
    expected = joblib.load(model_file).predict(rows.astype(np.float64))
    assert answer.json()["outputs"][0]["data"] == expected.tolist()


def test_a_declared_body_costs_memory_only_as_it_arrives() -> None:
    """The body's buffer is taken untouched from the system: a head declaring a huge body commits nothing."""
    process = psutil.Process()
    before = process.memory_info().rss
    buffer = direct_body.unfilled_bytearray(512 * 1024 * 1024)
    grown = process.memory_info().rss - before
    assert len(buffer) == 512 * 1024 * 1024 and isinstance(buffer, bytearray)
    assert grown < 64 * 1024 * 1024, f"RSS grew by {grown / 1e6:.0f} MB for an untouched buffer"
