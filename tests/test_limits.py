"""Every request limit of `serving serve`, set small by its CLI flag, enforced with the documented status.

Body size 413, request line + headers 431, tensor elements 400, JSON nesting depth 400, request timeout 504,
per-model concurrency (the surplus waits for a slot); after each refusal the server still answers a good request.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from tests.inprocess import InProcessServer, serving_inprocess
from tests.runtimes_bad_input import RELEASE_FILE, STARTED_FILE
from tests.support import wait_until

GATED = "tests.runtimes_bad_input:GatedRuntime"
LIMIT_FLAGS = [
    "--max-body-bytes",
    "4096",
    "--max-header-bytes",
    "8192",
    "--max-tensor-elements",
    "100",
    "--max-json-depth",
    "3",
    "--request-timeout",
    "0.5",
]


def _model_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    folder = tmp_path_factory.mktemp(name) / "gated"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    folder = _model_dir(tmp_path_factory, "limited")
    with serving_inprocess(["serve", "--model-dir", str(folder), "--runtime", GATED, *LIMIT_FLAGS]) as server:
        yield server


def infer(server: InProcessServer, data: object, shape: list[int], **parameters: object) -> httpx.Response:
    body = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": shape, "data": data}],
        "parameters": parameters,
    }
    return httpx.post(server.url + "/v2/models/gated/infer", content=orjson.dumps(body), timeout=30)


def assert_refused(response: httpx.Response, status: int, says: str) -> None:
    assert response.status_code == status, response.text
    assert says in response.json()["error"], response.json()


def assert_serving(server: InProcessServer) -> None:
    response = infer(server, [1.5, 2.5], [2])
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [1.5, 2.5]


def test_body_over_max_body_bytes_is_413_declared_or_streamed(limited: InProcessServer) -> None:
    big = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "pad": "x" * 5000}
    )
    assert_refused(
        httpx.post(limited.url + "/v2/models/gated/infer", content=big), 413, "over the limit of 4096 bytes"
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    streamed = httpx.post(limited.url + "/v1/models/gated:predict", content=chunks())
    assert_refused(streamed, 413, "over the limit of 4096 bytes")
    assert_serving(limited)


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(limited: InProcessServer) -> None:
    """413 from the Content-Length alone: the server neither waits for nor keeps the 10 MB announced."""
    port = int(limited.url.rsplit(":", 1)[1])
    for path in ("/v2/models/gated/infer", "/v1/models/gated:predict"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000\r\n\r\n{{".encode())
            answer = b""
            while b"over the limit" not in answer:
                chunk = sock.recv(65536)
                assert chunk, f"closed without an answer: {answer!r}"
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        assert b"request body of 10000000 bytes is over the limit of 4096 bytes" in answer
    assert_serving(limited)


def test_tensor_elements_over_the_limit_are_400_before_decoding(limited: InProcessServer) -> None:
    assert infer(limited, [0.0] * 100, [100]).status_code == 200
    assert_refused(infer(limited, [0.0] * 101, [101]), 400, "101 elements, over the limit of 100")
    v1 = httpx.post(limited.url + "/v1/models/gated:predict", json={"instances": [[0.0] * 11] * 10})
    assert_refused(v1, 400, "110 elements, over the limit of 100")
    assert_serving(limited)


def test_json_nesting_deeper_than_max_json_depth_is_400(limited: InProcessServer) -> None:
    assert infer(limited, [[[1.0]]], [1, 1, 1]).status_code == 200
    assert_refused(infer(limited, [[[[1.0]]]], [1, 1, 1, 1]), 400, "nested deeper than 3 levels")
    v1 = httpx.post(limited.url + "/v1/models/gated:predict", json={"instances": [[[[1.0]]]]})
    assert_refused(v1, 400, "nested deeper than 3 levels")
    assert_serving(limited)


def test_headers_over_max_header_bytes_are_431_json(limited: InProcessServer) -> None:
    assert httpx.get(limited.url + "/v2/health/live", headers={"x-pad": "a" * 4000}).status_code == 200
    response = httpx.get(limited.url + "/v2/health/live", headers={"x-pad": "a" * 10_000})
    assert_refused(response, 431, "over the limit of 8192 bytes")
    assert_serving(limited)


def test_a_model_slower_than_request_timeout_is_504_at_the_timeout(limited: InProcessServer) -> None:
    with limited.client() as client:
        client.get("/v2/health/live")
        response = client.post(
            "/v2/models/gated/infer",
            content=orjson.dumps(
                {
                    "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
                    "parameters": {"sleep_s": 3},
                }
            ),
        )
        elapsed = response.elapsed.total_seconds()
    assert_refused(response, 504, "did not answer within 0.5s")
    assert 0.4 < elapsed < 2.5, elapsed
    assert_serving(limited)


@contextlib.contextmanager
def _one_slot_held(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[tuple[InProcessServer, dict[str, httpx.Response], Callable[[], None]]]:
    """A gated model under --max-concurrency 1 whose only slot a first request holds, inside the model, until
    `release()` (or the block's end); its answer is then in `answers["first"]`."""
    folder = _model_dir(tmp_path_factory, name)
    with serving_inprocess(
        ["serve", "--model-dir", str(folder), "--runtime", GATED, "--max-concurrency", "1"]
    ) as server:
        answers: dict[str, httpx.Response] = {}
        blocked = threading.Thread(target=lambda: answers.update(first=infer(server, [1.0], [1], gate=True)))
        blocked.start()

        def release() -> None:
            (folder / RELEASE_FILE).touch()
            blocked.join(30)

        try:
            wait_until(
                lambda: (folder / STARTED_FILE).exists(), 30, what="the first request inside the model"
            )
            yield server, answers, release
        finally:
            release()


def test_requests_over_max_concurrency_wait_for_a_slot(tmp_path_factory: pytest.TempPathFactory) -> None:
    with _one_slot_held(tmp_path_factory, "concurrency") as (server, answers, release):
        queued = threading.Thread(target=lambda: answers.update(second=infer(server, [2.0], [1])))
        queued.start()
        try:
            wait_until(lambda: _waiting(server) == 1, 30, what="the second request queued")
            assert "second" not in answers  # held while the first holds the only slot
        finally:
            release()
            queued.join(30)
        assert answers["first"].status_code == 200, answers["first"].text
        assert answers["second"].status_code == 200, answers["second"].text
        assert_serving(server)


def _waiting(server: InProcessServer) -> int:
    text = httpx.get(server.url + "/metrics").text
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("serving_concurrency_queue_depth{")
        )
    )


