"""The router's direct lane (serving/router/lane.py) against the ASGI path it short-cuts.

A real model server (iris), the router app as `serving up` builds it (`observe_router`) served with our own
protocol class, and scripted upstreams on loopback for the failures: one that drops a connection without
answering, one that stops answering. Each test runs the router with the lane and without it (the ASGI path
alone): same answers, same metrics, same counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import re
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import uvicorn

from serving.http.launcher import http_config
from serving.metrics import RouterMetrics
from serving.observability.hook import observe_router
from serving.observability.options import ObservabilityOptions
from serving.router.app import Router
from serving.router.auth import KeyRing
from serving.router.table import Arm, RouteTable, ServiceRoute
from tests.inprocess import InProcessServer, serving_inprocess
from tests.observability_support import until
from tests.support import train_iris_sklearn

pytestmark = pytest.mark.asyncio
REVISION = "iris-00000001"
ROW = {"instances": [[6.8, 2.8, 4.8, 1.4]]}


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("lane") / "iris"
    train_iris_sklearn(folder)
    with serving_inprocess(["serve", "--model-dir", str(folder), "--name", "iris"]) as server:
        yield server


@contextlib.asynccontextmanager
async def routed(
    endpoints: tuple[str, ...],
    lane: bool,
    timeout_s: float = 60.0,
    max_body_bytes: int = 64 * 1024 * 1024,
    activator: bool = False,
) -> AsyncIterator[Any]:
    """A router in front of `endpoints` (one arm), served by our protocol on this loop; yields (url, router, spy)
    where spy counts the requests the lane sent on its way."""
    router = Router(metrics=RouterMetrics(), max_body_bytes=max_body_bytes)
    router.set_table(route_table(endpoints, timeout_s, activator))
    app = observe_router(router, ObservabilityOptions())
    spy = {"sent": 0}
    if lane:
        try_forward = router.upstreams.try_forward

        def counted(*args: Any) -> Any:
            sent = try_forward(*args)
            spy["sent"] += sent is not None
            return sent

        router.upstreams.try_forward = counted  # type: ignore[method-assign]
    else:
        app.direct_lane = None
    server = uvicorn.Server(http_config(app, "127.0.0.1", 0, lifespan="off"))
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), what="the router to start")
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        yield url, router, spy
    finally:
        server.should_exit = True
        await task
        await router.upstreams.close()


def route_table(endpoints: tuple[str, ...], timeout_s: float = 60.0, activator: bool = False) -> RouteTable:
    arm = Arm(REVISION, 100, "stable", "latest", endpoints)
    route = ServiceRoute("iris", "default", (arm,), timeout_s=timeout_s, activator=activator)
    return RouteTable({("default", "iris"): route})


def _routed_counts(router: Router) -> dict[str, float]:
    text = router.metrics.exposition().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith(("serving_router_requests_total{", "serving_router_requests_in_flight{")):
            code = re.search(r'code="(\d+)"', line)
            key = line.split("{", 1)[0] + (f"[{code.group(1)}]" if code else "")
            counts[key] = float(line.rsplit(" ", 1)[1])
    return counts


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "asgi"])
async def test_answers_headers_and_counts_match_the_asgi_path(
    predictor: InProcessServer, lane: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="serving.access")
    async with (
        routed((predictor.url,), lane) as (url, router, spy),
        httpx.AsyncClient(base_url=url) as client,
    ):
        answers = [await client.post("/v1/models/iris:predict", json=ROW) for _ in range(5)]
        mine = await client.post(
            "/v2/models/iris/infer?x=1",
            headers={"x-request-id": "mine-1"},
            json={
                "inputs": [
                    {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [6.8, 2.8, 4.8, 1.4]}
                ]
            },
        )
        bad = await client.post("/v1/models/iris:predict", json={"instances": [[1.0]]})
        counts = _routed_counts(router)
    # The first request opens the connection through the ASGI path; with the lane, the others take it.
    assert spy["sent"] == (6 if lane else 0)
    for r in answers:
        assert r.status_code == 200 and r.json() == {"predictions": [1]}
        assert r.headers["x-serving-revision"] == REVISION and r.headers["content-type"] == "application/json"
        assert {"date", "server", "content-length", "x-request-id"} <= set(r.headers)
    assert len({r.headers["x-request-id"] for r in answers}) == 5  # a fresh id each, echoed once
    assert all(r.headers.get_list("x-request-id") == [r.headers["x-request-id"]] for r in answers)
    assert mine.status_code == 200 and mine.headers["x-request-id"] == "mine-1"
    assert bad.status_code == 400 and "error" in bad.json() and bad.headers["x-serving-revision"] == REVISION
    assert counts == {
        "serving_router_requests_total[200]": 6.0,
        "serving_router_requests_total[400]": 1.0,
        "serving_router_requests_in_flight": 0.0,
    }
    assert (
        router.load.started[("default", REVISION)] == 7 and router.load.in_flight[("default", REVISION)] == 0
    )
    assert all(n == 0 for n in router.upstreams.outstanding.values())
    # The router's lines (the model server in this process writes its own, without a revision).
    lines = [
        r.getMessage() for r in caplog.records if r.name == "serving.access" and REVISION in r.getMessage()
    ]
    assert len(lines) == 7 and any(
        " 400 " in line and f"revision={REVISION} arm=stable" in line for line in lines
    )
    assert any("id=mine-1" in line and "/v2/models/iris/infer" in line for line in lines)


class Scripted(asyncio.Protocol):
    """An upstream that answers the first request it ever gets, then does what `then` says: drop or hold; or
    that answers every request with a response-splitting header ("split")."""

    seen = 0
    heads: list[bytes] = []  # every request head answered ("record": each one, answered as the first)
    raw = b""  # "raw": the answer to every request
    poisoned = 0  # "poison": requests it died on

    def __init__(self, then: str) -> None:
        self.then = then
        self.buffer = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1)) if sep else -1
        if not sep or len(rest) < length:
            return
        self.buffer = b""
        Scripted.seen += 1
        if self.then == "poison" and b"poison" in rest:  # dies on this request only
            Scripted.poisoned += 1
            self.transport.close()
        elif self.then == "poison":
            Scripted.heads.append(head)
            body = b'{"predictions":["scripted"]}'
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        elif self.then == "dropall":  # dies on every request, as a model a request crashes
            self.transport.close()
        elif self.then == "raw":  # each request answered with these bytes
            self.transport.write(Scripted.raw)
        elif self.then == "split":  # a header that would split the response, were it passed on
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-note: a\nset-cookie: pwned=1\r\n"
                b"content-length: 2\r\n\r\n{}"
            )
        elif Scripted.seen == 1 or self.then == "record":
            Scripted.heads.append(head)
            body = b'{"predictions":["scripted"]}'
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )
        elif self.then == "drop":
            self.transport.close()
        elif self.then == "slowdrop":  # works on it a while, then dies without answering
            asyncio.get_running_loop().call_later(0.2, self.transport.close)
        # "hold": never answers


@contextlib.asynccontextmanager
async def scripted(then: str) -> AsyncIterator[str]:
    Scripted.seen = 0
    Scripted.heads = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Scripted(then), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "asgi"])
async def test_a_connection_dropped_before_any_answer_is_retried_on_another_replica(
    predictor: InProcessServer, lane: bool
) -> None:
    async with scripted("drop") as dropper, routed((dropper, predictor.url), lane) as (url, router, spy):
        async with httpx.AsyncClient(base_url=url) as client:
            first = await client.post("/v1/models/iris:predict", json=ROW)  # the dropper answers its first
            second = await client.post("/v1/models/iris:predict", json=ROW)
        counts = _routed_counts(router)
    assert first.json() == {"predictions": ["scripted"]}
    assert second.status_code == 200 and second.json() == {"predictions": [1]}, second.text
    assert spy["sent"] == (1 if lane else 0)  # the lane sent it to the dropper, then handed it over
    # The retry loop marks an endpoint down when it fails there; the lane's try only sends the retry elsewhere
    assert (dropper in router.upstreams.down_until) == (not lane)
    # Counted once each, though the second was sent twice.
    assert counts == {"serving_router_requests_total[200]": 2.0, "serving_router_requests_in_flight": 0.0}
    assert (
        router.load.started[("default", REVISION)] == 2 and router.load.in_flight[("default", REVISION)] == 0
    )
    assert all(n == 0 for n in router.upstreams.outstanding.values())


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "asgi"])
async def test_a_request_cut_off_by_its_only_replica_dying_waits_for_the_replacement(
    predictor: InProcessServer, lane: bool
) -> None:
    """kill -9 of a revision's only replica (audit /tmp/audit-fault6 F1): the request in flight on a kept-alive
    connection is closed without an answer, and the replica still in the table drops it again before its
    replacement is published. It waits in the activator and is answered by the replacement: it got a 503 at
    once (the retry after the hold was not sent back to wait), or `closed ... 2 times` (one dead replica's two
    connections counted as two deliveries)."""
    async with scripted("drop") as dying, routed((dying,), lane, activator=True) as (url, router, _):
        async with httpx.AsyncClient(base_url=url) as client:
            first = await client.post("/v1/models/iris:predict", json=ROW)  # a kept-alive connection to it
            cut = asyncio.create_task(client.post("/v1/models/iris:predict", json=ROW))
            await until(
                lambda: router.load.held.get(("default", REVISION), 0) == 1 or cut.done(), what="held"
            )
            assert not cut.done(), cut.result().text
            router.set_table(route_table((predictor.url,), activator=True))  # the replacement is ready
            answer = await cut
    assert first.json() == {"predictions": ["scripted"]}
    assert answer.status_code == 200 and answer.json() == {"predictions": [1]}, answer.text


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "asgi"])
async def test_a_response_splitting_header_from_a_model_server_never_reaches_the_client(lane: bool) -> None:
    # The lane writes upstream headers without uvicorn's response-splitting checks (lean_cycle `headers_checked`):
    # httptools refuses such a response while parsing it, so what the checks look for never gets that far.
    async with scripted("split") as splitter, routed((splitter,), lane) as (url, router, _):
        async with httpx.AsyncClient(base_url=url) as client:
            answers = [await client.post("/v1/models/iris:predict", json=ROW) for _ in range(2)]
    for (
        answer
    ) in answers:  # an answer no client could read: 502 (RFC 9110 §15.6.3), each time, no Retry-After
        assert answer.status_code == 502 and "set-cookie" not in answer.headers, answer.text
        assert "sent an invalid answer: bad HTTP response" in answer.json()["error"]
        assert "retry-after" not in answer.headers
    assert all(n == 0 for n in router.upstreams.outstanding.values())


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "asgi"])
async def test_an_encoded_line_break_in_the_path_is_forwarded_encoded_and_splits_nothing(lane: bool) -> None:
    """The path goes upstream as the client sent it: decoded, `%0D%0A` would end the request line on the wire
    to the model server, and the rest would be read there as a second request (request splitting)."""
    injected = (
        b"/v1/models/iris:predict%20HTTP/1.1%0D%0AHost:%20a%0D%0AContent-Length:%200%0D%0A%0D%0A"
        b"POST%20/v2/repository/models/iris/unload?x=%0D%0A"
    )
    hops = (
        b"connection: keep-alive, x-hop\r\nx-hop: secret\r\nproxy-connection: keep-alive\r\n"
        b"trailer: x-t\r\nte: trailers\r\nx-kept: yes\r\n"
    )
    async with scripted("record") as recorder, routed((recorder,), lane) as (url, _, spy):
        async with httpx.AsyncClient(base_url=url) as client:  # a pooled connection for the lane
            assert (await client.post("/v1/models/iris:predict", json=ROW)).status_code == 200
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        body = orjson.dumps(ROW)
        writer.write(
            b"POST %s HTTP/1.1\r\nhost: x\r\n%scontent-length: %d\r\n\r\n%s"
            % (injected, hops, len(body), body)
        )
        received = b""
        while b"scripted" not in received:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, received
            received += chunk
        writer.close()
    assert received.startswith(b"HTTP/1.1 200 "), received
    assert len(Scripted.heads) == 2, Scripted.heads  # the warm-up and this one: nothing split off
    request_line, *header_lines = Scripted.heads[1].split(b"\r\n")
    assert request_line == b"POST " + injected + b" HTTP/1.1"
    names = {line.split(b":", 1)[0].lower() for line in header_lines}
    assert b"x-kept" in names
    assert not names & {b"x-hop", b"proxy-connection", b"trailer", b"te", b"connection"}, names
    assert spy["sent"] == (1 if lane else 0)


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "asgi"])
@pytest.mark.parametrize(
    ("raw", "status", "said"),
    [
        (b"HTTP/1.1 600 X\r\ncontent-length: 2\r\n\r\n{}", 502, "status 600"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
            502,
            "101",
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}", 502, "bad HTTP response"),
        (b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n", 204, ""),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nset-cookie: t=1\r\n\r\n",
            200,
            "",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            502,
            "Transfer-Encoding 'gzip, chunked'",
        ),
    ],
    ids=["status-600", "unasked-101", "two-lengths", "204", "trailer", "te-gzip"],
)
async def test_a_model_servers_odd_answers_are_a_502_or_passed_on_as_http_allows(
    lane: bool, raw: bytes, status: int, said: str
) -> None:
    """Never a hang or a closed connection: what no client could read is a 502 (RFC 9110 §15: a status past 599
    is a 5xx; §15.6.3), and the replica is not marked down for it. A 204 carries no Content-Length (§8.6); a
    trailer field is not a header (RFC 9112 §7.1.2)."""
    async with scripted("raw") as upstream, routed((upstream,), lane, timeout_s=5) as (url, router, _):
        Scripted.raw = raw
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            for _ in range(2):  # the second on a fresh connection: nothing was marked down
                answer = await client.post("/v1/models/iris:predict", json=ROW)
                assert answer.status_code == status, answer.text
                if said:
                    assert said in answer.json()["error"] and "retry-after" not in answer.headers
        assert not router.upstreams.down_until
    if status == 204:
        assert "content-length" not in answer.headers and answer.headers["x-a"] == "1"
    if status == 200:
        assert answer.content == b"{}" and "set-cookie" not in answer.headers


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "asgi"])
async def test_a_model_server_that_stops_answering_is_a_504_naming_the_revision(lane: bool) -> None:
    async with scripted("hold") as holder, routed((holder,), lane, timeout_s=0.3) as (url, router, spy):
        async with httpx.AsyncClient(base_url=url) as client:
            await client.post("/v1/models/iris:predict", json=ROW)
            late = await client.post("/v1/models/iris:predict", json=ROW, headers={"x-request-id": "late-1"})
            after = await client.post("/v1/models/iris:predict", json=ROW)
        counts = _routed_counts(router)
    assert late.status_code == 504, late.text
    assert late.json() == {"error": "model server did not answer within 0.3s"}
    assert late.headers["x-serving-revision"] == REVISION and late.headers["x-request-id"] == "late-1"
    assert after.status_code == 504  # a fresh connection, not the one that timed out
    assert spy["sent"] == (1 if lane else 0)
    assert counts == {
        "serving_router_requests_total[200]": 1.0,
        "serving_router_requests_total[504]": 2.0,
        "serving_router_requests_in_flight": 0.0,
    }
    assert all(n == 0 for n in router.upstreams.outstanding.values())


async def test_pipelined_requests_are_answered_in_order(predictor: InProcessServer) -> None:
    """Two requests in one write: the first goes through the lane, the second waits behind it (uvicorn's
    pipeline) and is answered after it, on the same connection."""
    async with routed((predictor.url,), True) as (url, router, spy):
        async with httpx.AsyncClient(base_url=url) as client:  # a pooled connection for the lane
            assert (await client.post("/v1/models/iris:predict", json=ROW)).status_code == 200
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        one = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
        two = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
        writer.write(
            b"".join(
                b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\nx-request-id: r%d\r\n"
                b"content-length: %d\r\n\r\n%s" % (i, len(body), body)
                for i, body in ((1, one), (2, two))
            )
        )
        received = b""
        while received.count(b'{"predictions"') < 2:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, received
            received += chunk
        writer.close()
    first, second = received.split(b"HTTP/1.1 ")[1:]
    assert b"x-request-id: r1" in first and first.endswith(b'{"predictions":[1]}')
    assert b"x-request-id: r2" in second and second.endswith(b'{"predictions":[0]}')
    assert spy["sent"] == 1  # the first pipelined one; the warm-up opened the connection, the second waited


@pytest.mark.parametrize("lane", [True, False])
async def test_a_declared_body_over_the_routers_limit_is_413_before_it_is_sent(
    predictor: InProcessServer, lane: bool
) -> None:
    """The router answers from the Content-Length alone: it neither waits for nor gathers the announced bytes."""
    async with routed((predictor.url,), lane, max_body_bytes=4096) as (url, router, spy):
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000\r\n\r\n{")
        received = b""
        while b"over the limit" not in received:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, received
            received += chunk
        writer.close()
    assert received.startswith(b"HTTP/1.1 413 ")
    assert b"request body of 10000000 bytes is over the limit of 4096 bytes" in received
    assert spy["sent"] == 0


async def test_a_large_binary_tensor_through_the_router_is_answered_as_the_model_server_answers_it(
    predictor: InProcessServer,
) -> None:
    """Both large bodies read past the parser (serving/http/direct_body.py): the request by the router's
    protocol, the binary answer (320 kB of INT64) by its upstream connection; bytes end to end as direct."""
    rows = np.random.default_rng(3).uniform(0.1, 7.9, (40_000, 4))
    header = (
        b'{"inputs":[{"name":"x","datatype":"FP64","shape":[40000,4],"parameters":{"binary_data_size":%d}}],'
        b'"parameters":{"binary_data_output":true}}' % rows.nbytes
    )
    request = {
        "content": header + rows.tobytes(),
        "headers": {"inference-header-content-length": str(len(header))},
    }
    async with httpx.AsyncClient(timeout=30) as client:
        direct = await client.post(f"{predictor.url}/v2/models/iris/infer", **request)
        async with routed((predictor.url,), True) as (url, router, spy):
            routed_answers = [await client.post(f"{url}/v2/models/iris/infer", **request) for _ in range(2)]
    assert direct.status_code == 200 and len(direct.content) > 320_000
    for answer in routed_answers:
        assert answer.status_code == 200 and answer.headers["x-serving-revision"] == REVISION
        assert answer.content == direct.content
    assert spy["sent"] == 1  # the second one took the lane


@pytest.mark.parametrize("lane", [True, False])
async def test_expect_100_continue_is_answered_by_the_router_and_not_forwarded(
    predictor: InProcessServer, lane: bool
) -> None:
    """curl sends `Expect: 100-continue` for bodies over 1 MiB: the router says 100 Continue, reads the body and
    answers the prediction (the header is hop-by-hop between client and router, not sent upstream)."""
    async with routed((predictor.url,), lane) as (url, _, _):
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        body = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
        writer.write(
            b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
            b"content-length: %d\r\n\r\n" % len(body)
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        writer.write(body)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
        assert await asyncio.wait_for(reader.readexactly(length), 10) == b'{"predictions":[1]}'
        writer.close()


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "asgi"])
async def test_a_retry_on_another_replica_keeps_the_first_try_s_timeout(lane: bool) -> None:
    """A replica that dies mid-request (0.2 s in) twice, then one that never answers: 504 at the route's 0.3 s
    from the first send, not a fresh timeout per try."""
    async with (
        scripted("slowdrop") as dying,
        scripted("hold") as holder,
        routed((dying, holder), lane, timeout_s=0.3) as (url, router, _),
    ):
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.post("/v1/models/iris:predict", json=ROW)).status_code == 200  # warm-up
            started = time.monotonic()
            late = await client.post("/v1/models/iris:predict", json=ROW)
            elapsed = time.monotonic() - started
    assert late.status_code == 504, late.text
    assert elapsed < 0.5, elapsed  # 0.2 + 0.2 + 0.3 with a timeout per try
    assert all(n == 0 for n in router.upstreams.outstanding.values())


async def test_the_routers_own_answers_for_odd_methods_tags_hosts_and_dead_replicas(
    predictor: InProcessServer,
) -> None:
    """405 on its own routes for other methods; 404 for a tag or a NAME.NAMESPACE.DOMAIN Host that is not
    there (retrying cannot help, so not a 503); a replica's address never in an answer."""
    router = Router(metrics=RouterMetrics())
    arm = Arm(REVISION, 100, "stable", "latest", (predictor.url,))
    route = ServiceRoute("iris", "default", (arm,), "iris.default.example.com")
    router.set_table(RouteTable({("default", "iris"): route}))
    transport = httpx.ASGITransport(app=router)
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
        for method, path in (("PATCH", "/v2"), ("TRACE", "/v2"), ("POST", "/v2/health/ready")):
            answer = await client.request(method, path)
            assert answer.status_code == 405 and answer.headers["allow"] == "GET, HEAD", (method, path)
            assert f"method {method} not allowed" in answer.json()["error"]
        tagged = await client.post("/v1/models/iris:predict", json=ROW, headers={"x-serving-tag": "prev"})
        assert tagged.status_code == 404 and "no tag or revision 'prev'" in tagged.json()["error"]
        assert "latest" in tagged.json()["error"]
        pinned = await client.post("/v1/models/iris:predict", json=ROW, headers={"x-serving-tag": "latest"})
        assert pinned.status_code == 200
        elsewhere = await client.post(
            "/v1/models/iris:predict", json=ROW, headers={"host": "iris.prod.example.com"}
        )
        assert elsewhere.status_code == 404, elsewhere.text
        assert elsewhere.json()["error"].startswith(  # what the Host named, not the path's model
            "InferenceService 'iris' not found (Host 'iris.prod.example.com': namespace 'prod')"
        )
        unknown = await client.post(
            "/v1/models/iris:predict", json=ROW, headers={"host": "nope.default.example.com"}
        )
        assert unknown.status_code == 404 and "InferenceService 'nope' not found" in unknown.json()["error"]
        for spelled in (
            "iris.default.example.com:8080",
            "IRIS.Default.EXAMPLE.com",
            "iris.default.example.com.",
        ):
            by_host = await client.post("/v1/models/iris:predict", json=ROW, headers={"host": spelled})
            assert by_host.status_code == 200, spelled
    dead = Arm(REVISION, 100, "stable", "latest", ("http://127.0.0.1:9",))  # nothing listens there
    router.set_table(RouteTable({("default", "iris"): ServiceRoute("iris", "default", (dead,), timeout_s=1)}))
    router.activator.timeout_s = 0.3
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
        refused = await client.post("/v1/models/iris:predict", json=ROW)
    assert refused.status_code == 503 and "127.0.0.1" not in refused.text, refused.text
    await router.upstreams.close()


