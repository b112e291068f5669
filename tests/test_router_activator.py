"""The router's activator (scale from zero) as a client sees it: the request's own timeout counts the time it is
held, a service deleted while its requests wait answers them 404 at once, and every activator answer names the
revision. In-process: the upstream call is a spy (no model server needed), tables are swapped by hand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from serving.router.app import Router
from serving.router.table import Arm, RouteTable, ServiceRoute
from serving.router.upstream import UpstreamResponse

ENDPOINT = "http://127.0.0.1:9"  # never dialled: the spy answers
ROW = {"instances": [[6.8, 2.8, 4.8, 1.4]]}


def _route(endpoints: tuple[str, ...] = (), timeout_s: float = 60.0) -> ServiceRoute:
    arm = Arm("iris-1", 100, "stable", "latest", endpoints)
    return ServiceRoute("iris", "default", (arm,), activator=True, timeout_s=timeout_s)


@asynccontextmanager
async def _router(
    route: ServiceRoute, activator_timeout_s: float = 30.0
) -> AsyncIterator[tuple[Router, httpx.AsyncClient, list[float]]]:
    router = Router()
    router.activator.timeout_s = activator_timeout_s
    router.set_table(RouteTable({("default", "iris"): route}, 1))
    given: list[float] = []  # the timeout each upstream call got

    async def forward(
        endpoints: tuple[str, ...],
        method: str,
        path: str,
        headers: object,
        body: bytes,
        timeout_s: float,
        *_: object,
    ) -> tuple[str, UpstreamResponse]:
        given.append(timeout_s)
        return endpoints[0], UpstreamResponse(200, [(b"content-type", b"application/json")], b"{}")

    router.upstreams.forward = forward  # type: ignore[method-assign]
    transport = httpx.ASGITransport(app=router)
    async with httpx.AsyncClient(transport=transport, base_url="http://router", timeout=30) as client:
        yield router, client, given


async def _until_held(router: Router) -> None:
    deadline = time.monotonic() + 10
    while router.load.held.get(("default", "iris-1"), 0) == 0:
        assert time.monotonic() < deadline, "the request was never held"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_a_held_request_gets_504_at_its_own_timeout_not_the_activators_503() -> None:
    async with _router(_route(timeout_s=0.5), activator_timeout_s=3) as (_, client, given):
        started = time.monotonic()
        answer = await client.post("/v1/models/iris:predict", json=ROW)
        took = time.monotonic() - started
    assert answer.status_code == 504, answer.text
    assert "revision iris-1 did not answer within 0.5s" in answer.json()["error"]
    assert answer.headers["x-serving-revision"] == "iris-1"
    assert took < 2.5 and given == []  # at its timeout (0.5 s), before the activator's 3 s


@pytest.mark.asyncio
async def test_the_upstream_call_gets_only_what_the_hold_left_of_the_timeout() -> None:
    async with _router(_route(timeout_s=10)) as (router, client, given):
        asked = asyncio.create_task(client.post("/v1/models/iris:predict", json=ROW))
        await _until_held(router)
        await asyncio.sleep(
            0.3
        )  # the load takes a while: this is the time being measured, not a synchronisation
        router.set_table(RouteTable({("default", "iris"): _route((ENDPOINT,), timeout_s=10)}, 2))
        answer = await asked
    assert answer.status_code == 200 and answer.headers["x-serving-revision"] == "iris-1", answer.text
    (left,) = given
    assert left <= 10 - 0.3, left  # what the request waited in the activator is not given again


@pytest.mark.asyncio
async def test_past_a_shorter_activator_timeout_the_503_names_its_revision() -> None:
    async with _router(_route(timeout_s=30), activator_timeout_s=0.2) as (_, client, _given):
        answer = await client.post("/v1/models/iris:predict", json=ROW)
    assert answer.status_code == 503 and answer.headers["retry-after"], answer.text
    assert "did not become ready within 0.2s" in answer.json()["error"]
    assert answer.headers["x-serving-revision"] == "iris-1"


@pytest.mark.asyncio
async def test_a_full_activator_queue_503_names_its_revision() -> None:
    async with _router(_route()) as (router, client, _given):
        router.activator.max_queue = 0
        answer = await client.post("/v1/models/iris:predict", json=ROW)
    assert answer.status_code == 503 and "0 requests already wait" in answer.json()["error"], answer.text
    assert answer.headers["x-serving-revision"] == "iris-1" and answer.headers["retry-after"]


@pytest.mark.asyncio
async def test_a_request_held_for_a_service_deleted_meanwhile_gets_404_at_once() -> None:
    async with _router(_route(), activator_timeout_s=3) as (router, client, _given):
        asked = asyncio.create_task(client.post("/v1/models/iris:predict", json=ROW))
        await _until_held(router)
        started = time.monotonic()
        router.set_table(RouteTable({}, 2))  # `serving delete iris`
        held = await asked
        took = time.monotonic() - started
        late = await client.post("/v1/models/iris:predict", json=ROW)  # arriving after the delete
    assert held.status_code == 404 and took < 2.5, (held.text, took)  # not at the activator's 3 s
    assert held.json() == late.json() and "InferenceService 'iris' not found" in held.json()["error"]
    assert router.load.held.get(("default", "iris-1"), 0) == 0


@pytest.mark.asyncio
async def test_a_bug_in_the_router_is_a_json_500_naming_its_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a plain-text 500 from the HTTP server: the README's `internal error: TypeName`, message withheld."""
    import httpx as _httpx

    from serving.router.app import Router as _Router

    async def broken(*_: object) -> None:
        raise KeyError("-".join(("SECRET", "MARKER")))

    router = _Router()
    monkeypatch.setattr(router, "_proxy", broken)
    async with _httpx.AsyncClient(transport=_httpx.ASGITransport(app=router), base_url="http://r") as client:
        answer = await client.post("/v1/models/iris:predict", json={"instances": [[1, 2, 3, 4]]})
    assert answer.status_code == 500 and answer.json() == {"error": "internal error: KeyError"}


