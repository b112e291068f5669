"""Every failure is a clear `{"error": ...}` with the right status, and the next good request succeeds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.inprocess import InProcessServer, serving_inprocess

MAX_BODY = 4096
GOOD_V2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [6.8, 2.8, 4.8, 1.4]}]}
GOOD_V1 = {"instances": [[6.8, 2.8, 4.8, 1.4]]}


@pytest.fixture(scope="module")
def iris(model_repo: Path) -> Iterator[InProcessServer]:
    args = ["serve", "--model-dir", str(model_repo / "sklearn-iris"), "--max-body-bytes", str(MAX_BODY)]
    with serving_inprocess(args) as server:
        yield server


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    folder = tmp_path_factory.mktemp("failing") / "boom"
    folder.mkdir()
    with serving_inprocess(
        ["serve", "--model-dir", str(folder), "--runtime", "tests.runtimes_for_tests:FailingRuntime"]
    ) as server:
        yield server


def _assert_still_serving(server: InProcessServer) -> None:
    v2 = httpx.post(server.url + "/v2/models/sklearn-iris/infer", json=GOOD_V2)
    assert v2.status_code == 200 and v2.json()["outputs"][0]["data"] == [1], v2.text
    v1 = httpx.post(server.url + "/v1/models/sklearn-iris:predict", json=GOOD_V1)
    assert v1.status_code == 200 and v1.json() == {"predictions": [1]}, v1.text


def _input(**fields: object) -> dict:
    base = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [6.8, 2.8, 4.8, 1.4]}
    return {"inputs": [{k: v for k, v in {**base, **fields}.items() if v is not None}]}


V2_BAD_REQUESTS: list[tuple[str, bytes, str]] = [
    ("malformed JSON", b'{"inputs": [', "not valid JSON"),
    ("empty body", b"", "empty"),
    ("not an object", b"[1, 2]", "JSON object"),
    ("no inputs", b'{"id": "x"}', "'inputs'"),
    (
        "input without name",
        orjson.dumps({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}),
        "name",
    ),
    ("input without datatype", orjson.dumps(_input(datatype=None)), "'datatype'"),
    ("input without shape", orjson.dumps(_input(shape=None)), "'shape'"),
    ("input without data", orjson.dumps(_input(data=None)), "no 'data'"),
    ("unknown datatype", orjson.dumps(_input(datatype="FP128")), "unknown datatype 'FP128'"),
    ("shape too big for data", orjson.dumps(_input(shape=[2, 4])), "needs 8 elements"),
    ("shape too small for data", orjson.dumps(_input(shape=[1, 3])), "needs 3 elements"),
    ("billions of elements", orjson.dumps(_input(shape=[100_000, 100_000])), "10000000000 elements"),
    ("negative dimension", orjson.dumps(_input(shape=[-1, 4])), "negative"),
    (
        "non-numeric data",
        orjson.dumps(_input(data=["a", "b", "c", "d"])),
        "FP64 'data' must hold only numbers",
    ),
    ("null in data", orjson.dumps(_input(data=[1.0, None, 2.0, 3.0])), "must hold only numbers"),
    (
        "strings for INT32",
        orjson.dumps(_input(datatype="INT32", data=["1x", 2, 3, 4])),
        "INT32 'data' must hold only integers",
    ),
    ("ragged data", orjson.dumps(_input(data=[[1, 2], [3]])), "input-0"),
    ("wrong feature count", orjson.dumps(_input(shape=[1, 3], data=[1, 2, 3])), "sklearn-iris"),
    ("unknown output", orjson.dumps({**_input(), "outputs": [{"name": "nope"}]}), "'nope'"),
    ("id not a string", orjson.dumps({**_input(), "id": 5}), "'id'"),
]


@pytest.mark.parametrize(("case", "body", "needle"), V2_BAD_REQUESTS, ids=[c[0] for c in V2_BAD_REQUESTS])
def test_v2_bad_requests_are_400_naming_the_problem(
    iris: InProcessServer, case: str, body: bytes, needle: str
) -> None:
    response = httpx.post(iris.url + "/v2/models/sklearn-iris/infer", content=body)
    assert response.status_code == 400, (case, response.text)
    assert response.headers["content-type"] == "application/json"
    assert needle in response.json()["error"], (case, response.json())
    _assert_still_serving(iris)


V1_BAD_REQUESTS: list[tuple[str, bytes, str]] = [
    ("malformed JSON", b"{nope", "not valid JSON"),
    ("neither instances nor inputs", b'{"rows": [[1, 2, 3, 4]]}', "'instances' or 'inputs'"),
    ("instances not a list", b'{"instances": 5}', "'instances' must be a list"),
    ("ragged instances", b'{"instances": [[1, 2, 3, 4], [1]]}', "rectangular"),
    ("strings to a numeric model", b'{"instances": [["a", "b", "c", "d"]]}', "sklearn-iris"),
]


@pytest.mark.parametrize(("case", "body", "needle"), V1_BAD_REQUESTS, ids=[c[0] for c in V1_BAD_REQUESTS])
def test_v1_bad_requests_are_400(iris: InProcessServer, case: str, body: bytes, needle: str) -> None:
    response = httpx.post(iris.url + "/v1/models/sklearn-iris:predict", content=body)
    assert response.status_code == 400, (case, response.text)
    assert needle in response.json()["error"], (case, response.json())
    _assert_still_serving(iris)


def test_unknown_model_and_route_are_404(iris: InProcessServer) -> None:
    for response in (
        httpx.post(iris.url + "/v2/models/nope/infer", json=GOOD_V2),
        httpx.post(iris.url + "/v1/models/nope:predict", json=GOOD_V1),
        httpx.get(iris.url + "/v1/models/nope"),
    ):
        assert response.status_code == 404 and "'nope'" in response.json()["error"]
    route = httpx.get(iris.url + "/v3/whatever")
    assert route.status_code == 404 and "no route" in route.json()["error"]
    _assert_still_serving(iris)


def test_body_over_the_limit_is_413(iris: InProcessServer) -> None:
    big = orjson.dumps({"instances": [[1.0, 2.0, 3.0, 4.0]] * 400})
    assert len(big) > MAX_BODY
    declared = httpx.post(iris.url + "/v1/models/sklearn-iris:predict", content=big)
    assert declared.status_code == 413 and str(MAX_BODY) in declared.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    streamed = httpx.post(iris.url + "/v2/models/sklearn-iris/infer", content=chunks())
    assert streamed.status_code == 413 and str(MAX_BODY) in streamed.json()["error"]
    _assert_still_serving(iris)


def test_model_not_ready_is_503_with_retry_after(iris: InProcessServer) -> None:
    assert httpx.post(iris.url + "/v2/repository/models/sklearn-iris/unload").status_code == 200
    try:
        for response in (
            httpx.post(iris.url + "/v2/models/sklearn-iris/infer", json=GOOD_V2),
            httpx.post(iris.url + "/v1/models/sklearn-iris:predict", json=GOOD_V1),
        ):
            assert response.status_code == 503 and response.headers["retry-after"].isdigit()
            assert "not ready" in response.json()["error"]
        model_ready = httpx.get(iris.url + "/v2/models/sklearn-iris/ready")
        assert model_ready.status_code == 503 and model_ready.json()["ready"] is False
        # The server itself stays ready: an unload through the repository API is the operator's choice
        # (Triton and KServe alike), not an outage of the server.
        assert httpx.get(iris.url + "/v2/health/ready").json() == {"ready": True}
    finally:
        assert httpx.post(iris.url + "/v2/repository/models/sklearn-iris/load").status_code == 200
    _assert_still_serving(iris)


def test_a_model_that_raises_is_500_naming_the_model(failing: InProcessServer) -> None:
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}]}
    for _ in range(2):  # the server keeps answering after a failure
        response = httpx.post(failing.url + "/v2/models/boom/infer", json=body)
        assert response.status_code == 500
        assert "'boom'" in response.json()["error"] and "exploded on purpose" in response.json()["error"]
    v1 = httpx.post(failing.url + "/v1/models/boom:predict", json={"instances": [1]})
    assert v1.status_code == 500 and "'boom'" in v1.json()["error"]
    ok = httpx.post(failing.url + "/v2/models/boom/infer", json={**body, "parameters": {"fail": False}})
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == [1]
