"""gRPC calls are observed as HTTP requests are: a request id (the client's `x-request-id`, else a new one)
echoed in the trailing metadata and sent on by the router, one access line per ModelInfer in the model server
and in the router (same id in both), and a client that cancels or lets its deadline pass counted as 499, not as
a server error. Real servers: `serving serve --grpc-port 0` in process, the router's gRPC front in this loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from serving.grpc import messages as pb
from serving.metrics import RouterMetrics
from serving.observability.hook import observe_router
from serving.observability.options import ObservabilityOptions
from serving.router.app import Router
from serving.router.grpc_proxy import GrpcProxy
from serving.router.table import Arm, RouteTable, ServiceRoute
from tests.inprocess import InProcessServer, serving_inprocess
from tests.test_grpc_router import INFER, fronted, grpc_target, infer_request

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    logging.getLogger("serving.grpc").setLevel(logging.INFO)  # the port line
    folder = tmp_path_factory.mktemp("sleepy") / "iris"
    folder.mkdir()
    with serving_inprocess(
        ["serve", "--model-dir", str(folder), "--runtime", "tests.test_grpc_server:SleepyEcho"]
        + ["--grpc-port", "0", "--max-concurrency", "1"]  # over 1 + 10 waiting: refused
    ) as server:
        yield server


@pytest_asyncio.fixture
async def router_front(replica: InProcessServer) -> AsyncIterator[tuple[Router, str]]:
    router = Router(metrics=RouterMetrics())
    observe_router(router, ObservabilityOptions())  # what `serving up` / `serving router` wrap it in
    arm = Arm("iris-rev1", 100, "stable", "latest", (replica.url,), (grpc_target(replica),))
    router.set_table(RouteTable({("default", "iris"): ServiceRoute("iris", "default", (arm,))}, version=1))
    proxy = GrpcProxy(router)
    port = await proxy.start("127.0.0.1", 0)
    try:
        yield router, f"127.0.0.1:{port}"
    finally:
        await proxy.stop(1)


def echo_request(sleep_s: float = 0.0) -> bytes:
    request = pb.ModelInferRequest(model_name="iris")
    request.inputs.add(name="x", datatype="INT32", shape=[1]).contents.int_contents.append(1)
    request.parameters["sleep_s"].double_param = sleep_s
    return request.SerializeToString()


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.name == "serving.access"]


async def test_ids_are_echoed_sent_on_and_every_infer_gets_an_access_line(
    router_front: tuple[Router, str], replica: InProcessServer, caplog: pytest.LogCaptureFixture
) -> None:
    _, target = router_front
    caplog.set_level(logging.INFO, logger="serving.access")
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(INFER)(
            echo_request(), metadata=(("x-request-id", "grpc-id-1"),), timeout=10
        )
        await call
        assert dict(await call.trailing_metadata())["x-request-id"] == "grpc-id-1"
        # no id of the client's: a new one, the same in the router's and the replica's lines
        call = channel.unary_unary(INFER)(echo_request(), timeout=10)
        await call
        chosen = dict(await call.trailing_metadata())["x-request-id"]
        # an unknown service: refused by the router, the id in the trailing metadata and in its line
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await channel.unary_unary(INFER)(infer_request("nosuch"), timeout=10)
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    refused_id = dict(unknown.value.trailing_metadata() or ())["x-request-id"]
    by_component: dict[tuple[str, str], dict[str, Any]] = {}
    wanted = {("router", "grpc-id-1"), ("predictor", "grpc-id-1"), ("router", chosen), ("predictor", chosen)}

    def all_written() -> bool:  # a line is written as its call ends, just after its answer went out
        by_component.update({(line["component"], line["request_id"]): line for line in access_lines(caplog)})
        return wanted | {("router", refused_id)} <= set(by_component)

    await _until(all_written)
    for request_id in ("grpc-id-1", chosen):
        router_line = by_component[("router", request_id)]
        replica_line = by_component[("predictor", request_id)]
        assert router_line["path"] == replica_line["path"] == "/inference.GRPCInferenceService/ModelInfer"
        assert (router_line["status"], router_line["isvc"], router_line["revision"], router_line["arm"]) == (
            200,
            "iris",
            "iris-rev1",
            "stable",
        )
        assert (
            replica_line["status"] == 200 and replica_line["bytes_in"] > 0 and replica_line["bytes_out"] > 0
        )
    assert by_component[("router", refused_id)]["status"] == 404
    # straight to the replica: its id comes back in the trailing metadata too, on success and on error
    async with grpc.aio.insecure_channel(grpc_target(replica)) as channel:
        call = channel.unary_unary(INFER)(
            echo_request(), metadata=(("x-request-id", "direct-1"),), timeout=10
        )
        await call
        assert dict(await call.trailing_metadata())["x-request-id"] == "direct-1"
        with pytest.raises(grpc.aio.AioRpcError) as unknown_model:
            await channel.unary_unary(INFER)(
                infer_request("nosuch"), metadata=(("x-request-id", "direct-2"),)
            )
    assert dict(unknown_model.value.trailing_metadata() or ())["x-request-id"] == "direct-2"
    assert ("predictor", refused_id) not in by_component


async def test_a_client_deadline_is_499_not_a_server_error(
    router_front: tuple[Router, str], replica: InProcessServer, caplog: pytest.LogCaptureFixture
) -> None:
    """As a client hanging up over HTTP: counted and logged as 499, never 500 (a `kind: Canary` policy reads
    5xx as the canary failing), and no traceback in the replica's log."""
    router, target = router_front
    caplog.set_level(logging.INFO, logger="serving.access")
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await channel.unary_unary(INFER)(echo_request(sleep_s=1.0), timeout=0.2)
    assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    statuses: dict[str, int] = {}

    def both_lines() -> bool:
        statuses.update({line["component"]: line["status"] for line in access_lines(caplog)})
        return len(statuses) == 2

    await _until(both_lines)
    assert statuses == {"router": 499, "predictor": 499}, statuses
    metrics = httpx.get(replica.url + "/metrics").text
    assert 'serving_requests_total{code="499",model="iris",protocol="grpc",version="1"}' in metrics
    assert 'code="500"' not in metrics
    assert router.metrics is not None
    assert 'code="499"' in router.metrics.exposition().decode()
    assert "Traceback" not in replica.log() and "failed" not in replica.log()