@pytest.mark.asyncio
async def test_a_service_whose_first_revision_loads_holds_requests_and_answers_probes_at_once() -> None:
    """Applied a moment ago: a prediction waits for the revision, a readiness probe says "not ready" now."""
    starting = ServiceRoute(
        "iris", "default", (Arm("iris-1", 100, "stable", "latest", ()),), activator=True, starting=True
    )
    async with _router(starting, activator_timeout_s=10) as (router, client, given):
        asked = asyncio.create_task(client.post("/v1/models/iris:predict", json=ROW))
        await _until_held(router)
        for probe in ("/v2/models/iris/ready", "/v1/models/iris"):
            answer = await client.get(probe)
            assert answer.status_code == 503 and answer.json()["ready"] is False, answer.text
            assert "no ready revision yet (starting)" in answer.json()["reason"]
        assert not asked.done()
        router.set_table(RouteTable({("default", "iris"): _route((ENDPOINT,))}, 2))  # it became ready
        answer = await asked
    assert answer.status_code == 200 and answer.headers["x-serving-revision"] == "iris-1", answer.text
    assert len(given) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("replicas", [1, 2])
async def test_a_burst_woken_from_zero_goes_on_within_container_concurrency(replicas: int) -> None:
    """Knative's activator: with `containerConcurrency: 1`, the requests held while the revision woke go on one
    per ready replica at a time (the rest wait for room), instead of all at the first replica, which would
    refuse what its own queue cannot take."""
    arm = Arm("iris-1", 100, "stable", "latest", ())
    route = ServiceRoute("iris", "default", (arm,), activator=True, replica_concurrency=1)
    async with _router(route) as (router, client, _given):
        running, most = [0], [0]

        async def forward(endpoints: tuple[str, ...], *_: object) -> tuple[str, UpstreamResponse]:
            running[0] += 1
            most[0] = max(most[0], running[0])
            await asyncio.sleep(0.02)
            running[0] -= 1
            return endpoints[0], UpstreamResponse(200, [(b"content-type", b"application/json")], b"{}")

        router.upstreams.forward = forward  # type: ignore[method-assign]
        burst = [asyncio.create_task(client.post("/v1/models/iris:predict", json=ROW)) for _ in range(8)]
        deadline = time.monotonic() + 10
        while router.load.held.get(("default", "iris-1"), 0) < 8:
            assert time.monotonic() < deadline, "the burst was never held"
            await asyncio.sleep(0.01)
        ready = tuple(f"http://127.0.0.1:{9 + i}" for i in range(replicas))
        woken = ServiceRoute(
            "iris",
            "default",
            (Arm("iris-1", 100, "stable", "latest", ready),),
            activator=True,
            replica_concurrency=1,
        )
        started = time.monotonic()
        router.set_table(RouteTable({("default", "iris"): woken}, 2))
        answers = await asyncio.gather(*burst)
        took = time.monotonic() - started
    assert [a.status_code for a in answers] == [200] * 8
    assert most[0] == replicas, (
        f"{most[0]} requests in flight at once on {replicas} replica(s) of concurrency 1"
    )
    assert took < 8 * 0.02 / replicas + 1.0, "each one went on as room freed, not at the next recheck"


