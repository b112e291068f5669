"""POSTs with a declared body take the lean cycle (serving/http/lean_cycle.py): the same answers and the same
HTTP behaviour as uvicorn's cycle — keep-alive, pipelining, HTTP/1.0, errors, streaming, timeouts, disconnects."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import serving.http.lean_cycle as lean
from serving.http.launcher import http_config
from tests.inprocess import serving_inprocess
from tests.support import free_port, uvicorn_in_thread, wait_until

seen: dict[str, Any] = {}


async def app(scope: dict, receive: Any, send: Any) -> None:  # noqa: C901 - one small route per behaviour
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/raise":
        await receive()
        raise ValueError("boom")
    if path == "/silent":
        return
    if path == "/cut-off":  # as the graceful shutdown's bound cancels a request still running
        await asyncio.sleep(0)
        raise asyncio.CancelledError
    if path == "/stream":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/timeout":
        await receive()
        seen["task"] = asyncio.current_task()
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(5)
            status = 200
        except TimeoutError:
            status = 504
        await _reply(send, status, b"timed out" if status == 504 else b"late")
        return
    if path == "/answer-then-listen":  # a response that watches for the client while it answers (Starlette's)
        await receive()

        async def listen() -> None:
            seen["listened"] = await receive()  # wakes when the response is complete, as uvicorn's does

        listener = asyncio.ensure_future(listen())
        await asyncio.sleep(0)
        await _reply(send, 200, b"done")
        await listener
        return
    if path == "/wait-for-disconnect":
        await receive()
        seen["waiting"] = True
        seen["after"] = await receive()
        return
    if path.startswith("/scope"):  # what the request's target became
        await receive()
        parts = [scope["path"], scope["raw_path"].decode("latin-1"), scope["query_string"].decode("latin-1")]
        await _reply(send, 200, "|".join(parts).encode())
        return
    message = await receive()
    body = message["body"]
    if path == "/later":  # waits on the loop: carried on in a task
        await asyncio.sleep(0.01)
    await _reply(send, 200, scope["method"].encode() + b" " + path.encode() + b" " + body)


async def _reply(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    port = free_port()
    with uvicorn_in_thread(http_config(app, "127.0.0.1", port, lifespan="off")):
        yield f"http://127.0.0.1:{port}"


def _exchange(url: str, raw: bytes) -> bytes:
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_posts_are_answered_by_the_lean_cycle_on_a_kept_alive_connection(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = []
    original = lean.run_eagerly
    monkeypatch.setattr(lean, "run_eagerly", lambda cycle, loop: (ran.append(cycle), original(cycle, loop)))
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(3):
            answer = client.post("/echo", content=b"x" * i)
            assert answer.status_code == 200 and answer.text == "POST /echo " + "x" * i
            assert (
                answer.headers["server"] == "uvicorn" and "date" in answer.headers
            )  # the server's own headers
        assert client.post("/later", content=b"slow").text == "POST /later slow"  # waited: a task carried on
        assert client.get("/echo").text == "GET /echo "  # not a POST: uvicorn's cycle
    assert len(ran) == 4


def test_pipelined_and_http_1_0_requests_keep_their_order_and_framing(url: str) -> None:
    post = b"POST /later HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\na"
    quick = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nb"
    last = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\nconnection: close\r\n\r\nc"
    received = _exchange(url, post + quick + b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n" + last)
    bodies = [part.split(b"\r\n\r\n", 1)[1][:20] for part in received.split(b"HTTP/1.1 200 OK")[1:]]
    assert [b.split(b"HTTP")[0] for b in bodies] == [
        b"POST /later a",
        b"POST /echo b",
        b"GET /echo ",
        b"POST /echo c",
    ]
    old = _exchange(url, b"POST /echo HTTP/1.0\r\ncontent-length: 2\r\n\r\nhi")  # no keep-alive: closed after
    assert (
        old.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in old and old.endswith(b"POST /echo hi")
    )


def test_failures_are_answered_as_uvicorn_answers_them(url: str, caplog: pytest.LogCaptureFixture) -> None:
    errors = logging.getLogger("uvicorn.error")  # uvicorn's logger does not propagate: listen on it directly
    errors.addHandler(caplog.handler)
    try:
        _fail_in_every_way(url)
    finally:
        errors.removeHandler(caplog.handler)
    assert "Exception in ASGI application" in caplog.text
    assert "ASGI callable returned without starting response." in caplog.text


def _fail_in_every_way(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        raised = client.post("/raise", content=b"{}")
        # uvicorn's status and close, in our JSON shape (the type only: a message can quote request data)
        assert raised.status_code == 500 and raised.json() == {"error": "internal error: ValueError"}
        assert raised.headers["connection"] == "close"
        silent = client.post("/silent", content=b"{}")
        assert silent.status_code == 500 and silent.json() == {"error": "internal error: no answer"}
        cut = client.post("/cut-off", content=b"{}")  # a request the shutdown cut off: ask again (elsewhere)
        assert cut.status_code == 503 and "shutting down" in cut.json()["error"]
        streamed = client.post("/stream", content=b"{}")
        assert streamed.text == "one,two,three" and streamed.headers["transfer-encoding"] == "chunked"


def test_a_timeout_in_the_first_step_cancels_the_task_it_carries_on_in(url: str) -> None:
    answer = httpx.post(url + "/timeout", content=b"{}", timeout=10)
    assert answer.status_code == 504 and answer.text == "timed out"
    assert isinstance(seen["task"], lean.FirstStep)  # current_task() while no task existed yet


def test_receive_after_the_body_waits_for_the_client_to_leave(url: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    seen.pop("after", None)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /wait-for-disconnect HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        wait_until(lambda: seen.get("waiting"), 10, what="the app to wait")
        assert "after" not in seen
    wait_until(lambda: "after" in seen, 10, what="the disconnect to reach the app")
    assert seen["after"] == {"type": "http.disconnect"}


def test_a_receive_waiting_past_the_body_ends_with_the_response(url: str) -> None:
    seen.pop("listened", None)
    with httpx.Client(base_url=url, timeout=10) as client:  # the connection stays open meanwhile
        assert client.post("/answer-then-listen", content=b"{}").text == "done"
        wait_until(lambda: "listened" in seen, 10, what="the app to hear the end")
        assert seen["listened"] == {"type": "http.disconnect"}
        assert client.post("/echo", content=b"z").text == "POST /echo z"


def test_the_first_step_stands_in_for_a_task_until_one_exists() -> None:
    async def scenario() -> None:
        async def idle() -> None:
            await asyncio.sleep(10)

        coro = idle()
        step = lean.FirstStep(coro)
        assert step.cancel() and step.cancelling() == 1 and step.uncancel() == 0
        assert step.get_coro() is coro and not step.done() and not step.cancelled()
        with pytest.raises(RuntimeError):
            step.add_done_callback(lambda _: None)
        step.cancel()  # counted, then handed to the task once attached
        task = asyncio.get_running_loop().create_task(coro)
        step.attach(task)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert step.done() and step.cancelled()

    asyncio.run(scenario())


def test_keep_alive_closes_an_idle_connection_and_only_an_idle_one() -> None:
    """The keep-alive timer is armed once per idle stretch (not per response): a connection in use past the
    first deadline stays open; once idle for the timeout it is closed."""
    from serving.http.launcher import HTTP_PROTOCOL

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=HTTP_PROTOCOL, lifespan="off", timeout_keep_alive=0.3
    )
    with uvicorn_in_thread(config):
        request = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nk"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            started = time.monotonic()
            while time.monotonic() - started < 0.9:  # three timeouts' worth of use, a request every 0.1 s
                sock.sendall(request)
                assert sock.recv(65536).endswith(b"POST /echo k")
                answered = time.monotonic()
                time.sleep(0.1)  # the time between uses is the scenario, not a wait for something
            assert (
                sock.recv(65536) == b""
            )  # closed by the server once idle, the timeout after the last answer:
            assert 0.25 <= time.monotonic() - answered < 3


@pytest.mark.parametrize(
    "target",
    [
        "/scope/a?x=1&y=2",
        "/scope/a%20b/%C3%A9?q=%2F",
        "/scope/a?",
        "/scope/a?b?c",
        "/scope/;p=1",
        "/scope//double",
        "http://127.0.0.1/scope/absolute?z=1",
    ],
)
def test_the_lean_scope_has_the_path_and_query_uvicorn_gives(url: str, target: str) -> None:
    """A POST (the lean cycle) and a GET (uvicorn's) of the same target see the same path, raw path, query."""

    def seen_by(method: str) -> bytes:
        head = f"{method} {target} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        answer = _exchange(url, head.encode())
        assert answer.startswith(b"HTTP/1.1 200"), answer
        return answer.split(b"\r\n\r\n", 1)[1]

    assert seen_by("POST") == seen_by("GET")


def test_a_large_request_body_is_let_go_with_its_answer(model_repo: Path) -> None:
    """Protocol and cycle refer to each other, so a closed connection's last cycle waits for the garbage
    collector: its request body (up to --max-body-bytes) must not wait with it. 12 x 4 MB on fresh connections,
    collector off: the memory held afterwards is far below what the bodies add up to."""
    import gc
    import tracemalloc

    body = b'{"instances": [[6.8, 2.8, 4.8, 1.4]], "pad": "' + b"x" * 4_000_000 + b'"}'
    with serving_inprocess(["serve", "--model-dir", str(model_repo / "sklearn-iris")]) as server:
        url = server.url + "/v1/models/sklearn-iris:predict"
        assert httpx.post(url, content=body).status_code == 200  # warm: imports, first allocations
        gc.collect()
        gc.disable()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(12):
                with httpx.Client() as client:  # a connection of its own, closed after the answer
                    assert client.post(url, content=body).status_code == 200
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            gc.enable()
    assert held < 16_000_000, f"{held / 1e6:.0f} MB still held after 12 x 4 MB bodies"
