"""Edges of the pieces canaries and autoscaling lean on: PromQL answers of every shape from a real HTTP server
on loopback, the mirror's bound, and process CPU/memory readings of real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.canary.promql import evaluate, render
from serving.control.local.process_usage import ProcessUsage
from serving.router.mirror import Mirror
from serving.router.table import Arm, ServiceRoute
from serving.router.upstream import Upstreams
from tests.support import wait_until

ANSWERS = {  # query -> (status, body) as Prometheus' HTTP API gives them
    "vector": (
        200,
        {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "42.5"]}]},
        },
    ),
    "scalar": (200, {"status": "success", "data": {"resultType": "scalar", "result": [1, "7"]}}),
    "empty": (200, {"status": "success", "data": {"resultType": "vector", "result": []}}),
    "bad": (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}),
}


async def prometheus_api(request: Request) -> Response:
    status, body = ANSWERS[request.query_params["query"]]
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def test_promql_values_of_every_shape_and_no_data_for_the_rest() -> None:
    api = Starlette(routes=[Route("/api/v1/query", prometheus_api)])

    async def run() -> list[float | None]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api)) as client:
            values = [await evaluate(client, "http://prom", q) for q in ("vector", "scalar", "empty", "bad")]
        async with httpx.AsyncClient() as client:  # nothing listens there: no data, not an exception
            values.append(await evaluate(client, "http://127.0.0.1:9", "vector"))
        return values

    assert asyncio.run(run()) == [42.5, 7.0, None, None, None]
    assert (
        render(
            'rate(x{ns="{{ namespace }}",isvc="{{target}}",rev="{{ revision }}"}[{{ interval }}])',
            {"namespace": "ml", "target": "iris", "revision": "iris-b", "interval": "30s"},
        )
        == 'rate(x{ns="ml",isvc="iris",rev="iris-b"}[30s])'
    )


def test_mirror_drops_past_its_bound_and_counts_the_copies_it_sends() -> None:
    class Counts:
        seen: list[tuple[str, int]] = []

        def observe_route(
            self, isvc: str, namespace: str, revision: str, arm: str, code: int, seconds: float
        ) -> None:
            self.seen.append((arm, code))

    async def run() -> tuple[int, list[tuple[str, int]]]:
        metrics = Counts()
        mirror = Mirror(Upstreams(), metrics, limit=2)
        shadow = Arm(
            "iris-b", 0, "mirror", "latest", ("http://127.0.0.1:9",)
        )  # nothing listens: a 5xx, counted
        route = ServiceRoute("iris", "default", (), mirror=shadow)
        for _ in range(5):
            mirror.send(route, "POST", "/v1/models/iris:predict", [], b"{}")
        await asyncio.gather(*mirror._tasks, return_exceptions=True)
        await mirror.close()
        return mirror.dropped, metrics.seen

    dropped, seen = asyncio.run(run())
    assert dropped == 3 and len(seen) == 2 and all(arm == "mirror" and code >= 500 for arm, code in seen)


def test_process_usage_reads_real_processes_and_forgets_gone_ones() -> None:
    busy = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: pass"]
    )
    try:
        usage = ProcessUsage()
        assert usage.cpu_percent([busy.pid, os.getpid()]) == 0.0  # the first reading starts the interval
        assert usage.memory_percent([os.getpid()]) > 0
        wait_until(lambda: usage.cpu_percent([busy.pid]) > 0, 5, what="the busy process's CPU")
    finally:
        busy.kill()
        busy.wait()
    assert usage.cpu_percent([busy.pid]) == 0.0 and usage.memory_percent([busy.pid]) == 0.0
    assert usage.cpu_percent([2**22 + 7]) == 0.0  # no such pid