@pytest.mark.parametrize("lane", [True, False])
async def test_repeated_host_and_tag_headers_route_as_the_first_says_either_way(
    predictor: InProcessServer, lane: bool
) -> None:
    """The lane and the ASGI path read the same (first) header: a request's route never depends on its framing."""
    async with routed((predictor.url,), lane) as (url, _, spy):
        async with httpx.AsyncClient(base_url=url) as client:  # a pooled upstream connection: the lane's
            assert (await client.post("/v1/models/iris:predict", json=ROW)).status_code == 200
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        body = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
        writer.write(
            b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\nx-serving-tag: latest\r\nx-serving-tag: nope\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert spy["sent"] == (1 if lane else 0)  # the lane took it (or, without it, the ASGI path did)


@pytest.mark.parametrize("way", ["lane", "asgi", "api-keys", "mirror"])
async def test_compressed_requests_reach_the_model_server_as_they_were_sent(
    predictor: InProcessServer, way: str
) -> None:
    """gzip and deflate bodies are forwarded compressed, with their Content-Encoding: the router never inflates
    them (the model server does, under its own limit), whichever way it takes: the lane, the ASGI path (API keys
    and a mirror send every request there), or a mirror's copy. Concurrent ones too (no idle connection for
    all of them: the ASGI path even with the lane)."""
    body = orjson.dumps(ROW)
    v2 = orjson.dumps(
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [6.8, 2.8, 4.8, 1.4]}]}
    )
    sent = [
        ("/v1/models/iris:predict", "gzip", gzip.compress(body)),
        ("/v1/models/iris:predict", "deflate", zlib.compress(body)),
        ("/v2/models/iris/infer", "gzip", gzip.compress(v2)),
        ("/v2/models/iris/infer", "deflate", zlib.compress(v2)),
    ]
    async with routed((predictor.url,), way == "lane") as (url, router, spy):
        key = {}
        if way == "api-keys":
            router.auth = KeyRing.load(None, "default:k")
            key = {"x-api-key": "k"}
        elif way == "mirror":
            stable = router.table.services[("default", "iris")].arms[0]
            shadow = Arm("iris-00000002", 0, "canary", "latest", (predictor.url,))
            route = ServiceRoute("iris", "default", (stable, shadow), mirror=shadow)
            router.set_table(RouteTable({("default", "iris"): route}))
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.post("/v1/models/iris:predict", json=ROW, headers=key)).status_code == 200

            async def post(path: str, coding: str, payload: bytes) -> httpx.Response:
                headers = {**key, "content-encoding": coding, "content-type": "application/json"}
                return await client.post(path, content=payload, headers=headers)

            one_by_one = [await post(*request) for request in sent]
            together = await asyncio.gather(*(post(*request) for request in sent * 8))
        await asyncio.gather(*router.mirror._tasks)  # the shadow copies' answers, counted
        counts = router.metrics.exposition().decode()
    for answer, (path, coding, _) in zip(one_by_one + together, sent * 9, strict=True):
        assert answer.status_code == 200, (path, coding, answer.text)
        assert answer.headers["x-serving-revision"] == REVISION
        if path.startswith("/v1/"):
            assert answer.json() == {"predictions": [1]}
        else:
            assert answer.json()["outputs"][0]["data"] == [1]
    if way == "lane":
        assert spy["sent"] >= len(sent)  # one by one, each took the lane
    if way == "mirror":  # every copy (the warm-up's too) answered 200 by the canary
        assert re.search(
            r'serving_router_requests_total\{[^}]*arm="mirror"[^}]*code="200"[^}]*\} 37\.0', counts
        )


