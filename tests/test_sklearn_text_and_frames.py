"""scikit-learn pipelines that take text and DataFrames, as their users fit them: string categories reach the
encoders as `str` (the protocol's BYTES arrive as bytes, and `b"green"` is no category `"green"`: answered 200
with another class before), and a ColumnTransformer that picks columns by name gets a pandas DataFrame built
from one input per column (MLServer's `pd` content type) or from one matrix in the model's column order. Real
servers in-process, real clients (httpx, tritonclient), models trained here."""

from __future__ import annotations

from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.inprocess import serving_inprocess

COLORS = ["red", "green", "blue"]
NUMERIC = ["a", "b"]


def _data() -> tuple[np.ndarray, list[str], np.ndarray]:
    """The class is the color: a model that loses the category cannot get it right."""
    rng = np.random.default_rng(0)
    numbers = rng.normal(size=(90, 2))
    colors = [COLORS[i % 3] for i in range(90)]
    return numbers, colors, np.array([i % 3 for i in range(90)])


def _by_index(folder: Path) -> Pipeline:
    numbers, colors, y = _data()
    X = np.empty((90, 3), dtype=object)
    X[:, :2], X[:, 2] = numbers, colors
    encode = ColumnTransformer([("num", "passthrough", [0, 1]), ("cat", OneHotEncoder(), [2])])
    model = Pipeline([("prep", encode), ("clf", LogisticRegression(C=100))]).fit(X, y)
    folder.mkdir(parents=True)
    joblib.dump(model, folder / "model.joblib")
    return model


def _by_name(folder: Path) -> Pipeline:
    numbers, colors, y = _data()
    frame = pd.DataFrame({"a": numbers[:, 0], "b": numbers[:, 1], "color": colors})
    encode = ColumnTransformer(
        [("num", StandardScaler(), NUMERIC), ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"])]
    )
    model = Pipeline([("prep", encode), ("clf", LogisticRegression(C=100))]).fit(frame, y)
    folder.mkdir(parents=True)
    joblib.dump(model, folder / "model.joblib")
    return model


def test_string_categories_reach_the_encoder_as_str_over_v1_v2_and_binary(tmp_path: Path) -> None:
    _by_index(tmp_path / "mixed")
    rows = [[0.1, -0.2, c] for c in COLORS]
    with serving_inprocess(["serve", "--model-dir", str(tmp_path / "mixed"), "--name", "mixed"]) as server:
        v1 = httpx.post(server.url + "/v1/models/mixed:predict", json={"instances": rows})
        assert v1.status_code == 200 and v1.json() == {"predictions": [0, 1, 2]}, v1.text
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        array = np.array(rows, dtype=object)
        for binary in (False, True):
            tensor = triton.InferInput("input-0", [3, 3], "BYTES")
            tensor.set_data_from_numpy(
                np.array([[str(v).encode() for v in row] for row in array], dtype=object), binary_data=binary
            )
            answer = client.infer("mixed", [tensor]).as_numpy("output-0")
            assert answer.tolist() == [0, 1, 2], (binary, answer)


def test_a_pipeline_that_picks_columns_by_name_gets_a_data_frame(tmp_path: Path) -> None:
    model = _by_name(tmp_path / "frame")
    frame = pd.DataFrame({"a": [0.1, 0.3, -1.0], "b": [-0.2, 0.0, 2.0], "color": COLORS})
    expected = model.predict(frame).tolist()
    assert expected == [0, 1, 2]
    columns = [
        {
            "name": "color",
            "datatype": "BYTES",
            "shape": [3],
            "data": COLORS,
            "parameters": {"content_type": "str"},
        },
        {"name": "a", "datatype": "FP64", "shape": [3], "data": frame["a"].tolist()},
        {"name": "b", "datatype": "FP64", "shape": [3], "data": frame["b"].tolist()},
    ]
    with serving_inprocess(["serve", "--model-dir", str(tmp_path / "frame"), "--name", "frame"]) as server:
        pd_request = {"parameters": {"content_type": "pd"}, "inputs": columns}  # MLServer's, any column order
        v2 = httpx.post(server.url + "/v2/models/frame/infer", json=pd_request)
        assert v2.status_code == 200, v2.text
        assert v2.json()["outputs"][0]["data"] == expected
        matrix = [[a, b, c] for a, b, c in zip(frame["a"], frame["b"], COLORS, strict=True)]
        v1 = httpx.post(server.url + "/v1/models/frame:predict", json={"instances": matrix})
        assert v1.status_code == 200 and v1.json() == {"predictions": expected}, v1.text
        missing = httpx.post(server.url + "/v2/models/frame/infer", json={"inputs": columns[1:]})
        assert missing.status_code == 400 and "missing 'color'" in missing.json()["error"], missing.text
        narrow = httpx.post(server.url + "/v1/models/frame:predict", json={"instances": [[0.1, "red"]]})
        assert narrow.status_code == 400 and "3" in narrow.json()["error"], narrow.text


def test_a_by_name_pipeline_without_pandas_is_not_ready_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from serving.errors import ArtifactError
    from serving.runtimes.sklearn import SKLearnRuntime
    from serving.settings import ModelSettings

    _by_name(tmp_path / "frame")
    monkeypatch.setitem(sys.modules, "pandas", None)  # as on a machine without pandas (import fails)
    runtime = SKLearnRuntime(ModelSettings(name="frame", model_dir=tmp_path / "frame"))
    with pytest.raises(ArtifactError, match="selects its columns by name .* needs pandas"):
        runtime.load()
