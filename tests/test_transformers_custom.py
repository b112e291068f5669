"""A user's own transformer, named `module:Class` as in a KServe transformer container's args.

`MillimetreIris` below is what a user writes: an async `preprocess` (unit conversion plus a setting from
`--param`) and a `postprocess` that reshapes the predictor's answer. It runs in a real `serving transform`
in front of a real predictor over V2; the predictor's own errors come back with its status and message.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from serving.transformers.base import Transformer
from serving.types import TensorDict
from tests.inprocess import InProcessServer, serving_inprocess
from tests.support import train_iris_sklearn

LABELS = ["setosa", "versicolor", "virginica"]


class MillimetreIris(Transformer):
    """Takes measurements in millimetres (tensor `mm`); answers `species` and the predictor's raw `class`."""

    async def preprocess(self, inputs: TensorDict, parameters: dict[str, Any]) -> TensorDict:
        scale = float(self.config.params.get("scale", "0.1"))
        return {"input-0": inputs["mm"].astype(np.float64) * scale}

    def postprocess(self, outputs: TensorDict, parameters: dict[str, Any]) -> TensorDict:
        (classes,) = outputs.values()
        species = np.array([LABELS[i].encode() for i in classes], dtype=object)
        return {"species": species, "class": classes}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessServer, InProcessServer]]:
    folder = tmp_path_factory.mktemp("custom") / "iris"
    train_iris_sklearn(folder)
    with serving_inprocess(["serve", "--model-dir", str(folder), "--name", "iris"]) as predictor:
        args = [
            "transform",
            "--predictor-url",
            predictor.url,
            "--model-name",
            "iris",
            "--protocol",
            "v2",
            "--transformer",
            "tests.test_transformers_custom:MillimetreIris",
            "--param",
            "scale=0.1",
        ]
        with serving_inprocess(args) as transformer:
            yield predictor, transformer


def test_users_module_class_transformer(servers: tuple[InProcessServer, InProcessServer]) -> None:
    predictor, transformer = servers
    mm = [[68.0, 28.0, 48.0, 14.0], [51.0, 35.0, 14.0, 2.0]]
    tensor = {"name": "mm", "shape": [2, 4], "datatype": "FP32", "data": mm}
    r = httpx.post(transformer.url + "/v2/models/iris/infer", json={"inputs": [tensor]})
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert outputs["species"]["data"] == ["versicolor", "setosa"]
    assert outputs["species"]["datatype"] == "BYTES"
    direct = httpx.post(
        predictor.url + "/v1/models/iris:predict",
        json={"instances": [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]},
    )
    assert outputs["class"]["data"] == direct.json()["predictions"]
    # V1 into the same transformer, and the client's `outputs` selection applies to the transformer's outputs.
    r = httpx.post(transformer.url + "/v1/models/iris:predict", json={"inputs": {"mm": mm}})
    assert r.json() == {
        "predictions": [{"species": "versicolor", "class": 1}, {"species": "setosa", "class": 0}]
    }
    r = httpx.post(
        transformer.url + "/v2/models/iris/infer", json={"inputs": [tensor], "outputs": [{"name": "species"}]}
    )
    assert [o["name"] for o in r.json()["outputs"]] == ["species"]


def test_predictor_errors_come_back_with_its_status_and_message(
    servers: tuple[InProcessServer, InProcessServer],
) -> None:
    predictor, transformer = servers
    three_features = {
        "inputs": [{"name": "mm", "shape": [1, 3], "datatype": "FP64", "data": [68.0, 28.0, 48.0]}]
    }
    via_transformer = httpx.post(transformer.url + "/v2/models/iris/infer", json=three_features)
    direct = httpx.post(
        predictor.url + "/v2/models/iris/infer",
        json={"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [6.8, 2.8, 4.8]}]},
    )
    assert direct.status_code == 400
    assert via_transformer.status_code == 400
    assert via_transformer.json() == direct.json()
    # A user's preprocess failing on input it did not expect is the client's 400, naming the problem.
    r = httpx.post(
        transformer.url + "/v2/models/iris/infer",
        json={"inputs": [{"name": "cm", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
    )
    assert r.status_code == 400 and "'mm'" in r.json()["error"], r.text


def test_a_class_that_is_not_a_transformer_is_refused() -> None:
    from serving.errors import ArtifactError
    from serving.transformers.server import transformer_path

    assert transformer_path("tabular") == "serving.transformers.tabular:TabularTransformer"
    with pytest.raises(ArtifactError, match="not a serving.transformers.base.Transformer"):
        transformer_path("serving.runtimes.sklearn:SKLearnRuntime")
    with pytest.raises(ArtifactError, match="unknown transformer 'nope'"):
        transformer_path("nope")