def test_a_queued_request_whose_client_hung_up_leaves_the_queue(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Knative's queue-proxy drops a waiting request whose client is gone: here too, so requests nobody waits
    for never take a slot from the next client (the audit's ghosts made a real request wait 5.8 s, and 504
    through the router). Each ghost would sleep 5 s in the model if it ran."""
    with _one_slot_held(tmp_path_factory, "ghosts") as (server, answers, release):
        try:
            body = orjson.dumps(
                {
                    "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [2.0]}],
                    "parameters": {"sleep_s": 5},
                }
            )
            head = f"POST /v2/models/gated/infer HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
            ghosts = [
                socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) for _ in range(3)
            ]
            for ghost in ghosts:
                ghost.sendall(head.encode() + body)
            wait_until(lambda: _waiting(server) == 3, 30, what="three ghosts queued")
            for ghost in ghosts:
                ghost.close()
            wait_until(lambda: _waiting(server) == 0, 30, what="the ghosts gone from the queue")
        finally:
            release()
        assert answers["first"].status_code == 200, answers["first"].text
        started = time.monotonic()
        assert infer(server, [3.0], [1]).status_code == 200
        assert time.monotonic() - started < 4  # no ghost ran ahead of it (each would take 5 s)
        metrics = httpx.get(server.url + "/metrics").text
        assert 'code="499"' in metrics  # counted as the client's leaving, not as a server error


def test_an_answer_whose_client_left_during_the_model_call_is_counted_as_its_leaving(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A client that hangs up while the model runs gets nothing: the model server counts and logs 499, as the
    router and nginx do, not the 200 (or 500) nobody read (audit /tmp/audit-obs3 M1)."""
    folder = _model_dir(tmp_path_factory, "left")
    with serving_inprocess(["serve", "--model-dir", str(folder), "--runtime", GATED]) as server:
        body = orjson.dumps(
            {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}],
                "parameters": {"gate": True},
            }
        )
        head = f"POST /v2/models/gated/infer HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
        port = int(server.url.rsplit(":", 1)[1])
        client = socket.create_connection(("127.0.0.1", port))
        mine = client.getsockname()[1]
        try:
            client.sendall(head.encode() + body)
            wait_until(lambda: (folder / STARTED_FILE).exists(), 30, what="the request inside the model")
        finally:
            client.close()  # it leaves while the model runs

        def server_side_open() -> bool:  # the server (this process) still holds its end of that connection
            return any(
                c.laddr and c.raddr and c.laddr.port == port and c.raddr.port == mine
                for c in psutil.Process().net_connections(kind="tcp")
            )

        wait_until(lambda: not server_side_open(), 30, what="the server to see its client leave")
        (folder / RELEASE_FILE).touch()

        def counted() -> dict[str, float]:
            text = httpx.get(server.url + "/metrics").text
            return {
                code: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("serving_requests_total{")
                for code in ("200", "499")
                if f'code="{code}"' in line
            }

        wait_until(lambda: counted().get("499") == 1.0, 30, what="the request counted as its client leaving")
        assert "200" not in counted(), "an answer nobody read is not a delivered 200"
        assert_serving(server)
