"""KServe V1 against a real server holding three models (a directory of model folders)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.inprocess import InProcessServer, serving_inprocess

VERSICOLOR, SETOSA = [6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def server(model_repo: Path) -> Iterator[InProcessServer]:
    with serving_inprocess(["serve", "--model-dir", str(model_repo)]) as server:
        yield server


def _predict(server: InProcessServer, model: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=30)


def test_list_and_status(server: InProcessServer) -> None:
    listed = httpx.get(server.url + "/v1/models")
    assert listed.status_code == 200
    assert sorted(listed.json()["models"]) == ["onnx-iris", "sklearn-iris", "xgboost-iris"]
    for name in listed.json()["models"]:
        status = httpx.get(f"{server.url}/v1/models/{name}")
        assert (status.status_code, status.json()) == (200, {"name": name, "ready": True})


@pytest.mark.parametrize("model", ["sklearn-iris", "xgboost-iris", "onnx-iris"])
def test_instances_predict_labels_for_each_runtime(server: InProcessServer, model: str) -> None:
    response = _predict(server, model, {"instances": [VERSICOLOR, SETOSA]})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    if model == "onnx-iris":  # two outputs: one object per row, keyed by output name
        assert [row["label"] for row in predictions] == [1, 0]
        assert all(abs(sum(row["probabilities"]) - 1) < 1e-5 for row in predictions)
    else:
        assert predictions == [1, 0]


def test_inputs_as_a_list_and_as_named_columns(server: InProcessServer) -> None:
    as_list = _predict(server, "sklearn-iris", {"inputs": [VERSICOLOR, SETOSA]})
    assert as_list.json() == {"predictions": [1, 0]}
    columns = {name: [VERSICOLOR[i], SETOSA[i]] for i, name in enumerate(["sl", "sw", "pl", "pw"])}
    as_columns = _predict(server, "sklearn-iris", {"inputs": columns})
    assert as_columns.status_code == 200, as_columns.text
    assert as_columns.json() == {"predictions": [1, 0]}


def test_predict_proba_through_v1_parameters(server: InProcessServer) -> None:
    response = _predict(
        server, "sklearn-iris", {"instances": [VERSICOLOR], "parameters": {"predict_proba": True}}
    )
    (row,) = response.json()["predictions"]
    assert len(row) == 3 and abs(sum(row) - 1) < 1e-9 and row.index(max(row)) == 1


def test_v1_and_v2_agree(server: InProcessServer) -> None:
    v2 = httpx.post(
        server.url + "/v2/models/xgboost-iris/infer",
        json={
            "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": VERSICOLOR + SETOSA}]
        },
    )
    v1 = _predict(server, "xgboost-iris", {"instances": [VERSICOLOR, SETOSA]})
    assert v2.json()["outputs"][0]["data"] == v1.json()["predictions"] == [1, 0]
