"""Payload logging, request ids and access logs through real servers: a model server and a canary router
in this process, a real CloudEvents receiver (the SDK parses what we send) on loopback."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest

from loadtests.event_receiver import receiving
from serving.observability.hook import observe_router
from serving.observability.options import ObservabilityOptions
from serving.router.app import Router
from serving.router.table import Arm, RouteTable, ServiceRoute
from serving.server import ServerConfig, create_app
from tests.observability_support import served, until
from tests.support import train_iris_sklearn

pytestmark = pytest.mark.asyncio
ROW = [6.8, 2.8, 4.8, 1.4]
V1 = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("obs") / "iris"
    train_iris_sklearn(model_dir)
    return model_dir


def predictor(  # noqa: ANN201
    model_dir: Path,
    revision: str,
    logger_url: str | None,
    mode: str | None = None,
    metadata_headers: tuple[str, ...] = (),
    annotations: str = "",
):
    options = ObservabilityOptions(
        logger_url=logger_url,
        logger_mode=mode,
        logger_metadata_headers=metadata_headers,
        logger_annotations=annotations,
        isvc="iris",
        namespace="ml",
        revision=revision,
        component="predictor",
    )
    return create_app(ServerConfig(model_dir=str(model_dir), name="iris", observability=options.to_dict()))


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [r.fields for r in caplog.records if r.name == "serving.access"]


async def test_model_server_logs_every_request_and_response_once(
    iris: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="serving.access")
    with receiving() as (sink, receiver):
        async with (
            served(predictor(iris, "iris-r1", sink), "/v2/health/ready") as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            ok = await client.post(
                "/v1/models/iris:predict", content=V1, headers={"x-request-id": "client-1"}
            )
            fresh = await client.post(
                "/v2/models/iris/infer",
                json={"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]},
            )
            bad = await client.post(
                "/v1/models/iris:predict",
                content=b'{"instances": [[1, 2',
                headers={"x-request-id": "has space"},
            )
            await client.get("/v2/health/ready")  # not an inference: no id, no event, no access line
            await until(lambda: len(receiver.events) == 6, what="6 events")
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "client-1"
    assert fresh.status_code == 200 and len(fresh.headers["x-request-id"]) == 36  # a new uuid
    assert bad.status_code == 400 and bad.headers["x-request-id"] not in ("has space", "")
    ids = [r.headers["x-request-id"] for r in (ok, fresh, bad)]
    assert Counter((e["id"], e["type"].rsplit(".", 1)[-1]) for e in receiver.events) == Counter(
        {(i, kind): 1 for i in ids for kind in ("request", "response")}
    )
    events = {(e["id"], e["type"].rsplit(".", 1)[-1]): e for e in receiver.events}
    assert events["client-1", "request"].data == V1  # the bytes as received
    assert (
        events["client-1", "response"].data == ok.content
        and events["client-1", "response"]["statuscode"] == "200"
    )
    failed = events[ids[2], "response"]
    assert failed["statuscode"] == "400" and failed.data == bad.content and b"error" in failed.data
    for e in receiver.events:
        assert (e["inferenceservicename"], e["namespace"], e["component"], e["endpoint"], e["modelid"]) == (
            "iris",
            "ml",
            "predictor",
            "iris-r1",
            "iris",
        )
    lines = access_lines(caplog)
    assert [(f["request_id"], f["status"]) for f in lines] == [(ids[0], 200), (ids[1], 200), (ids[2], 400)]
    assert lines[0]["bytes_in"] == len(V1) and lines[0]["bytes_out"] == len(ok.content)
    assert lines[0]["revision"] == "iris-r1" and lines[0]["isvc"] == "iris" and lines[0]["latency_ms"] > 0


async def test_mode_request_sends_only_requests(iris: Path) -> None:
    with receiving() as (sink, receiver):
        async with (
            served(predictor(iris, "iris-r1", sink, "request"), "/v2/health/ready") as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            for _ in range(3):
                assert (await client.post("/v1/models/iris:predict", content=V1)).status_code == 200
            await until(lambda: len(receiver.events) == 3)
    assert {e["type"] for e in receiver.events} == {"org.kubeflow.serving.inference.request"}


async def test_metadata_headers_reach_every_event_as_kserve_writes_them(iris: Path) -> None:
    """KServe's `logger.metadataHeaders`: the listed request headers, matched in any case, as the JSON
    extension `metadata` ({name as listed: [values]}); headers not listed stay out."""
    with receiving() as (sink, receiver):
        app = predictor(iris, "iris-r1", sink, metadata_headers=("X-User-Id", "x-b3-traceid", "x-absent"))
        async with served(app, "/v2/health/ready") as url, httpx.AsyncClient(base_url=url) as client:
            answer = await client.post(
                "/v1/models/iris:predict",
                content=V1,
                headers=[("x-user-id", "alice"), ("X-B3-TraceId", "abc"), ("authorization", "secret")],
            )
            await until(lambda: len(receiver.events) == 2, what="2 events")
            bare = await client.post("/v1/models/iris:predict", content=V1)  # none of the listed headers
            await until(lambda: len(receiver.events) == 4, what="4 events")
    assert answer.status_code == bare.status_code == 200
    listed = [e for e in receiver.events if e["id"] == answer.headers["x-request-id"]]
    for e in listed:
        assert orjson.loads(e["metadata"]) == {"X-User-Id": ["alice"], "x-b3-traceid": ["abc"]}
        assert "annotations" not in e  # no logger.metadataAnnotations: no extension
    assert all("metadata" not in e for e in receiver.events if e["id"] == bare.headers["x-request-id"])


async def test_metadata_annotations_reach_every_event_as_kserves_agent_writes_them(iris: Path) -> None:
    """KServe's `logger.metadataAnnotations`: the named InferenceService annotations as the JSON extension
    `annotations` of every event (the flag `--logger-annotations` carries them, as serving up sets it)."""
    with receiving() as (sink, receiver):
        app = predictor(iris, "iris-r1", sink, annotations='{"team":"ml"}')
        async with served(app, "/v2/health/ready") as url, httpx.AsyncClient(base_url=url) as client:
            assert (await client.post("/v1/models/iris:predict", content=V1)).status_code == 200
            await until(lambda: len(receiver.events) == 2, what="2 events")
    assert [orjson.loads(e["annotations"]) for e in receiver.events] == [{"team": "ml"}] * 2


async def test_canary_events_name_the_revision_that_answered(
    iris: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="serving.access")
    with receiving() as (sink, receiver):
        async with (
            served(predictor(iris, "iris-stable1", sink), "/v2/health/ready") as stable,
            served(predictor(iris, "iris-canary1", sink), "/v2/health/ready") as canary,
        ):
            router = Router()
            router.set_table(
                RouteTable(
                    {
                        ("ml", "iris"): ServiceRoute(
                            "iris",
                            "ml",
                            (
                                Arm("iris-stable1", 50, "stable", "prev", (stable,)),
                                Arm("iris-canary1", 50, "canary", "latest", (canary,)),
                            ),
                        )
                    }
                )
            )
            # Unknown hosts resolve in namespace "default": give the route that name too for this test.
            router.set_table(
                RouteTable(
                    {**router.table.services, ("default", "iris"): router.table.services["ml", "iris"]}
                )
            )
            async with (
                served(observe_router(router, ObservabilityOptions()), None) as front,
                httpx.AsyncClient(base_url=front) as client,
            ):
                answers = []
                for i in range(12):
                    pin = {"x-serving-tag": "latest" if i % 2 else "prev"}
                    answers.append(await client.post("/v1/models/iris:predict", content=V1, headers=pin))
                await until(lambda: len(receiver.events) == 24, what="24 events")
    revision_of = {r.headers["x-request-id"]: r.headers["x-serving-revision"] for r in answers}
    assert all(r.status_code == 200 for r in answers) and set(revision_of.values()) == {
        "iris-stable1",
        "iris-canary1",
    }
    assert len(revision_of) == 12  # one id per request, echoed once through router and predictor
    for e in receiver.events:
        assert (
            e["endpoint"] == revision_of[e["id"]]
        )  # the router's id reached the predictor, which names itself
    router_lines = [f for f in access_lines(caplog) if f["component"] == "router"]
    assert len(router_lines) == 12
    for f in router_lines:
        assert f["revision"] == revision_of[f["request_id"]]
        assert f["arm"] == ("canary" if f["revision"] == "iris-canary1" else "stable")
        assert f["isvc"] == "iris"


async def test_router_with_its_own_sink_logs_as_component_router(iris: Path) -> None:
    """`serving router --logger-url` (in-cluster, custom predictor images): the router logs, naming the arm's
    revision in ce-endpoint and the InferenceService it resolved."""
    with receiving() as (sink, receiver):
        async with served(predictor(iris, "iris-stable1", None), "/v2/health/ready") as stable:
            router = Router()
            arm = Arm("iris-stable1", 100, "stable", "prev", (stable,))
            router.set_table(RouteTable({("default", "iris"): ServiceRoute("iris", "default", (arm,))}))
            options = ObservabilityOptions(logger_url=sink)
            async with (
                served(observe_router(router, options)) as front,
                httpx.AsyncClient(base_url=front) as client,
            ):
                answer = await client.post("/v1/models/iris:predict", content=V1)
                await until(lambda: len(receiver.events) == 2, what="2 events")
    assert answer.status_code == 200
    for event in receiver.events:
        assert (event["component"], event["endpoint"], event["inferenceservicename"], event["namespace"]) == (
            "router",
            "iris-stable1",
            "iris",
            "default",
        )
        assert event["id"] == answer.headers["x-request-id"]


async def test_binary_extension_bodies_are_logged_as_sent_with_their_json_length(iris: Path) -> None:
    import numpy as np
    import orjson

    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 32},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    body = header + np.array([[6.8, 2.8, 4.8, 1.4]]).tobytes()
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }
    with receiving() as (sink, receiver):
        async with (
            served(predictor(iris, "iris-r1", sink), "/v2/health/ready") as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            answer = await client.post("/v2/models/iris/infer", content=body, headers=headers)
            await until(lambda: len(receiver.events) == 2)
    assert answer.status_code == 200
    request, response = receiver.by_type("request")[0], receiver.by_type("response")[0]
    assert request.data == body and request["datacontenttype"] == "application/octet-stream"
    assert request["inferenceheaderlength"] == str(len(header))
    assert response.data == answer.content
    assert response["inferenceheaderlength"] == answer.headers["inference-header-content-length"]


async def test_a_compressed_request_is_logged_as_the_body_it_stands_for(iris: Path) -> None:
    """A gzip or deflate request body (tritonclient's `request_compression_algorithm`): the receiver gets the
    JSON it inflates to, at the model server and at a router that forwards it compressed; one that does not
    inflate (refused 400) is logged as it came, typed as opaque bytes rather than JSON."""
    import gzip
    import zlib

    with receiving() as (sink, receiver):
        async with served(predictor(iris, "iris-stable1", sink), "/v2/health/ready") as stable:
            router = Router()
            arm = Arm("iris-stable1", 100, "stable", "prev", (stable,))
            router.set_table(RouteTable({("default", "iris"): ServiceRoute("iris", "default", (arm,))}))
            async with (
                served(observe_router(router, ObservabilityOptions(logger_url=sink))) as front,
                httpx.AsyncClient() as client,
            ):
                path = "/v1/models/iris:predict"
                direct = await client.post(
                    stable + path, content=gzip.compress(V1), headers={"content-encoding": "gzip"}
                )
                routed = await client.post(
                    front + path, content=zlib.compress(V1), headers={"content-encoding": "deflate"}
                )
                broken = await client.post(
                    stable + path, content=b"not gzip at all", headers={"content-encoding": "gzip"}
                )
                # direct: 2, routed: 2 at the router and 2 at the predictor, broken: 2
                await until(lambda: len(receiver.events) == 8, what="8 events")
    assert (direct.status_code, routed.status_code, broken.status_code) == (200, 200, 400)
    requests = {(e["id"], e["component"]): e for e in receiver.by_type("request")}
    for answer in (direct, routed):
        event = requests[answer.headers["x-request-id"], "predictor"]
        assert event.data == V1 and event["datacontenttype"] == "application/json"
    at_router = requests[routed.headers["x-request-id"], "router"]
    assert at_router.data == V1 and at_router["datacontenttype"] == "application/json"
    opaque = requests[broken.headers["x-request-id"], "predictor"]
    assert opaque.data == b"not gzip at all" and opaque["datacontenttype"] == "application/octet-stream"


async def test_the_request_event_goes_as_the_request_comes_not_after_its_answer() -> None:
    """As KServe's agent logs it: a request still being answered is already logged, stamped with its arrival
    (a replica that dies mid-call would otherwise lose it). The response event follows with its own time."""
    import asyncio
    from datetime import datetime

    from serving.observability.asgi import Observed
    from serving.observability.cloudevent import Source
    from serving.observability.payload_logger import PayloadLogger
    from serving.observability.sinks import sink_for

    release = asyncio.Event()

    async def held(scope, receive, send) -> None:  # noqa: ANN001 - reads the body, answers when released
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body", False):
            pass
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"predictions":[1]}'})

    with receiving() as (sink, receiver):
        # a `serving serve` of its own: no InferenceService name given, the model's is used
        app = Observed(held, Source(component="predictor"), payloads=PayloadLogger(sink_for(sink), "all"))
        async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
            answer = asyncio.create_task(
                client.post("/v1/models/iris:predict", content=V1, headers={"x-request-id": "held-1"})
            )
            await until(lambda: len(receiver.events) == 1, what="the request event, before any answer")
            assert receiver.events[0]["type"] == "org.kubeflow.serving.inference.request"
            assert receiver.events[0].data == V1 and not answer.done()
            await asyncio.sleep(0.05)  # the answer comes measurably later than the request
            release.set()
            assert (await answer).status_code == 200
            await until(lambda: len(receiver.events) == 2, what="the response event")
    request, response = receiver.events
    assert response["type"] == "org.kubeflow.serving.inference.response" and response["id"] == "held-1"
    for event in (request, response):  # `source` names who sent it (KServe: the pod), not a constant
        assert event["inferenceservicename"] == "iris" and event["source"] == "iris-predictor"
    stamped = [datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in (request, response)]
    assert (stamped[1] - stamped[0]).total_seconds() >= 0.05, stamped
