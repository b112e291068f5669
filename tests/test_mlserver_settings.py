"""A model repository made for MLServer serves as it is: `model-settings.json` gives the name, the version
(`/versions/V/`), the artifact (`parameters.uri`) and the runtime (`implementation`); MLServer's server
`settings.json` and the settings files are never taken for XGBoost models; an implementation not served here
leaves that model alone not ready, saying so. Real servers (in-process), models trained here."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import pytest
import xgboost as xgb
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from loadtests.servers import wait_until
from tests.inprocess import InProcessServer, serving_inprocess

ROW = [6.8, 2.8, 4.8, 1.4]


def _settings(folder: Path, **doc: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model-settings.json").write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mlserver")
    (root / "settings.json").write_text(json.dumps({"debug": False, "http_port": 8080}))
    x, y = load_iris(return_X_y=True)
    _settings(
        root / "iris-sk",
        name="iris-classifier",
        implementation="mlserver_sklearn.SKLearnModel",
        parameters={"uri": "./iris.joblib", "version": "v0.1.0"},
    )
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), root / "iris-sk" / "iris.joblib")
    _settings(
        root / "iris-xgb",
        name="iris-xgb",
        implementation="mlserver_xgboost.XGBoostModel",
        parameters={"uri": "./model.bst", "version": "v1"},
    )
    xgb.XGBClassifier(n_estimators=4, max_depth=2).fit(x, y).save_model(root / "iris-xgb" / "model.bst")
    _settings(root / "gbm", name="gbm", implementation="mlserver_lightgbm.LightGBMModel")
    return root


@pytest.fixture(scope="module")
def served(repo: Path) -> Iterator[InProcessServer]:
    # the server is not ready (gbm cannot load): wait for a model that can
    with serving_inprocess(
        ["serve", "--model-dir", str(repo)], ready_path="/v2/models/iris-xgb/versions/v1/ready"
    ) as server:
        url = f"{server.url}/v2/models/iris-classifier/ready"
        wait_until(lambda: httpx.get(url).status_code == 200, what="iris-classifier ready")
        yield server


def _infer(server: InProcessServer, path: str) -> httpx.Response:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
    return httpx.post(f"{server.url}{path}", json=body, timeout=30)


def test_models_serve_under_their_settings_name_version_and_uri(served: InProcessServer) -> None:
    index = {m["name"]: m for m in httpx.post(f"{served.url}/v2/repository/index").json()}
    assert set(index) == {"iris-classifier", "iris-xgb", "gbm"}  # settings.json is no model
    assert index["iris-classifier"]["version"] == "v0.1.0" and index["iris-classifier"]["state"] == "READY"
    assert index["iris-xgb"]["state"] == "READY"
    answer = _infer(served, "/v2/models/iris-classifier/versions/v0.1.0/infer")
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [1]
    assert answer.json()["model_version"] == "v0.1.0"
    assert httpx.get(f"{served.url}/v2/models/iris-xgb").json()["platform"] == "xgboost"
    assert _infer(served, "/v2/models/iris-xgb/versions/v1/infer").json()["outputs"][0]["data"] == [1]


def test_an_implementation_not_served_here_is_that_models_reason(served: InProcessServer) -> None:
    ready = httpx.get(f"{served.url}/v2/models/gbm/ready")
    assert ready.status_code == 503
    assert "implementation 'mlserver_lightgbm.LightGBMModel' is MLServer's" in ready.json()["reason"]
    assert _infer(served, "/v2/models/iris-xgb/infer").status_code == 200  # the others serve


def test_a_name_given_on_the_command_line_wins(repo: Path) -> None:
    with serving_inprocess(["serve", "--model-dir", str(repo / "iris-sk"), "--name", "iris"]) as server:
        assert _infer(server, "/v2/models/iris/versions/v0.1.0/infer").status_code == 200
    with serving_inprocess(["serve", "--model-dir", str(repo / "iris-sk")]) as server:
        assert _infer(server, "/v2/models/iris-classifier/infer").status_code == 200


def _batches(server: InProcessServer, model: str) -> tuple[float, float]:
    """(batches formed, rows in them) for `model`, from the server's serving_batch_size histogram."""
    text = httpx.get(f"{server.url}/metrics").text
    found = {"count": 0.0, "sum": 0.0}
    for line in text.splitlines():
        for part in found:
            if line.startswith(f"serving_batch_size_{part}{{") and f'model="{model}"' in line:
                found[part] += float(line.rsplit(" ", 1)[1])
    return found["count"], found["sum"]


def _concurrent_infers(server: InProcessServer, path: str, n: int) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}

    async def send() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(*(client.post(f"{server.url}{path}", json=body) for _ in range(n)))
        return [a.status_code for a in answers]

    assert asyncio.run(send()) == [200] * n