@pytest.mark.asyncio
async def test_requests_cut_off_by_a_dead_replica_go_on_at_once_under_container_concurrency() -> None:
    """Three requests in flight on the one replica (containerConcurrency 1) when it dies: each had its room, so
    each goes on as soon as the replacement is ready (they used to count one another as busy and wait for the
    activator's timeout)."""
    from serving.router.upstream import NoReplicaReached

    dead, fresh = "http://127.0.0.1:9", "http://127.0.0.1:10"

    def route(*endpoints: str) -> ServiceRoute:
        arm = Arm("iris-1", 100, "stable", "latest", endpoints)
        return ServiceRoute("iris", "default", (arm,), activator=True, replica_concurrency=1)

    async with _router(route(dead), activator_timeout_s=20) as (router, client, _given):
        cut = asyncio.Event()

        async def forward(endpoints: tuple[str, ...], *_: object) -> tuple[str, UpstreamResponse]:
            if endpoints[0] == dead:
                await cut.wait()
                raise NoReplicaReached("the replica died before answering")
            return endpoints[0], UpstreamResponse(200, [(b"content-type", b"application/json")], b"{}")

        router.upstreams.forward = forward  # type: ignore[method-assign]
        calls = [asyncio.create_task(client.post("/v1/models/iris:predict", json=ROW)) for _ in range(3)]
        while router.load.in_flight.get(("default", "iris-1"), 0) < 3:
            await asyncio.sleep(0.01)
        router.set_table(RouteTable({("default", "iris"): route()}, 2))  # it is restarting
        cut.set()
        await _until_held(router)
        started = time.monotonic()
        router.set_table(RouteTable({("default", "iris"): route(fresh)}, 3))
        answers = await asyncio.gather(*calls)
        took = time.monotonic() - started
    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
    assert took < 2, f"the replacement was ready, yet they waited {took:.1f} s"


@pytest.mark.asyncio
async def test_requests_arriving_while_others_wait_for_room_wait_behind_them() -> None:
    """First come, first served: once a woken revision has a replica, a request arriving while held ones wait for
    room queues behind them instead of taking the room as it frees (the held ones waited until the load
    stopped)."""
    arm = Arm("iris-1", 100, "stable", "latest", ())
    route = ServiceRoute("iris", "default", (arm,), activator=True, replica_concurrency=1)
    async with _router(route) as (router, client, _given):
        order: list[str] = []

        async def forward(
            endpoints: tuple[str, ...], method: str, path: str, headers: Any, *_: object
        ) -> Any:
            order.append(dict(headers)[b"x-n"].decode())
            await asyncio.sleep(0.01)
            return endpoints[0], UpstreamResponse(200, [(b"content-type", b"application/json")], b"{}")

        router.upstreams.forward = forward  # type: ignore[method-assign]

        def call(n: str) -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(client.post("/v1/models/iris:predict", json=ROW, headers={"x-n": n}))

        early = [call(f"early-{i}") for i in range(4)]
        while router.load.held.get(("default", "iris-1"), 0) < 4:
            await asyncio.sleep(0.01)
        woken = Arm("iris-1", 100, "stable", "latest", ("http://127.0.0.1:9",))
        router.set_table(
            RouteTable(
                {
                    ("default", "iris"): ServiceRoute(
                        "iris", "default", (woken,), activator=True, replica_concurrency=1
                    )
                },
                2,
            )
        )
        late = [call(f"late-{i}") for i in range(4)]
        answers = await asyncio.gather(*early, *late)
    assert [a.status_code for a in answers] == [200] * 8
    assert sorted(order[:4]) == [f"early-{i}" for i in range(4)], order


@pytest.mark.asyncio
async def test_a_held_request_whose_client_leaves_leaves_the_line_and_is_never_sent() -> None:
    """Knative's activator drops a request whose client is gone: it is not sent to the woken replica for
    nobody, ahead of the clients still waiting (the ASGI call is made directly, so the hang-up is real:
    `receive` answers `http.disconnect`, as uvicorn's does)."""
    async with _router(_route()) as (router, _client, given):
        gone = asyncio.Event()
        body = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await gone.wait()
            return {"type": "http.disconnect"}

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/models/iris:predict",
            "raw_path": b"/v1/models/iris:predict",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"router"), (b"content-type", b"application/json")]
            + [(b"content-length", str(len(body)).encode())],
            "server": ("127.0.0.1", 80),
            "client": ("127.0.0.1", 5000),
        }
        call = asyncio.create_task(router(scope, receive, send))
        await _until_held(router)
        gone.set()
        await asyncio.wait_for(call, 5)
        assert router.load.held.get(("default", "iris-1"), 0) == 0
        router.set_table(RouteTable({("default", "iris"): _route((ENDPOINT,))}, 2))
        answered = await _client.post("/v1/models/iris:predict", json=ROW)  # a client still there
    assert answered.status_code == 200
    assert len(given) == 1  # only the second request reached a replica
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] in ([], [499])