async def test_a_burst_woken_from_zero_waits_for_room_over_grpc(replica: InProcessServer) -> None:
    """containerConcurrency 1, scaled to zero: the activator lets held calls go one at a time as room frees
    (each counts as in flight before any await: the first asks the woken replica for its gRPC port), so none
    overflows the replica (`--max-concurrency 1` refuses past 10 waiting) and none is refused."""
    cold = Arm("iris-cold1", 100, "stable", "latest", ())
    async with fronted(
        ServiceRoute("iris", "default", (cold,), activator=True, replica_concurrency=1)
    ) as front:
        calls = [
            asyncio.ensure_future(front.channel.unary_unary(INFER)(echo_request(0.02), timeout=30))
            for _ in range(15)
        ]
        # every call held before the wake (one arriving after the line drained goes straight on, as over
        # HTTP: the replica's own queue bounds those)
        await _until(lambda: front.router.load.held.get(("default", "iris-cold1"), 0) == 15)
        woken = Arm("iris-cold1", 100, "stable", "latest", (replica.url,))  # its gRPC port asked of it
        route = ServiceRoute("iris", "default", (woken,), activator=True, replica_concurrency=1)
        front.router.set_table(RouteTable({("default", "iris"): route}, version=2))
        done = await asyncio.gather(*calls, return_exceptions=True)
    assert [f"{d.code().name}: {d.details()}" for d in done if not isinstance(d, bytes)] == []