@pytest.mark.parametrize("where", ["file", "env"])
def test_mlservers_adaptive_batching_settings_batch(tmp_path: Path, where: str) -> None:
    """`max_batch_size` / `max_batch_time` (seconds) in model-settings.json, or MLServer's
    MLSERVER_MODEL_MAX_BATCH_SIZE / _TIME env (KServe's kserve-mlserver users set it): the model's requests are
    batched (rows > batches in serving_batch_size), not accepted and ignored."""
    folder = tmp_path / "iris"
    x, y = load_iris(return_X_y=True)
    doc: dict[str, object] = {"name": "iris", "implementation": "mlserver_sklearn.SKLearnModel"}
    env = {}
    if where == "file":
        doc |= {"max_batch_size": 16, "max_batch_time": 0.2}
    else:
        env = {"MLSERVER_MODEL_MAX_BATCH_SIZE": "16", "MLSERVER_MODEL_MAX_BATCH_TIME": "0.2"}
    _settings(folder, **doc)
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), folder / "model.joblib")
    with serving_inprocess(["serve", "--model-dir", str(folder)], env=env) as server:
        _concurrent_infers(server, "/v2/models/iris/infer", 12)
        batches, rows = _batches(server, "iris")
        assert rows == 12 and batches < 12, (batches, rows)


def test_a_batching_setting_of_the_wrong_type_is_that_models_reason(tmp_path: Path) -> None:
    folder = tmp_path / "iris"
    _settings(folder, name="iris", implementation="mlserver_sklearn.SKLearnModel", max_batch_size="lots")
    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), folder / "model.joblib")
    with serving_inprocess(["serve", "--model-dir", str(folder)], ready_status=503) as server:
        reason = httpx.get(f"{server.url}/v2/models/iris/ready").json()["reason"]
        assert "model-settings.json: max_batch_size must be a non-negative integer, not 'lots'" in reason


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        (
            {"MLSERVER_MODEL_MAX_BATCH_SIZE": "", "MLSERVER_MODEL_MAX_BATCH_TIME": ""},
            None,
        ),  # set empty: unset
        (
            {"MLSERVER_MODEL_MAX_BATCH_SIZE": "8", "MLSERVER_MODEL_MAX_BATCH_TIME": "inf"},
            "MLSERVER_MODEL_MAX_BATCH_TIME: max_batch_time must be a non-negative number of seconds, not 'inf'",
        ),
    ],
)
def test_mlservers_batching_env_empty_is_unset_and_a_non_finite_time_is_refused(
    tmp_path: Path, env: dict[str, str], reason: str | None
) -> None:
    folder = tmp_path / "iris"
    folder.mkdir()
    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), folder / "model.joblib")
    args = ["serve", "--model-dir", str(folder), "--name", "iris"]
    with serving_inprocess(args, env=env, ready_status=200 if reason is None else 503) as server:
        ready = httpx.get(f"{server.url}/v2/models/iris/ready")
        if reason is None:
            assert ready.status_code == 200
            _concurrent_infers(server, "/v2/models/iris/infer", 4)
            assert _batches(server, "iris") == (0.0, 0.0)  # batching stays off
        else:
            assert reason in ready.json()["reason"]


def test_declared_inputs_and_outputs_are_the_models_metadata(tmp_path: Path) -> None:
    """MLServer answers a model's metadata from model-settings.json's `inputs` / `outputs` (they were ignored:
    the runtime's own `input-0` was answered); one that is no tensor leaves the model not ready, saying why."""
    x, y = load_iris(return_X_y=True)
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    declared = [{"name": c, "datatype": "FP64", "shape": [-1]} for c in columns]
    _settings(
        tmp_path / "declared",
        name="declared",
        implementation="mlserver_sklearn.SKLearnModel",
        inputs=declared,
        outputs=[{"name": "predict", "datatype": "INT64", "shape": [-1]}],
        parameters={"uri": "./model.joblib", "content_type": "pd"},
    )
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), tmp_path / "declared" / "model.joblib")
    _settings(tmp_path / "typo", name="typo", inputs=[{"name": "a", "datatype": "FLOAT64", "shape": [-1]}])
    with serving_inprocess(
        ["serve", "--model-dir", str(tmp_path)], ready_path="/v2/models/declared/ready"
    ) as server:
        meta = httpx.get(f"{server.url}/v2/models/declared").json()
        assert meta["inputs"] == declared
        assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
        body = {
            "inputs": [
                {"name": c, "shape": [1], "datatype": "FP64", "data": [v]}
                for c, v in zip(columns, ROW, strict=True)
            ]
        }
        answer = httpx.post(f"{server.url}/v2/models/declared/infer", json=body)
        assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [1], answer.text
        typo = httpx.get(f"{server.url}/v2/models/typo/ready").json()
        assert "model-settings.json: inputs[0].datatype" in typo["reason"] and "FLOAT64" in typo["reason"]
