"""The inference fast lane (outside Starlette) and the Starlette app answer every path as one server: POSTs
matching the inference routes go direct (versioned too), everything else (odd names, wrong method) to the app."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.inprocess import InProcessServer, serving_inprocess
from tests.support import train_iris_sklearn

ROW = [6.8, 2.8, 4.8, 1.4]
V2_BODY = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    model = tmp_path_factory.mktemp("front") / "iris"
    train_iris_sklearn(model)
    with serving_inprocess(["serve", "--model-dir", str(model)]) as process:
        yield process


def test_direct_and_routed_paths_answer_alike(server: InProcessServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.post("/v1/models/iris:predict", json={"instances": [ROW]}).json() == {"predictions": [1]}
        direct = c.post("/v2/models/iris/infer", json=V2_BODY).json()
        versioned = c.post("/v2/models/iris/versions/1/infer", json=V2_BODY).json()
        assert direct["outputs"] == versioned["outputs"] and direct["outputs"][0]["data"] == [1]
        for path, status in (
            ("/v2/models//infer", 404),
            ("/v2/models/a/b/infer", 404),
            ("/v2/models/nope/infer", 404),
        ):
            r = c.post(path, json=V2_BODY)
            assert r.status_code == status and "error" in r.json(), (path, r.text)
        r = c.get("/v2/models/iris/infer")
        assert r.status_code == 405 and "GET" in r.json()["error"]
        r = c.post("/v1/models/iris:predict", content=b'{"instances": [[1, 2')
        assert r.status_code == 400 and "JSON" in r.json()["error"]


def test_not_ready_keeps_retry_after_on_the_direct_path(server: InProcessServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.post("/v2/repository/models/iris/unload").status_code == 200
        try:
            r = c.post("/v2/models/iris/infer", json=V2_BODY)
            assert r.status_code == 503 and r.headers["retry-after"] and "not ready" in r.json()["error"]
        finally:
            assert c.post("/v2/repository/models/iris/load").status_code == 200
        assert c.post("/v2/models/iris/infer", json=V2_BODY).status_code == 200
