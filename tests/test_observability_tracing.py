"""Tracing with OpenTelemetry's in-memory exporter: one request through a canary router, a transformer and a
batching predictor (all real servers in this process) is one trace with the expected parents and attributes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from serving.observability import tracing
from serving.observability.hook import observe_router
from serving.observability.options import ObservabilityOptions
from serving.router.app import Router
from serving.router.table import Arm, RouteTable, ServiceRoute
from serving.server import ServerConfig, create_app
from serving.transformers.base import TransformerConfig
from serving.transformers.server import create_app as create_transformer
from tests.observability_support import served, until
from tests.support import train_iris_sklearn

pytestmark = pytest.mark.asyncio
V1 = b'{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    tracing.setup("serving-test", exporter=memory)
    try:
        yield memory
    finally:
        tracing.use(None)


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("trace") / "iris"
    train_iris_sklearn(model_dir)
    return model_dir


def options(component: str, revision: str = "iris-canary1") -> ObservabilityOptions:
    return ObservabilityOptions(otel=True, isvc="iris", revision=revision, component=component)


async def test_one_request_is_one_trace_across_router_transformer_predictor(
    iris: Path, exporter: InMemorySpanExporter
) -> None:
    model = create_app(
        ServerConfig(
            model_dir=str(iris),
            name="iris",
            model={"max_batch_size": 8, "max_latency_s": 0.001},
            observability=options("predictor").to_dict(),
        )
    )
    async with served(model, "/v2/health/ready") as predictor_url:
        transformer = create_transformer(
            "iris",
            "identity",
            TransformerConfig(predictor_url, "iris", protocol="v1"),
            observability=options("transformer"),
        )
        async with served(transformer, "/v2/health/ready") as transformer_url:
            router = Router()
            route = ServiceRoute(
                "iris", "default", (Arm("iris-canary1", 100, "canary", "latest", (transformer_url,)),)
            )
            router.set_table(RouteTable({("default", "iris"): route}))
            async with served(observe_router(router, ObservabilityOptions(otel=True))) as front:
                exporter.clear()  # readiness probes are not part of the request
                async with httpx.AsyncClient(base_url=front) as client:
                    answer = await client.post("/v1/models/iris:predict", content=V1)
                await until(lambda: any(label(s) == "router" for s in exporter.get_finished_spans()))
    assert answer.status_code == 200
    finished = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in finished}) == 1, [s.name for s in finished]
    by_id = {s.context.span_id: s for s in finished}

    def parent(span):  # noqa: ANN001, ANN202
        return label(by_id[span.parent.span_id]) if span.parent is not None else None

    pairs = sorted((label(s), parent(s)) for s in finished)
    assert pairs == sorted(
        [
            ("router", None),
            ("transformer", "router"),
            ("decode", "transformer"),
            ("predict", "transformer"),
            ("encode", "transformer"),
            ("transformer.preprocess", "predict"),
            ("POST", "predict"),
            ("transformer.postprocess", "predict"),
            ("predictor", "POST"),
            ("decode", "predictor"),
            ("predict", "predictor"),
            ("encode", "predictor"),
            ("batch.queue_wait", "predict"),
        ]
    ), pairs
    spans = {(label(s), parent(s)): s for s in finished}
    router_span = spans["router", None]
    assert router_span.attributes["serving.isvc"] == "iris"
    assert router_span.attributes["serving.revision"] == "iris-canary1"
    assert router_span.attributes["serving.arm"] == "canary"
    assert router_span.attributes["serving.request_id"] == answer.headers["x-request-id"]
    assert spans["predictor", "POST"].attributes["serving.request_id"] == answer.headers["x-request-id"]
    assert spans["predictor", "POST"].attributes["serving.revision"] == "iris-canary1"
    assert spans["predict", "predictor"].attributes["serving.model"] == "iris"
    assert spans["batch.queue_wait", "predict"].attributes["serving.batch_size"] == 2
    # OpenTelemetry's HTTP conventions: server spans `{method} {http.route}` with the request's attributes,
    # the transformer's call to its predictor a CLIENT span (service graphs pair it with the predictor's SERVER)
    from opentelemetry.trace import SpanKind

    for component in ("router", "transformer"):
        server = next(s for s in finished if label(s) == component)
        assert server.kind is SpanKind.SERVER and server.name == "POST /v1/models/{name}:predict", server.name
        assert server.attributes["http.request.method"] == "POST"
        assert server.attributes["url.path"] == "/v1/models/iris:predict"
        assert server.attributes["http.route"] == "/v1/models/{name}:predict"
    call = spans["POST", "predict"]
    assert call.kind is SpanKind.CLIENT and call.attributes["http.request.method"] == "POST"
    # OpenTelemetry's HTTP client span: the server's address and port, the full URL, the answer's status
    assert (
        call.attributes["http.response.status_code"] == 200
        and call.attributes["server.address"] == "127.0.0.1"
    )
    assert isinstance(call.attributes["server.port"], int) and call.attributes["server.port"] > 0
    assert call.attributes["url.full"].endswith("/v1/models/iris:predict"), call.attributes["url.full"]


def label(span):  # noqa: ANN001, ANN201
    """A server span by the process it belongs to (all are named `POST {route}`), others by name."""
    from opentelemetry.trace import SpanKind

    return span.attributes.get("serving.component") if span.kind is SpanKind.SERVER else span.name


async def test_tracing_off_sends_the_request_id_but_no_traceparent_to_the_predictor() -> None:
    assert not tracing.enabled()
    seen: list[list] = []

    async def predictor(scope, receive, send):  # noqa: ANN001, ANN202 - a stand-in that records what it is sent
        if scope["type"] != "http":
            return
        if scope["method"] == "POST":  # not the transformer's readiness probes
            seen.append(scope["headers"])
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"predictions": [1]}'})

    async with served(predictor) as predictor_url:
        transformer = create_transformer(
            "iris", "identity", TransformerConfig(predictor_url, "iris", protocol="v1")
        )
        async with served(transformer, "/v2/health/ready") as url, httpx.AsyncClient(base_url=url) as client:
            answer = await client.post(
                "/v1/models/iris:predict", content=V1, headers={"x-request-id": "trace-off-1"}
            )
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "trace-off-1"
    (headers,) = seen
    assert (b"x-request-id", b"trace-off-1") in headers
    assert not any(k == b"traceparent" for k, _ in headers) and not tracing.enabled()


async def test_access_lines_carry_the_trace_and_a_5xx_span_is_an_error(
    exporter: InMemorySpanExporter,
    caplog,  # noqa: ANN001
) -> None:
    """The access line is written after the span ends, with the trace id taken while it was current; the span's
    status follows OpenTelemetry's HTTP server convention (5xx: Error, with error.type; 4xx: unset)."""
    import logging

    from opentelemetry.trace import StatusCode

    from serving.observability.access_log import AccessLog
    from serving.observability.asgi import Observed
    from serving.observability.cloudevent import Source

    async def answers(scope, receive, send) -> None:  # noqa: ANN001 - status from the path's model name
        status = {"ok": 200, "missing": 404, "down": 503}[scope["path"].split("/")[3]]
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def call(model: str) -> None:
        scope = {"type": "http", "method": "POST", "path": f"/v2/models/{model}/infer", "headers": []}
        scope["server"] = None

        async def receive() -> dict:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict) -> None:
            return None

        await Observed(answers, Source(isvc=model, component="predictor"), AccessLog(1.0))(
            scope, receive, send
        )

    caplog.set_level(logging.INFO, logger="serving.access")
    for model in ("ok", "missing", "down"):
        await call(model)
    spans = {s.attributes["serving.model"]: s for s in exporter.get_finished_spans()}
    lines = {r.fields["isvc"]: r.fields for r in caplog.records if r.name == "serving.access"}
    for model in ("ok", "missing", "down"):
        assert lines[model]["trace_id"] == format(spans[model].context.trace_id, "032x"), model
    assert spans["down"].status.status_code == StatusCode.ERROR
    assert spans["down"].attributes["error.type"] == "503"
    assert spans["missing"].status.status_code == StatusCode.UNSET
    assert spans["ok"].status.status_code == StatusCode.UNSET
    assert [spans[m].attributes["http.response.status_code"] for m in ("ok", "missing", "down")] == [
        200,
        404,
        503,
    ]


async def test_a_clients_4xx_leaves_the_inner_spans_unset_a_models_failure_marks_them(
    iris: Path, exporter: InMemorySpanExporter
) -> None:
    """Jaeger and Tempo show a trace with any Error span as failed: bad JSON (400) made `decode` Error. Only the
    server's own failure is (audit /tmp/audit-obs3 L2); the exception is recorded either way."""
    from opentelemetry.trace import StatusCode

    model = create_app(
        ServerConfig(model_dir=str(iris), name="iris", observability=options("predictor").to_dict())
    )
    async with served(model, "/v2/health/ready") as url, httpx.AsyncClient() as client:
        bad = await client.post(f"{url}/v1/models/iris:predict", content=b'{"instances": [[1, 2')
        assert bad.status_code == 400
        await until(lambda: any(s.name == "decode" for s in exporter.get_finished_spans()))
    decode = next(s for s in exporter.get_finished_spans() if s.name == "decode")
    assert decode.status.status_code is StatusCode.UNSET
    assert [e.name for e in decode.events] == ["exception"]  # still recorded
