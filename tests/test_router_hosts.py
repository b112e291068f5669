"""Which InferenceService a request names, and the 404 when none: KServe's in-cluster Host forms
(NAME.NAMESPACE, NAME.NAMESPACE.svc[.CLUSTER_DOMAIN]) reach it as its external host does, and a name sent
without a Host (the `default` namespace) that lives in another namespace is answered with where it is.
In-process: the router's ASGI app; the upstream call is a spy."""

from __future__ import annotations

import httpx
import pytest

from serving.router.app import Router
from serving.router.table import Arm, RouteTable, ServiceRoute
from serving.router.upstream import UpstreamResponse

ROW = {"instances": [[6.8, 2.8, 4.8, 1.4]]}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("host", "status", "said"),
    [
        ("sklearn-iris.kserve-test.example.com", 200, ""),
        ("sklearn-iris.kserve-test", 200, ""),
        ("sklearn-iris.kserve-test.svc", 200, ""),
        ("sklearn-iris.kserve-test.svc.cluster.local", 200, ""),
        (
            "127.0.0.1",
            404,
            "InferenceService 'sklearn-iris' not found in namespace 'default'; there are none; 'sklearn-iris' is "
            "in namespace 'kserve-test': send Host sklearn-iris.kserve-test.example.com",
        ),
        (
            "example.com",
            404,
            "InferenceService 'sklearn-iris' not found in namespace 'default'; there are none; "
            "'sklearn-iris' is in namespace 'kserve-test': send Host sklearn-iris.kserve-test.example.com",
        ),
        (
            "other.kserve-test",
            404,
            "InferenceService 'other' not found (Host 'other.kserve-test': namespace 'kserve-test'); existing: "
            "'sklearn-iris'",
        ),
    ],
)
async def test_hosts(host: str, status: int, said: str) -> None:
    route = ServiceRoute(
        "sklearn-iris", "kserve-test", (_arm("sklearn-iris-1"),), host="sklearn-iris.kserve-test.example.com"
    )
    answer = await _ask(route, "sklearn-iris", host)
    assert answer.status_code == status, answer.text
    if said:
        assert answer.json()["error"] == said


@pytest.mark.asyncio
async def test_a_two_label_host_that_is_no_service_still_reaches_the_paths_model_in_default() -> None:
    answer = await _ask(ServiceRoute("iris", "default", (_arm("iris-1"),)), "iris", "example.com")
    assert answer.status_code == 200, answer.text


def _arm(revision: str) -> Arm:
    return Arm(revision, 100, "stable", "latest", ("http://127.0.0.1:9",))


async def _ask(route: ServiceRoute, model: str, host: str) -> httpx.Response:
    """A V1 predict of `model` with this Host, through a router whose table holds `route` (the upstream: a spy)."""
    router = Router()
    router.set_table(RouteTable({(route.namespace, route.name): route}, 1))

    async def forward(endpoints: tuple[str, ...], *_: object) -> tuple[str, UpstreamResponse]:
        return endpoints[0], UpstreamResponse(200, [(b"content-type", b"application/json")], b"{}")

    router.upstreams.forward = forward  # type: ignore[method-assign]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=router), base_url="http://router"
    ) as client:
        return await client.post(f"/v1/models/{model}:predict", json=ROW, headers={"host": host})


@pytest.mark.asyncio
async def test_own_paths_redirect_a_trailing_slash_and_the_repository_says_it_is_not_routed() -> None:
    """`GET /v2/health/ready/` is a 307 to its route as on the model server (it was a 404 through the router);
    the repository extension is named as not routed, as over gRPC (it was `no route for ...`)."""
    router = Router()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=router), base_url="http://router"
    ) as client:
        moved = await client.get("/v2/health/live/?x=1")
        assert moved.status_code == 307 and moved.headers["location"] == "/v2/health/live?x=1"
        assert (await client.get(moved.headers["location"])).json() == {"live": True}
        index = await client.post("/v2/repository/index")
    assert index.status_code == 404
    assert "repository extension (/v2/repository/...) is not routed" in index.json()["error"]