async def test_a_head_answer_through_the_router_has_the_get_s_content_length(
    predictor: InProcessServer,
) -> None:
    """RFC 9110 §8.6: a HEAD answer's Content-Length, if sent, is what the GET's would be; the router passes the
    model server's on, not the length of the (empty) body it got."""
    async with routed((predictor.url,), True) as (url, _, _), httpx.AsyncClient() as client:
        for path in ("/v2/models/iris", "/v2/models/iris/ready", "/v1/models/iris", "/v2/models/iris/config"):
            got = await client.get(url + path)
            direct, head = await client.head(predictor.url + path), await client.head(url + path)
            assert got.status_code == head.status_code == 200 and head.content == b"", path
            assert head.headers["content-length"] == direct.headers["content-length"] == str(len(got.content))
            assert head.headers.get_list("content-length") == [str(len(got.content))], path
            assert head.headers["x-serving-revision"] == REVISION
        assert (await client.get(url + "/v2/models/iris")).status_code == 200  # the connection still in step


async def test_the_routers_server_metadata_lists_what_it_routes(predictor: InProcessServer) -> None:
    """`GET /v2` names the extensions a client can use through the router: the binary tensors and a model's
    config (routed), not the repository (not routed: tritonclient's get_model_repository_index would fail)."""
    async with routed((predictor.url,), True) as (url, _, _), httpx.AsyncClient(base_url=url) as client:
        metadata = (await client.get("/v2")).json()
        assert metadata["name"] == "serving-router"
        assert metadata["extensions"] == ["binary_tensor_data", "classification", "model_configuration"]
        assert (await client.get("/v2/models/iris/config")).json()["name"] == "iris"
        assert (await client.post("/v2/repository/index", json={})).status_code == 404


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "asgi"])
async def test_a_client_gone_before_its_answer_is_gone_at_the_replica_too(
    tmp_path_factory: pytest.TempPathFactory, lane: bool
) -> None:
    """A client that hangs up while its request waits upstream (here: queued for the replica's one slot):
    the router closes its upstream exchange, so the replica drops the request from its queue instead of
    running it for nobody (the audit's ghosts made the next real client 504 through `serving up`)."""
    from tests.runtimes_bad_input import RELEASE_FILE, STARTED_FILE

    folder = tmp_path_factory.mktemp("ghost-route") / "gated"
    folder.mkdir()
    gated = ["serve", "--model-dir", str(folder), "--runtime", "tests.runtimes_bad_input:GatedRuntime"]
    with serving_inprocess([*gated, "--name", "iris", "--max-concurrency", "1"]) as replica:

        def waiting() -> float:
            text = httpx.get(replica.url + "/metrics").text
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("serving_concurrency_queue_depth{")
            )

        def body(**parameters: object) -> bytes:
            tensor = {"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}
            return orjson.dumps({"inputs": [tensor], "parameters": parameters})

        async with routed((replica.url,), lane=lane) as (url, router, _):
            path = url + "/v2/models/iris/infer"
            async with httpx.AsyncClient(timeout=30) as client:
                # idle upstream connections for the lane to use
                await asyncio.gather(*(client.post(path, content=body()) for _ in range(4)))
                first = asyncio.create_task(client.post(path, content=body(gate=True)))
                await until(lambda: (folder / STARTED_FILE).exists(), what="the first request in the model")
                port = int(url.rsplit(":", 1)[1])
                ghosts = []
                payload = body(sleep_s=5)
                for _ in range(3):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    head = f"POST /v2/models/iris/infer HTTP/1.1\r\nHost: t\r\nContent-Length: {len(payload)}\r\n\r\n"
                    writer.write(head.encode() + payload)
                    ghosts.append(writer)
                await until(lambda: waiting() == 3, what="three ghosts queued at the replica")
                for writer in ghosts:
                    writer.close()
                try:
                    await until(lambda: waiting() == 0, what="the ghosts gone from the replica's queue")
                finally:
                    (folder / RELEASE_FILE).touch()
                assert (await first).status_code == 200
            assert _routed_counts(router)["serving_router_requests_total[499]"] == 3


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "asgi"])
async def test_an_http_1_0_client_gets_sized_answers_not_chunks(
    predictor: InProcessServer, lane: bool
) -> None:
    """HTTP/1.0 has no chunked encoding: the router's own answers (health, model list, readiness) and the
    proxied ones carry Content-Length, and the connection closes after each (1.0's default)."""
    payload = orjson.dumps(ROW)
    requests = {
        "GET /v2/health/live": b"",
        "GET /v1/models": b"",
        "GET /v2": b"",
        "GET /v2/models/iris/ready": b"",
        "POST /v1/models/iris:predict": payload,
    }
    async with routed((predictor.url,), lane=lane) as (url, _, _):
        port = int(url.rsplit(":", 1)[1])
        for line, body in requests.items():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"{line} HTTP/1.0\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            raw = await asyncio.wait_for(reader.read(), 10)  # to EOF: the server closes a 1.0 connection
            writer.close()
            head, _, answer = raw.partition(b"\r\n\r\n")
            headers = dict(h.split(b": ", 1) for h in head.lower().split(b"\r\n")[1:])
            assert head.startswith(b"HTTP/1.1 200"), (line, head)
            assert b"transfer-encoding" not in headers, (line, head)
            assert int(headers[b"content-length"]) == len(answer), (line, head)
            orjson.loads(answer)


