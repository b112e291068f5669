"""The router's gRPC front (serving.router.grpc_proxy) in this test's loop, in front of real model servers
(`serving serve --grpc-port 0`, in process): exact canary split measured over gRPC from `x-serving-revision`,
tag pinning, namespace metadata, API keys, retry past a dead endpoint, REST-only arms, errors passed through, tritonclient.grpc.aio
answers equal to the direct ones, router metrics per arm. The route table is built by hand here, one arm with
its gRPC endpoint in it and one whose replica is asked for it; `serving up` itself: tests/test_grpc_up.py."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException

from serving.grpc import messages as pb
from serving.metrics import RouterMetrics
from serving.router.app import Router
from serving.router.auth import KeyRing
from serving.router.grpc_proxy import GrpcProxy, field_one
from serving.router.table import Arm, RouteTable, ServiceRoute
from tests.inprocess import InProcessServer, serving_inprocess
from tests.support import free_port

pytestmark = pytest.mark.asyncio
INFER = "/inference.GRPCInferenceService/ModelInfer"
ROW = [6.8, 2.8, 4.8, 1.4]


def grpc_target(server: InProcessServer) -> str:
    found = re.search(r"gRPC \(Open Inference Protocol\) listening on (127\.0\.0\.1:\d+)", server.log())
    assert found, server.log()
    return found.group(1)


@pytest.fixture(scope="module")
def predictors(model_repo: Path) -> Iterator[tuple[InProcessServer, InProcessServer, InProcessServer]]:
    """Two gRPC-speaking replicas and one REST-only (no --grpc-port, as a transformer would be)."""
    logging.getLogger("serving.grpc").setLevel(logging.INFO)
    args = ["serve", "--model-dir", str(model_repo / "sklearn-iris"), "--name", "iris"]
    with (
        serving_inprocess([*args, "--grpc-port", "0"]) as stable,
        serving_inprocess([*args, "--grpc-port", "0"]) as canary,
        serving_inprocess(args) as rest_only,
    ):
        yield stable, canary, rest_only


def table(
    stable: InProcessServer,
    canary: InProcessServer,
    rest: InProcessServer,
    stable_grpc: tuple[str, ...] | None = None,
) -> RouteTable:
    """iris: a canary split with gRPC endpoints in the table (the canary's found by asking the replica);
    shop: one replica without gRPC."""
    arms = (
        Arm("iris-stable1", 80, "stable", "prev", (stable.url,), stable_grpc or (grpc_target(stable),)),
        Arm("iris-canary1", 20, "canary", "latest", (canary.url,)),
    )
    rest_only = (Arm("shop-rev1", 100, "stable", "latest", (rest.url,)),)
    other_namespace = (Arm("iris-ml1", 100, "stable", "latest", (canary.url,), (grpc_target(canary),)),)
    return RouteTable(
        {
            ("default", "iris"): ServiceRoute("iris", "default", arms, "iris.default.example.com"),
            ("default", "shop"): ServiceRoute("shop", "default", rest_only),
            ("ml", "iris"): ServiceRoute("iris", "ml", other_namespace),
        },
        version=1,
    )


@pytest_asyncio.fixture
async def proxied(
    predictors: tuple[InProcessServer, InProcessServer, InProcessServer],
) -> AsyncIterator[tuple[Router, str]]:
    router = Router(metrics=RouterMetrics())
    router.set_table(table(*predictors))
    proxy = GrpcProxy(router)
    port = await proxy.start("127.0.0.1", 0)
    try:
        yield router, f"127.0.0.1:{port}"
    finally:
        await proxy.stop(1)


@dataclass
class Front:
    router: Router
    proxy: GrpcProxy
    channel: grpc.aio.Channel


@asynccontextmanager
async def fronted(*routes: ServiceRoute, router: Router | None = None) -> AsyncIterator[Front]:
    """A router's gRPC front in this loop with these routes (a table made by hand), and a channel to it."""
    router = router or Router(metrics=RouterMetrics())
    router.set_table(RouteTable({(r.namespace, r.name): r for r in routes}, version=1))
    proxy = GrpcProxy(router)
    port = await proxy.start("127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Front(router, proxy, channel)
    finally:
        await proxy.stop(1)


def infer_request(model: str = "iris", datatype: str = "FP64") -> bytes:
    request = pb.ModelInferRequest(model_name=model, id="r1")
    request.inputs.add(name="input-0", datatype=datatype, shape=[1, 4])
    request.raw_input_contents.append(np.array([ROW]).tobytes())
    return request.SerializeToString()


async def revision_of(channel: grpc.aio.Channel, payload: bytes, metadata: tuple = ()) -> str:
    call = channel.unary_unary(INFER)(payload, metadata=metadata, timeout=10)
    response = pb.ModelInferResponse.FromString(await call)
    assert response.id == "r1" and response.outputs[0].name == "output-0"
    return dict(await call.initial_metadata())["x-serving-revision"]


async def test_canary_split_is_exact_over_grpc_and_tags_pin(proxied: tuple[Router, str]) -> None:
    router, target = proxied
    async with grpc.aio.insecure_channel(target) as channel:
        seen = Counter([await revision_of(channel, infer_request()) for _ in range(50)])
        assert seen == {"iris-stable1": 40, "iris-canary1": 10}
        pinned = {
            await revision_of(channel, infer_request(), (("x-serving-tag", "latest"),)) for _ in range(5)
        }
        assert pinned == {"iris-canary1"}
        assert await revision_of(channel, infer_request(), (("x-serving-namespace", "ml"),)) == "iris-ml1"
    exposition = router.metrics.exposition().decode()
    assert re.search(
        r'serving_router_requests_total\{[^}]*code="200"[^}]*revision="iris-canary1"[^}]*\} 15\.0', exposition
    )


async def test_tritonclient_through_the_router_equals_direct(
    proxied: tuple[Router, str], predictors: tuple[InProcessServer, InProcessServer, InProcessServer]
) -> None:
    _, target = proxied
    routed, direct = (
        triton_aio.InferenceServerClient(target),
        triton_aio.InferenceServerClient(grpc_target(predictors[0])),
    )
    try:
        assert await routed.is_server_live() and await routed.is_server_ready()
        assert await routed.is_model_ready("iris")
        assert (await routed.get_model_metadata("iris")).inputs[0].name == "input-0"
        tensor = triton_aio.InferInput("input-0", [2, 4], "FP64")
        tensor.set_data_from_numpy(np.array([ROW, [5.1, 3.5, 1.4, 0.2]]))
        via_router = await routed.infer(
            "iris", [tensor], outputs=[triton_aio.InferRequestedOutput("probabilities")]
        )
        straight = await direct.infer(
            "iris", [tensor], outputs=[triton_aio.InferRequestedOutput("probabilities")]
        )
        assert np.array_equal(via_router.as_numpy("probabilities"), straight.as_numpy("probabilities"))
        with pytest.raises(InferenceServerException) as missing:
            await routed.infer("nope", [tensor])
        assert missing.value.status() == "StatusCode.NOT_FOUND"
    finally:
        await routed.close()
        await direct.close()


async def test_errors_pass_through_with_the_revision(proxied: tuple[Router, str]) -> None:
    _, target = proxied
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(INFER)(infer_request(datatype="FP99"), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await call
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "FP99" in (bad.value.details() or "")
        assert "x-serving-revision" in dict(bad.value.trailing_metadata() or ())
        with pytest.raises(grpc.aio.AioRpcError) as garbage:
            await channel.unary_unary(INFER)(b"\x0a\xff\xff", timeout=10)
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as rest_only:
            await channel.unary_unary(INFER)(infer_request("shop"), timeout=10)
        assert rest_only.value.code() == grpc.StatusCode.UNIMPLEMENTED and "REST only" in (
            rest_only.value.details() or ""
        )
        assert await revision_of(channel, infer_request())  # still serving
        with pytest.raises(grpc.aio.AioRpcError) as huge:  # its message cut to fit the trailers
            await channel.unary_unary(INFER)(infer_request("m" * 100_000), timeout=10)
        assert huge.value.code() == grpc.StatusCode.NOT_FOUND, huge.value.details()
        for method, says in (
            ("RepositoryIndex", "the repository extension) is not routed"),
            ("ModelStatistics", "Triton's statistics extension (ModelStatistics) is not served here"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as unrouted:
                await channel.unary_unary(f"/{pb.SERVICE}/{method}")(b"", timeout=10)
            assert unrouted.value.code() == grpc.StatusCode.UNIMPLEMENTED and says in (
                unrouted.value.details() or ""
            ), unrouted.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as streamed:  # grpcio alone: "Method not found!"
            stream = channel.stream_stream(f"/{pb.SERVICE}/ModelStreamInfer")(iter([b""]), timeout=10)
            async for _ in stream:
                pass
        assert streamed.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "call ModelInfer" in (streamed.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as elsewhere:  # its namespace is chosen by metadata
            await channel.unary_unary(INFER)(infer_request("shop"), metadata=(("x-serving-namespace", "ml"),))
        assert elsewhere.value.code() == grpc.StatusCode.NOT_FOUND
        assert "send metadata x-serving-namespace: default" in (elsewhere.value.details() or "")


async def test_calls_go_to_the_least_busy_replica(
    predictors: tuple[InProcessServer, InProcessServer, InProcessServer],
) -> None:
    """As the HTTP pool chooses: a replica busy with calls in flight is passed over for an idle one (round
    robin sent every Nth call to wait behind a long one)."""
    stable, canary, _ = predictors
    busy, idle = grpc_target(stable), grpc_target(canary)
    arm = Arm("iris-two1", 100, "stable", "latest", (stable.url, canary.url), (busy, idle))

    def grpc_answers(server: InProcessServer) -> float:
        import httpx

        text = httpx.get(server.url + "/metrics").text
        found = re.findall(
            r'serving_requests_total\{code="200",model="iris",protocol="grpc",version="1"\} (\S+)', text
        )
        return float(found[0]) if found else 0.0

    before = grpc_answers(stable), grpc_answers(canary)
    async with fronted(ServiceRoute("iris", "default", (arm,))) as front:
        front.proxy._outstanding[busy] = 3  # three long calls in flight there
        for _ in range(6):
            await front.channel.unary_unary(INFER)(infer_request(), timeout=10)
    assert (grpc_answers(stable) - before[0], grpc_answers(canary) - before[1]) == (0, 6)


async def test_a_dead_endpoint_is_skipped(
    proxied: tuple[Router, str], predictors: tuple[InProcessServer, InProcessServer, InProcessServer]
) -> None:
    router, target = proxied
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    router.set_table(table(*predictors, stable_grpc=(dead, grpc_target(predictors[0]))))
    async with grpc.aio.insecure_channel(target) as channel:
        seen = Counter([await revision_of(channel, infer_request()) for _ in range(10)])
    assert seen == {"iris-stable1": 8, "iris-canary1": 2}


async def test_api_keys_are_checked_over_grpc(proxied: tuple[Router, str]) -> None:
    router, target = proxied
    router.auth = KeyRing.load(None, "default:s3cret")
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await channel.unary_unary(INFER)(infer_request(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await channel.unary_unary(INFER)(infer_request(), metadata=(("x-api-key", "nope"),), timeout=10)
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert await revision_of(channel, infer_request(), (("authorization", "Bearer s3cret"),))


async def test_field_one_reads_only_the_name() -> None:
    assert field_one(infer_request("iris")) == "iris"
    assert field_one(pb.ModelReadyRequest(name="m", version="2").SerializeToString()) == "m"
    assert field_one(pb.ModelConfigRequest(name="c", version="1").SerializeToString()) == "c"
    with pytest.raises(ValueError):
        field_one(b"\x0a\x05ab")  # a length past the end


async def test_model_config_is_routed_like_rest_s_config(
    proxied: tuple[Router, str], predictors: tuple[InProcessServer, InProcessServer, InProcessServer]
) -> None:
    """ModelConfig (Triton's `model_configuration` extension) goes to the arm like ModelMetadata: the replica's
    answer, with the revision; the router's ServerMetadata lists the extension (not the repository's, which
    is not routed)."""
    _, target = proxied
    routed = triton_aio.InferenceServerClient(target)
    direct = triton_aio.InferenceServerClient(grpc_target(predictors[0]))
    try:
        config = await routed.get_model_config("iris", headers={"x-serving-tag": "prev"}, as_json=True)
        assert config == await direct.get_model_config("iris", as_json=True)
        assert config["config"]["name"] == "iris" and config["config"]["input"][0]["name"] == "input-0"
        with pytest.raises(InferenceServerException) as missing:
            await routed.get_model_config("nope")
        assert missing.value.status() == "StatusCode.NOT_FOUND"
        extensions = (await routed.get_server_metadata()).extensions
        assert set(extensions) == {"binary_tensor_data", "classification", "model_configuration"}
    finally:
        await routed.close()
        await direct.close()
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelConfig")(
            pb.ModelConfigRequest(name="iris").SerializeToString(), timeout=10
        )
        assert pb.ModelConfigResponse.FromString(await call).config.name == "iris"
        assert dict(await call.initial_metadata())["x-serving-revision"] in ("iris-stable1", "iris-canary1")


async def test_a_request_held_at_zero_gets_deadline_exceeded_at_its_own_timeout() -> None:
    """As over HTTP: the route's timeout counts the time held in the activator (a revision scaled to zero whose
    replica does not come), so the answer is DEADLINE_EXCEEDED at it, not UNAVAILABLE at the activator's."""
    import time

    router = Router(metrics=RouterMetrics())
    router.activator.timeout_s = 5.0
    cold = Arm("iris-cold1", 100, "stable", "latest", ())
    async with fronted(
        ServiceRoute("iris", "default", (cold,), activator=True, timeout_s=0.4), router=router
    ) as front:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await front.channel.unary_unary(INFER)(infer_request(), timeout=10)
        took = time.monotonic() - started
    assert refused.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED, refused.value.details()
    assert "within 0.4s" in (refused.value.details() or "")
    assert took < 3  # at the route's 0.4 s, not the activator's 5 s


async def test_a_request_whose_timeout_is_spent_is_not_sent_on() -> None:
    """Nothing left of the route's timeout (spent in the activator): DEADLINE_EXCEEDED without calling the
    replica, as the HTTP path answers 504 (here the timeout is spent before anything: the replica is never
    dialled, so an UNAVAILABLE would mean it was)."""
    arm = Arm("iris-spent1", 100, "stable", "latest", ("http://127.0.0.1:9",), (f"127.0.0.1:{free_port()}",))
    async with fronted(ServiceRoute("iris", "default", (arm,), timeout_s=1e-9)) as front:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await front.channel.unary_unary(INFER)(infer_request(), timeout=10)
    assert refused.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED, refused.value.details()
    assert dict(refused.value.trailing_metadata() or ())["x-serving-revision"] == "iris-spent1"


async def test_grpc_health_follows_the_routers_readiness(proxied: tuple[Router, str]) -> None:
    """Kubernetes' gRPC probe (grpc.health.v1 Check) on the router's gRPC port, as on the model server's."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    router, target = proxied
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        router.ready_check = lambda: False  # e.g. no route table read yet
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        assert unknown.value.code() is grpc.StatusCode.NOT_FOUND


async def test_readiness_of_a_service_with_no_ready_revision_is_false_not_an_error() -> None:
    """ModelReady is an answer (ready=false), through the router as from a model server; HTTP readiness the
    model server's 503 {"name", "ready": false, "reason"}; an unknown service's NOT_FOUND names those that
    exist, over gRPC as over HTTP."""
    import httpx

    router = Router(metrics=RouterMetrics())
    broken = ServiceRoute(
        "broken",
        "default",
        (Arm("broken-1", 100, "stable", "latest", ()),),
        failure="ModelLoadFailed: bad pickle",
    )
    # applied a moment ago: its first revision loads; a prediction would be held, a probe is answered now
    loading = ServiceRoute(
        "loading", "default", (Arm("loading-1", 100, "stable", "latest", ()),), activator=True, starting=True
    )
    router.set_table(RouteTable({("default", "broken"): broken, ("default", "loading"): loading}, version=1))
    proxy = GrpcProxy(router)
    port = await proxy.start("127.0.0.1", 0)
    try:
        client = triton_aio.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            assert await client.is_model_ready("broken") is False
            assert await client.is_model_ready("loading", client_timeout=5) is False
            with pytest.raises(InferenceServerException) as unknown:
                await client.is_model_ready("nope")
            assert "StatusCode.NOT_FOUND" in str(unknown.value) and "existing: 'broken'" in str(unknown.value)
            with pytest.raises(InferenceServerException) as infer:  # other calls still say why
                await client.get_model_metadata("broken")
            assert "StatusCode.UNAVAILABLE" in str(infer.value) and "bad pickle" in str(infer.value)
        finally:
            await client.close()
    finally:
        await proxy.stop(1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router), base_url="http://r") as http:
        for path in ("/v2/models/broken/ready", "/v2/models/broken/versions/1/ready", "/v1/models/broken"):
            answer = await http.get(path)
            assert answer.status_code == 503, path
            doc = answer.json()
            assert doc["name"] == "broken" and doc["ready"] is False and "bad pickle" in doc["reason"], doc
        metadata = await http.get("/v2/models/broken")
        assert metadata.status_code == 503 and "bad pickle" in metadata.json()["error"]


_CRASHING_REPLICA = """
import asyncio, os, sys
import grpc

async def main() -> None:
    async def infer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        with open(sys.argv[1], "a") as deliveries:
            deliveries.write(f"{os.getpid()}\\n")
        os._exit(1)  # the request kills its replica, mid-call, as a segfault in a model would

    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""


async def test_a_request_that_kills_replicas_reaches_two_not_every_one(tmp_path: Path) -> None:
    """As over HTTP (MAX_CLOSED_DELIVERIES): a call whose stream is cut after it was sent goes to one more
    replica, not to every one, and the client gets UNAVAILABLE saying so. Three real replica processes that
    exit on the call they receive."""
    import subprocess
    import sys

    deliveries = tmp_path / "deliveries"
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", _CRASHING_REPLICA, str(deliveries)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    try:
        targets = tuple(f"127.0.0.1:{int(replica.stdout.readline())}" for replica in replicas)  # type: ignore[union-attr]
        arm = Arm("poison-rev1", 100, "stable", "latest", ("http://127.0.0.1:9",), targets)
        async with fronted(ServiceRoute("iris", "default", (arm,))) as front:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await front.channel.unary_unary(INFER)(infer_request(), timeout=30)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE, refused.value.details()
        assert "not sent again" in (refused.value.details() or "")
        pids = deliveries.read_text().split()
        assert len(pids) == len(set(pids)) == 2  # two replicas got it; the third never did
    finally:
        for replica in replicas:
            replica.kill()
            replica.wait()


async def test_metadata_is_bounded_at_64_kib_on_every_hop_not_at_random(proxied: tuple[Router, str]) -> None:
    """grpc-core's default soft limit refused 8-16 KiB of metadata at random, once per hop; the limit is now
    HTTP's header limit, on the router and on its replicas alike: 20 KiB always passes, 70 KiB never does."""
    _, target = proxied
    async with grpc.aio.insecure_channel(target) as channel:
        for _ in range(10):
            assert await revision_of(channel, infer_request(), metadata=(("x-big", "a" * 20_000),))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await channel.unary_unary(INFER)(infer_request(), metadata=(("x-big", "a" * 70_000),), timeout=10)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_call_whose_replicas_are_restarting_waits_for_one_as_over_http(
    predictors: tuple[InProcessServer, InProcessServer, InProcessServer],
) -> None:
    """A replica killed (kill -9) and not replaced yet: its gRPC port refuses. With the activator on (every
    `serving up` service that has not failed), the call waits for a replica and goes on to it, as an HTTP
    request does, instead of UNAVAILABLE at once; the replica is marked down for HTTP requests too. Without
    the activator it is UNAVAILABLE at once, saying none could be reached."""
    import asyncio
    import time

    stable = predictors[0]
    dead_http, dead_grpc = f"http://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    gone = Arm("iris-1", 100, "stable", "latest", (dead_http,), (dead_grpc,))
    back = Arm("iris-1", 100, "stable", "latest", (stable.url,), (grpc_target(stable),))

    def route(arm: Arm, activator: bool = True) -> ServiceRoute:
        return ServiceRoute("iris", "default", (arm,), activator=activator)

    async with fronted(route(gone, activator=False)) as front:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await front.channel.unary_unary(INFER)(infer_request(), timeout=10)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "none could be reached" in (refused.value.details() or ""), refused.value.details()

    async with fronted(route(gone)) as front:
        call = asyncio.ensure_future(revision_of(front.channel, infer_request()))
        while not front.router.load.held.get(("default", "iris-1")):  # waiting in the activator
            if call.done():
                raise AssertionError(f"answered before a replica was back: {call.exception()}")
            await asyncio.sleep(0.01)
        assert front.router.upstreams.down_until[dead_http] > time.monotonic()
        front.router.set_table(RouteTable({("default", "iris"): route(back)}, 2))  # the replacement is ready
        assert await call == "iris-1"
