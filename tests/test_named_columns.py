"""Models trained on named columns (a DataFrame's: scikit-learn's `feature_names_in_`, an XGBoost Booster's
`feature_names`) take several inputs by name, in their own order whatever the request's; MLServer's output
names (`predict`, `predict_proba`) are answered under those names; a `predict_proba` that is not a boolean is
a 400. Real servers (in-process uvicorn), real models trained here.

pandas is not a dependency, so the DataFrame's names are set on the fitted models as fitting on a DataFrame
sets them (sklearn: `feature_names_in_`; XGBoost: the Booster's `feature_names`, saved in its JSON; served without the wrapper)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import joblib
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from tests.inprocess import InProcessServer, serving_inprocess

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = [6.8, 2.8, 4.8, 1.4]  # versicolor (1); reversed, it is another class for both models


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    repo = tmp_path_factory.mktemp("named")
    x, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(x, y)
    forest.feature_names_in_ = np.array(COLUMNS, dtype=object)
    (repo / "forest").mkdir()
    joblib.dump(forest, repo / "forest" / "model.joblib")
    boosted = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(x, y)
    boosted.get_booster().feature_names = COLUMNS
    (repo / "boosted").mkdir()
    boosted.save_model(repo / "boosted" / "model.json")
    with serving_inprocess(["serve", "--model-dir", str(repo)]) as served:
        yield served


def _columns(order: list[str]) -> list[dict]:
    by_name = dict(zip(COLUMNS, ROW, strict=True))
    return [{"name": n, "shape": [1], "datatype": "FP64", "data": [by_name[n]]} for n in order]


def _infer(server: InProcessServer, model: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)


@pytest.mark.parametrize("model", ["forest", "boosted"])
def test_columns_are_matched_by_name_in_any_order(server: InProcessServer, model: str) -> None:
    matrix = _infer(
        server, model, {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
    )
    assert matrix.status_code == 200, matrix.text
    expected = matrix.json()["outputs"][0]["data"]
    reversed_order = _infer(server, model, {"inputs": _columns(COLUMNS[::-1])})
    assert reversed_order.status_code == 200, reversed_order.text
    assert reversed_order.json()["outputs"][0]["data"] == expected
    # the same through V1's named columns, keys in another order
    v1 = httpx.post(
        f"{server.url}/v1/models/{model}:predict",
        json={"inputs": {n: [v] for n, v in reversed(list(zip(COLUMNS, ROW, strict=True)))}},
    )
    assert v1.status_code == 200, v1.text
    assert np.ravel(v1.json()["predictions"]).tolist() == np.ravel(expected).tolist()


@pytest.mark.parametrize("model", ["forest", "boosted"])
def test_columns_the_model_was_not_trained_on_are_a_400_naming_them(
    server: InProcessServer, model: str
) -> None:
    body = {"inputs": [{**c, "name": n} for c, n in zip(_columns(COLUMNS), "abcd", strict=True)]}
    answer = _infer(server, model, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert "sepal_length, sepal_width, petal_length, petal_width" in error and "unknown 'a'" in error
    missing = _infer(server, model, {"inputs": _columns(COLUMNS[:3])})
    assert missing.status_code == 400 and "missing 'petal_width'" in missing.json()["error"]
    assert _infer(server, model, {"inputs": _columns(COLUMNS)}).status_code == 200  # still serving


@pytest.mark.parametrize("model", ["forest", "boosted"])
def test_mlserver_output_names_are_answered_under_those_names(server: InProcessServer, model: str) -> None:
    one = [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]
    body = {"inputs": one, "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}
    answer = _infer(server, model, body)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["predict"]["data"] == [1]
    assert outputs["predict_proba"]["shape"] == [1, 3]
    assert np.argmax(outputs["predict_proba"]["data"]) == 1
    unknown = _infer(server, model, {"inputs": one, "outputs": [{"name": "scores"}]})
    assert unknown.status_code == 400
    assert "output-0, probabilities (or predict, predict_proba)" in unknown.json()["error"]


@pytest.mark.parametrize("flag", ["true", 1, [True]])
def test_a_predict_proba_that_is_not_a_boolean_is_a_400(server: InProcessServer, flag: object) -> None:
    one = [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]
    for model in ("forest", "boosted"):
        answer = _infer(server, model, {"inputs": one, "parameters": {"predict_proba": flag}})
        assert answer.status_code == 400, answer.text
        assert "parameter 'predict_proba' must be true or false" in answer.json()["error"]
    both = _infer(server, "forest", {"inputs": one, "parameters": {"predict_proba": True}})
    assert both.status_code == 200 and both.json()["outputs"][0]["name"] == "probabilities"
