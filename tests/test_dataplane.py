"""The data plane without HTTP: one request in, outcome counted once with its code, limits enforced where
they live (concurrency queued, its queue full 503, timeout 504, overload 503, model errors 500, unknown 404 under a fixed label)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from serving.dataplane import DataPlane
from serving.errors import (
    GatewayTimeout,
    ModelFailure,
    ModelNotFound,
    ModelNotReady,
    ServingError,
)
from serving.metrics import UNKNOWN_MODEL
from serving.protocol.codec import V1, V2
from serving.repository import ModelRepository
from serving.settings import Limits, ModelSettings

pytestmark = pytest.mark.asyncio
ECHO = "tests.runtimes_for_tests:EchoRuntime"
FAILING = "tests.runtimes_for_tests:FailingRuntime"
BODY = orjson.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": "INT32", "data": [7, -7]}]})


def _count(plane: DataPlane, **labels: str) -> float:
    text = plane.metrics.exposition().decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "serving_requests_total" and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def _plane(tmp_path: Path, limits: Limits, **models: str) -> DataPlane:
    settings = []
    for name, runtime in models.items():
        (tmp_path / name).mkdir()
        settings.append(ModelSettings(name=name, model_dir=tmp_path / name, runtime=runtime))
    repository = ModelRepository(settings)
    await repository.load_all()
    return DataPlane(repository, limits)


@pytest_asyncio.fixture
async def plane(tmp_path: Path) -> AsyncIterator[DataPlane]:
    plane = await _plane(tmp_path, Limits(), echo=ECHO, failing=FAILING)
    yield plane
    plane.close()


async def test_a_request_is_decoded_run_encoded_and_counted_once(plane: DataPlane) -> None:
    body, headers = await plane.infer("echo", None, BODY, {}, V2)
    assert orjson.loads(body)["outputs"][0]["data"] == [7, -7]
    assert headers["content-type"] == "application/json"
    body, _ = await plane.infer("echo", "1", b'{"instances": [[1, 2]]}', {}, V1)
    assert orjson.loads(body) == {"predictions": [[1, 2]]}
    assert _count(plane, model="echo", protocol="v2", code="200") == 1
    assert _count(plane, model="echo", protocol="v1", code="200") == 1


async def test_every_failure_is_its_error_and_counted_with_its_code(plane: DataPlane) -> None:
    cases: list[tuple[str, str | None, bytes, type[ServingError], str]] = [
        ("nope", None, BODY, ModelNotFound, "404"),
        ("echo", "9", BODY, ModelNotFound, "404"),
        ("echo", None, b"{not json", ServingError, "400"),
        ("failing", None, BODY, ModelFailure, "500"),
    ]
    for name, version, body, error, _ in cases:
        with pytest.raises(error):
            await plane.infer(name, version, body, {}, V2)
    assert _count(plane, model=UNKNOWN_MODEL, code="404") == 2  # no label value per unknown name or version
    assert _count(plane, model="echo", code="400") == 1
    assert _count(plane, model="failing", code="500") == 1


async def test_a_model_not_ready_is_503(plane: DataPlane) -> None:
    await plane.repository.unload("echo")
    with pytest.raises(ModelNotReady) as refused:
        await plane.infer("echo", None, BODY, {}, V2)
    assert refused.value.status_code == 503


async def _gated(plane: DataPlane, name: str, gate: threading.Event) -> None:
    runtime = plane.repository.get(name).runtime
    assert runtime is not None
    original = runtime.predict

    def wait_then_predict(*args: object) -> object:
        gate.wait(10)
        return original(*args)  # type: ignore[arg-type]

    runtime.predict = wait_then_predict  # type: ignore[method-assign]
    runtime.runs_inline = lambda *args: False  # type: ignore[method-assign]


async def test_over_the_concurrency_limit_requests_queue_in_order(tmp_path: Path) -> None:
    """KServe's containerConcurrency: a hard limit, the surplus buffered (Knative's queue-proxy), not refused."""
    plane = await _plane(tmp_path, Limits(max_concurrency=1), echo=ECHO)
    gate = threading.Event()
    await _gated(plane, "echo", gate)
    first = asyncio.create_task(plane.infer("echo", None, BODY, {}, V2))
    while not plane._slots.in_flight.get("echo"):
        await asyncio.sleep(0.001)
    queued = [asyncio.create_task(plane.infer("echo", None, BODY, {}, V2)) for _ in range(3)]
    for _ in range(5):  # let each reach its place in the queue
        await asyncio.sleep(0)
    assert not any(task.done() for task in queued) and plane._slots.in_flight["echo"] == 1
    gate.set()
    for task in [first, *queued]:
        assert orjson.loads((await task)[0])["outputs"][0]["data"] == [7, -7]
    assert plane._slots.in_flight["echo"] == 0
    assert _count(plane, model="echo", code="200") == 4
    plane.close()


async def test_the_concurrency_queue_is_bounded_and_waits_within_the_timeout(tmp_path: Path) -> None:
    from serving.concurrency import QUEUE_PER_SLOT

    plane = await _plane(tmp_path, Limits(max_concurrency=1, request_timeout_s=0.3), echo=ECHO)
    gate = threading.Event()
    await _gated(plane, "echo", gate)
    first = asyncio.create_task(plane.infer("echo", None, BODY, {}, V2))
    while not plane._slots.in_flight.get("echo"):
        await asyncio.sleep(0.001)
    queued = [asyncio.create_task(plane.infer("echo", None, BODY, {}, V2)) for _ in range(QUEUE_PER_SLOT)]
    await asyncio.sleep(0)
    with pytest.raises(ServingError, match="with 10 requests queued") as full:  # shed at once
        await plane.infer("echo", None, BODY, {}, V2)
    assert full.value.status_code == 503 and full.value.headers.get("Retry-After")
    outcomes = await asyncio.gather(first, *queued, return_exceptions=True)
    assert all(isinstance(o, GatewayTimeout) for o in outcomes), outcomes  # the gate never opened in time
    # those still queued at their deadline say so; one handed a slot just before it says the model did not answer
    assert all(str(o).endswith("within 0.3s") for o in outcomes), outcomes
    assert any("slots within 0.3s" in str(o) for o in outcomes), outcomes
    gate.set()
    assert plane._slots.in_flight["echo"] == 0  # every slot given back, none leaked by the timeouts
    body, _ = await plane.infer("echo", None, BODY, {}, V2)
    assert orjson.loads(body)["outputs"][0]["data"] == [7, -7]
    assert _count(plane, model="echo", code="503") == 1 and _count(plane, model="echo", code="504") == 11
    plane.close()


async def test_a_slow_model_is_504_at_the_request_timeout(tmp_path: Path) -> None:
    plane = await _plane(tmp_path, Limits(request_timeout_s=0.05), echo=ECHO)
    gate = threading.Event()
    await _gated(plane, "echo", gate)
    with pytest.raises(GatewayTimeout, match="within 0.05s"):
        await plane.infer("echo", None, BODY, {}, V2)
    gate.set()
    assert _count(plane, model="echo", code="504") == 1
    plane.close()


async def test_only_the_requested_outputs_leave_a_runtime_that_ignores_them(tmp_path: Path) -> None:
    plane = await _plane(tmp_path, Limits(), wide="tests.runtimes_for_tests:WideRuntime")
    try:

        def asking(*names: str) -> bytes:
            outputs = [{"name": n} for n in names]
            return orjson.dumps({**orjson.loads(BODY), "outputs": outputs})

        body, _ = await plane.infer("wide", None, BODY, {}, V2)  # no selection: everything it produced
        assert [o["name"] for o in orjson.loads(body)["outputs"]] == ["y", "z"]
        body, _ = await plane.infer("wide", None, asking("z"), {}, V2)
        assert [(o["name"], o["data"]) for o in orjson.loads(body)["outputs"]] == [("z", [14, -14])]
        body, _ = await plane.infer("wide", None, asking("z", "y"), {}, V2)
        assert [o["name"] for o in orjson.loads(body)["outputs"]] == ["z", "y"]
        with pytest.raises(ServingError, match="has no output 'nope'; it produced y, z") as unknown:
            await plane.infer("wide", None, asking("y", "nope"), {}, V2)
        assert unknown.value.status_code == 400
        assert _count(plane, model="wide", protocol="v2", code="400") == 1
    finally:
        plane.close()


async def test_a_call_that_races_an_unload_is_retryable_not_a_model_failure(plane: DataPlane) -> None:
    from serving.dataplane import call_runtime

    model = plane.repository.ready_model("echo", None)
    model.runtime = None  # what an unload does to a model a request already holds
    with pytest.raises(ModelNotReady, match="was unloaded; retry") as raced:
        call_runtime(model, {}, None, {})
    assert raced.value.status_code == 503


async def test_a_cold_model_sheds_the_blind_part_of_its_first_burst_once_its_first_answer_is_in(
    tmp_path: Path,
) -> None:
    """No service time known yet (just loaded, woken from zero): the first burst is admitted blind; once the
    first answer gives the estimate, those still queued past `--max-queue-wait` get the 503 + Retry-After that
    admission would have given, at once, instead of waiting until their timeouts."""
    plane = await _plane(tmp_path, Limits(max_queue_wait_s=0.5, request_timeout_s=30), echo=ECHO)
    threads = plane._admission.threads
    runtime = plane.repository.get("echo").runtime
    assert runtime is not None
    original = runtime.predict

    def slow(*args: object) -> object:
        import time

        time.sleep(0.2)  # so 0.5 s of queue is 2 calls per thread
        return original(*args)  # type: ignore[arg-type]

    runtime.predict = slow  # type: ignore[method-assign]
    runtime.runs_inline = lambda *args: False  # type: ignore[method-assign]
    burst = [asyncio.create_task(plane.infer("echo", None, BODY, {}, V2)) for _ in range(threads * 6)]
    outcomes = await asyncio.wait_for(asyncio.gather(*burst, return_exceptions=True), 10)
    refused = [o for o in outcomes if isinstance(o, ServingError)]
    answered = [o for o in outcomes if isinstance(o, tuple)]
    assert len(refused) + len(answered) == len(burst), outcomes
    # the first wave runs, and those its threads took next; 2 per thread may wait (0.5 s of queue at 0.2 s
    # each); the rest (at least one per thread, however the threads' pick-ups fell) are shed
    assert len(answered) >= threads * 3 and len(refused) >= threads, (len(answered), len(refused))
    assert all(r.status_code == 503 and r.headers.get("Retry-After") for r in refused)
    assert _count(plane, model="echo", code="503") == len(refused)
    plane.close()