async def _until(check: Any, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_traced_call_is_one_server_span_in_the_clients_trace(tmp_path_factory) -> None:  # noqa: ANN001
    """With tracing on, a ModelInfer is a SERVER span (OpenTelemetry's RPC conventions) continuing the client's
    `traceparent`, with the model's decode/predict/encode under it; they were three traces of their own. Through
    the router's gRPC front the router's SERVER span continues the client's trace and the replica's is its
    child, as over HTTP (the router made no span)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from serving.observability import tracing

    memory = InMemorySpanExporter()
    tracing.setup("serving-test", exporter=memory)
    folder = tmp_path_factory.mktemp("traced") / "iris"
    folder.mkdir()
    client_trace, routed_trace = "4bf92f3577b34da6a3ce929d0e0e4736", "5bf92f3577b34da6a3ce929d0e0e4737"
    try:
        with serving_inprocess(
            ["serve", "--model-dir", str(folder), "--runtime", "tests.test_grpc_server:SleepyEcho"]
            + ["--grpc-port", "0", "--otel"]
        ) as server:
            memory.clear()
            async with grpc.aio.insecure_channel(grpc_target(server)) as channel:
                metadata = (("traceparent", f"00-{client_trace}-00f067aa0ba902b7-01"),)
                await channel.unary_unary(INFER)(echo_request(), metadata=metadata, timeout=10)
            await _until(lambda: any(s.kind is SpanKind.SERVER for s in memory.get_finished_spans()))
            spans = memory.get_finished_spans()
            memory.clear()
            # through the router's gRPC front: its SERVER span in the client's trace, the replica's under it
            arm = Arm("iris-rev1", 100, "stable", "latest", (server.url,), (grpc_target(server),))
            async with fronted(ServiceRoute("iris", "default", (arm,))) as front:
                metadata = (("traceparent", f"00-{routed_trace}-00f067aa0ba902b7-01"),)
                await front.channel.unary_unary(INFER)(echo_request(), metadata=metadata, timeout=10)
            await _until(lambda: sum(s.kind is SpanKind.SERVER for s in memory.get_finished_spans()) == 2)
            routed = memory.get_finished_spans()
    finally:
        tracing.use(None)
    assert {format(s.context.trace_id, "032x") for s in routed} == {routed_trace}
    replica_span, router_span = sorted(
        (s for s in routed if s.kind is SpanKind.SERVER), key=lambda s: s.start_time, reverse=True
    )
    assert router_span.name == replica_span.name == "inference.GRPCInferenceService/ModelInfer"
    assert router_span.parent is not None and format(router_span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert replica_span.parent is not None and replica_span.parent.span_id == router_span.context.span_id
    assert router_span.attributes["rpc.grpc.status_code"] == 0
    (server_span,) = [s for s in spans if s.kind is SpanKind.SERVER]
    assert server_span.name == "inference.GRPCInferenceService/ModelInfer"
    assert (
        server_span.attributes["rpc.system"] == "grpc" and server_span.attributes["rpc.grpc.status_code"] == 0
    )
    assert {format(s.context.trace_id, "032x") for s in spans} == {client_trace}
    children = {
        s.name for s in spans if s.parent is not None and s.parent.span_id == server_span.context.span_id
    }
    assert {"decode", "predict", "encode"} <= children, [s.name for s in spans]


async def test_a_grpc_spans_status_is_its_codes_as_opentelemetrys_conventions_say(
    tmp_path_factory,
    caplog: pytest.LogCaptureFixture,  # noqa: ANN001
) -> None:
    """OpenTelemetry's gRPC server spans: Error only for UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
    UNAVAILABLE, DATA_LOSS, described by the call's own details. An unknown model (NOT_FOUND) was Error with
    "AbortError: Locally aborted." (grpc's abort exception), and a client's deadline was UNKNOWN
    (audit /tmp/audit-obs3 M2)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    from serving.observability import tracing

    memory = InMemorySpanExporter()
    tracing.setup("serving-test", exporter=memory)
    caplog.set_level(logging.INFO, logger="serving.access")
    folder = tmp_path_factory.mktemp("codes") / "iris"
    folder.mkdir()
    try:
        with serving_inprocess(
            ["serve", "--model-dir", str(folder), "--runtime", "tests.test_grpc_server:SleepyEcho"]
            + ["--grpc-port", "0", "--otel"]
        ) as server:
            memory.clear()
            async with grpc.aio.insecure_channel(grpc_target(server)) as channel:
                unknown = pb.ModelInferRequest(model_name="nosuch").SerializeToString()
                with pytest.raises(grpc.aio.AioRpcError):
                    await channel.unary_unary(INFER)(unknown, timeout=10)
                with pytest.raises(grpc.aio.AioRpcError):
                    await channel.unary_unary(INFER)(echo_request(sleep_s=1.0), timeout=0.2)

            def servers() -> list[Any]:
                return [s for s in memory.get_finished_spans() if s.kind is SpanKind.SERVER]

            await _until(lambda: len(servers()) == 2)
    finally:
        tracing.use(None)
    by_code = {s.attributes["rpc.grpc.status_code"]: s for s in servers()}
    assert set(by_code) == {grpc.StatusCode.NOT_FOUND.value[0], grpc.StatusCode.DEADLINE_EXCEEDED.value[0]}
    not_found = by_code[grpc.StatusCode.NOT_FOUND.value[0]]
    assert not_found.status.status_code is StatusCode.UNSET and "error.type" not in not_found.attributes
    late = by_code[grpc.StatusCode.DEADLINE_EXCEEDED.value[0]]
    assert (
        late.status.status_code is StatusCode.ERROR and late.attributes["error.type"] == "DEADLINE_EXCEEDED"
    )
    assert "Locally aborted" not in (late.status.description or "")
    # the span and the access line join on the trace id and the request id, as over HTTP (audit obs3 M3)
    lines = {line["request_id"]: line for line in access_lines(caplog)}
    for span in (not_found, late):
        line = lines[span.attributes["serving.request_id"]]
        assert line["trace_id"] == format(span.context.trace_id, "032x"), line
