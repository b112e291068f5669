"""Open Inference Protocol (V2) REST against real servers: health, metadata, versions, infer, all datatypes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.inprocess import InProcessServer, serving_inprocess

ECHO = "tests.runtimes_for_tests:EchoRuntime"
IRIS_ROW = [6.8, 2.8, 4.8, 1.4]  # versicolor (class 1)

# One value list per datatype, chosen at the edges of each type's range.
DATATYPE_VALUES: dict[str, list] = {
    "BOOL": [True, False, True, True],
    "UINT8": [0, 1, 200, 255],
    "UINT16": [0, 1, 40000, 65535],
    "UINT32": [0, 1, 3_000_000_000, 4_294_967_295],
    "UINT64": [0, 1, 2**40, 2**64 - 1],
    "INT8": [-128, -1, 0, 127],
    "INT16": [-32768, -1, 0, 32767],
    "INT32": [-(2**31), -1, 0, 2**31 - 1],
    "INT64": [-(2**63), -1, 0, 2**63 - 1],
    "FP16": [0.5, -1.25, 2048.0, 0.0],
    "FP32": [0.25, -3.5, 1e30, 0.0],
    "FP64": [0.1, -2.5e300, 3.141592653589793, 0.0],
    "BYTES": ["hello", "", "ünïcödé", "4"],
}


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    """An echo model served from a folder holding no artifact at all (custom runtimes need none)."""
    folder = tmp_path_factory.mktemp("echo") / "echo"
    folder.mkdir()
    with serving_inprocess(["serve", "--model-dir", str(folder), "--runtime", ECHO]) as server:
        yield server


@pytest.fixture(scope="module")
def iris(model_repo: Path) -> Iterator[InProcessServer]:
    with serving_inprocess(
        ["serve", "--model-dir", str(model_repo / "sklearn-iris"), "--model-version", "3"]
    ) as server:
        yield server


def _infer(server: InProcessServer, model: str, body: dict, path_suffix: str = "/infer") -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{model}{path_suffix}", content=orjson.dumps(body), timeout=30)


def test_server_metadata_lists_the_extensions(iris: InProcessServer) -> None:
    doc = httpx.get(iris.url + "/v2").json()
    assert doc["name"] == "serving" and doc["version"]
    assert {"binary_tensor_data", "classification", "model_repository"} <= set(doc["extensions"])


def test_health_endpoints_answer_json(iris: InProcessServer) -> None:
    live = httpx.get(iris.url + "/v2/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})
    ready = httpx.get(iris.url + "/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    assert ready.headers["content-type"] == "application/json"


def test_model_metadata_and_readiness_with_and_without_version(iris: InProcessServer) -> None:
    for prefix in ("/v2/models/sklearn-iris", "/v2/models/sklearn-iris/versions/3"):
        meta = httpx.get(iris.url + prefix)
        assert meta.status_code == 200, meta.text
        doc = meta.json()
        assert doc["name"] == "sklearn-iris" and doc["versions"] == ["3"] and doc["platform"] == "sklearn"
        assert doc["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
        assert [o["name"] for o in doc["outputs"]] == ["output-0", "probabilities"]
        ready = httpx.get(iris.url + prefix + "/ready")
        assert (ready.status_code, ready.json()["ready"]) == (200, True)


def test_infer_under_a_version_and_unknown_version_is_404(iris: InProcessServer) -> None:
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]}
    good = _infer(iris, "sklearn-iris/versions/3", body)
    assert good.status_code == 200, good.text
    assert good.json()["model_version"] == "3" and good.json()["outputs"][0]["data"] == [1]
    for path in ("/v2/models/sklearn-iris/versions/9", "/v2/models/sklearn-iris/versions/9/ready"):
        missing = httpx.get(iris.url + path)
        assert missing.status_code == 404 and "version '9'" in missing.json()["error"]
    missing = _infer(iris, "sklearn-iris/versions/9", body)
    assert missing.status_code == 404 and "version '9'" in missing.json()["error"]


def test_unknown_model_is_404_json(iris: InProcessServer) -> None:
    for response in (httpx.get(iris.url + "/v2/models/nope"), httpx.get(iris.url + "/v2/models/nope/ready")):
        assert response.status_code == 404 and "'nope'" in response.json()["error"]
    # tritonclient's get_inference_statistics (GET /v2/models/stats): not served, and said so
    stats = httpx.get(iris.url + "/v2/models/stats")
    assert stats.status_code == 404 and "statistics extension" in stats.json()["error"]


def test_id_echoed_outputs_selected_and_parameters_reach_the_runtime(iris: InProcessServer) -> None:
    body = {
        "id": "req-42",
        "inputs": [
            {"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": [IRIS_ROW, [5.1, 3.5, 1.4, 0.2]]}
        ],
        "parameters": {"predict_proba": True},
    }
    doc = _infer(iris, "sklearn-iris", body).json()
    assert doc["id"] == "req-42" and doc["model_name"] == "sklearn-iris"
    (out,) = doc["outputs"]
    assert out["name"] == "probabilities" and out["shape"] == [2, 3] and out["datatype"] == "FP64"
    assert abs(sum(out["data"][:3]) - 1) < 1e-6 and max(range(3), key=lambda i: out["data"][i]) == 1

    both = {**body, "outputs": [{"name": "output-0"}, {"name": "probabilities"}], "parameters": {}}
    names = [o["name"] for o in _infer(iris, "sklearn-iris", both).json()["outputs"]]
    assert names == ["output-0", "probabilities"]
    unknown = _infer(iris, "sklearn-iris", {**body, "outputs": [{"name": "nope"}]})
    assert unknown.status_code == 400 and "'nope'" in unknown.json()["error"]


@pytest.mark.parametrize("datatype", list(DATATYPE_VALUES))
def test_every_datatype_round_trips_in_json(echo: InProcessServer, datatype: str) -> None:
    values = DATATYPE_VALUES[datatype]
    nested = [values[:2], values[2:]]
    for data in (values, nested):  # flat and nested `data` mean the same tensor
        body = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": datatype, "data": data}]}
        response = _infer(echo, "echo", body)
        assert response.status_code == 200, response.text
        (out,) = response.json()["outputs"]
        assert (out["name"], out["datatype"], out["shape"]) == ("x", datatype, [2, 2])
        assert out["data"] == values  # the response is always flat, row-major


def test_echo_returns_parameters_and_selected_outputs(echo: InProcessServer) -> None:
    body = {
        "id": "abc",
        "inputs": [
            {"name": "a", "shape": [1], "datatype": "INT32", "data": [7]},
            {"name": "b", "shape": [1], "datatype": "FP32", "data": [1.5]},
        ],
        "parameters": {"temperature": 0.5, "tags": ["x", "y"]},
        "outputs": [{"name": "b"}, {"name": "parameters"}],
    }
    doc = _infer(echo, "echo", body).json()
    assert doc["id"] == "abc"
    assert [o["name"] for o in doc["outputs"]] == ["b", "parameters"]
    assert doc["outputs"][0]["data"] == [1.5]
    assert orjson.loads(doc["outputs"][1]["data"][0]) == {"temperature": 0.5, "tags": ["x", "y"]}