async def test_the_routers_api_key_is_not_passed_on_to_the_replica() -> None:
    """The key is for the router (as on its gRPC side): a replica, and its payload log, never see it."""
    async with scripted("record") as recorder, routed((recorder,), True) as (url, router, spy):
        router.auth = KeyRing.load(None, "*:the-key")
        async with httpx.AsyncClient(base_url=url) as client:
            for header in ({"authorization": "Bearer the-key"}, {"x-api-key": "the-key"}):
                answer = await client.post(
                    "/v1/models/iris:predict", json=ROW, headers={**header, "x-kept": "1"}
                )
                assert answer.status_code == 200, answer.text
    assert len(Scripted.heads) == 2 and spy["sent"] == 0  # API keys take the ASGI path
    for head in Scripted.heads:
        names = {line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")[1:]}
        assert b"x-kept" in names and not names & {b"authorization", b"x-api-key"}, head


async def test_a_request_whose_replicas_all_close_on_it_is_not_sent_to_every_one() -> None:
    """A replica killed mid-request loses nothing (the request goes to another), but a request that itself
    kills replicas reaches two of them, then is answered 503 (RFC 9110 §9.2.2: no endless automatic retry)."""
    async with (
        scripted("dropall") as one,
        scripted("dropall") as two,
        scripted("dropall") as three,
        routed((one, two, three), False) as (url, router, _),
    ):
        Scripted.seen = 0  # the three scripted servers share the count
        async with httpx.AsyncClient(base_url=url) as client:
            answer = await client.post("/v1/models/iris:predict", json=ROW)
    assert answer.status_code == 503 and "not sent again" in answer.json()["error"], answer.text
    assert Scripted.seen == 2


async def _second_request_head(lane: bool, headers: Any) -> tuple[list[bytes], httpx.Response]:
    """The head lines a replica received for a request with `headers` (after one that pools a connection for
    the lane), and the client's answer."""
    async with scripted("record") as recorder, routed((recorder,), lane) as (url, _, _):
        async with httpx.AsyncClient(base_url=url) as client:
            await client.post("/v1/models/iris:predict", json=ROW)  # a pooled connection for the lane
            answer = await client.post("/v1/models/iris:predict", json=ROW, headers=headers)
    return Scripted.heads[-1].split(b"\r\n"), answer


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "asgi"])
async def test_two_request_ids_reach_the_replica_as_one_either_way(lane: bool) -> None:
    head, answer = await _second_request_head(lane, [("x-request-id", "bad id"), ("x-request-id", "good-2")])
    ids = [line for line in head if line.lower().startswith(b"x-request-id:")]
    assert ids == [b"x-request-id: good-2"] and answer.headers["x-request-id"] == "good-2", (
        ids,
        answer.headers,
    )


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "asgi"])
async def test_dot_segments_are_refused_not_forwarded(predictor: InProcessServer, lane: bool) -> None:
    """A server behind that resolved `..` would see a path the router does not route (/v2/repository/...)."""
    async with routed((predictor.url,), lane) as (url, _, spy):
        host, port = url.removeprefix("http://").split(":")
        for path in (b"/v2/models/iris/../../v2/repository/index", b"/v2/models/iris/%2e%2e/x/infer"):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                b"POST %s HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}" % path
            )
            received = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert received.startswith(b"HTTP/1.1 400 "), received
            assert b"segment: not routed" in received
        async with httpx.AsyncClient(base_url=url) as client:  # a name starting with a dot is a name
            assert (await client.post("/v1/models/.iris:predict", json=ROW)).status_code == 404
    assert spy["sent"] == 0


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "asgi"])
async def test_a_connection_header_naming_the_request_id_does_not_lose_it(lane: bool) -> None:
    """The id is the router's to send on (as when it makes one): the replica logs the id the router logged."""
    head, answer = await _second_request_head(
        lane, {"connection": "keep-alive, x-request-id", "x-request-id": "mine-1"}
    )
    assert b"x-request-id: mine-1" in head, head
    assert answer.headers["x-request-id"] == "mine-1"


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "asgi"])
async def test_a_request_that_kills_replicas_reaches_two_even_over_kept_alive_connections(lane: bool) -> None:
    """Each delivery whose connection closes without an answer counts, on a pooled connection too (the pool
    does not try it again there, and the lane's try counts): the third replica never sees it."""
    async with (
        scripted("poison") as one,
        scripted("poison") as two,
        scripted("poison") as three,
        routed((one, two, three), lane) as (url, _, _),
    ):
        Scripted.poisoned = 0
        async with httpx.AsyncClient(base_url=url) as client:
            # warm: kept-alive connections to every replica
            warm = await asyncio.gather(
                *(client.post("/v1/models/iris:predict", json=ROW) for _ in range(12))
            )
            assert all(w.status_code == 200 for w in warm)
            answer = await client.post("/v1/models/iris:predict", json={"instances": [["poison"]]})
    assert answer.status_code == 503 and "not sent again" in answer.json()["error"], answer.text
    assert Scripted.poisoned == 2
