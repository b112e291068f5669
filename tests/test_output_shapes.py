"""Model metadata describes the tensors the model answers: a multi-output regressor (scikit-learn, XGBoost) and
a multi:softprob Booster answer [N, k], and their metadata and Triton config said [-1] / dims [] (clients that
preallocate or reshape by them broke). Real server in-process, models trained here."""

from __future__ import annotations

from pathlib import Path

import httpx
import joblib
import numpy as np
import xgboost as xgb
from sklearn.linear_model import LinearRegression

from tests.inprocess import serving_inprocess


def test_metadata_and_config_give_the_shape_of_the_answer(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    (tmp_path / "two-targets").mkdir()
    joblib.dump(LinearRegression().fit(X, X[:, :2]), tmp_path / "two-targets" / "model.joblib")
    (tmp_path / "softprob").mkdir()
    softprob = xgb.train(
        {"objective": "multi:softprob", "num_class": 3}, xgb.DMatrix(X, label=np.arange(40) % 3), 3
    )
    softprob.save_model(str(tmp_path / "softprob" / "model.json"))
    (
        tmp_path / "classifier"
    ).mkdir()  # a native file of a classifier: its labels, though its Booster is softprob
    xgb.XGBClassifier(n_estimators=3).fit(X, np.arange(40) % 3).save_model(
        str(tmp_path / "classifier" / "model.json")
    )
    (tmp_path / "one-target").mkdir()
    joblib.dump(LinearRegression().fit(X, X[:, 0]), tmp_path / "one-target" / "model.joblib")
    with serving_inprocess(["serve", "--model-dir", str(tmp_path), "--max-batch-size", "8"]) as server:
        for name, width in (("two-targets", 2), ("softprob", 3), ("one-target", None), ("classifier", None)):
            meta = httpx.get(f"{server.url}/v2/models/{name}").json()
            request = {
                "inputs": [
                    {"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": X[:2].ravel().tolist()}
                ]
            }
            answer = httpx.post(f"{server.url}/v2/models/{name}/infer", json=request).json()["outputs"][0]
            expected = [-1] if width is None else [-1, width]
            assert meta["outputs"][0]["shape"] == expected and answer["shape"] == [2, *expected[1:]], (
                name,
                meta,
            )
            config = httpx.get(f"{server.url}/v2/models/{name}/config").json()
            assert config["output"][0]["dims"] == expected[1:], (name, config)
