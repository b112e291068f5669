"""The ready-made tabular transformers' pre/postprocessing, in process (the wire paths are in
test_transformers.py): every accepted input shape, and a 400 or 500 that names the problem otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from serving.errors import BadRequest, ModelFailure
from serving.settings import ModelSettings
from serving.transformers.base import CONFIG_KEY, TransformerConfig
from serving.transformers.predictor_client import decode_v1, decode_v2, encode_v1, encode_v2
from serving.transformers.tabular import ClassLabels, FeatureRecords, TabularTransformer

NAMES = ("a", "b", "c")


def _make(cls: type, features: tuple[str, ...] = NAMES, labels: tuple[str, ...] = ("no", "yes")):
    config = TransformerConfig("http://127.0.0.1:1", "m", feature_names=features, labels=labels)
    transformer = cls(ModelSettings(name="m", model_dir=Path("."), extra={CONFIG_KEY: config}))
    transformer.load()
    return transformer


def _objects(*values: object) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def test_records_columns_and_matrices_give_the_same_ordered_fp64_matrix() -> None:
    t = _make(FeatureRecords)
    want = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]])
    as_dicts = _objects({"c": 3, "b": 2, "a": 1, "extra": "ignored"}, {"a": 4, "b": 5, "c": 6.5})
    as_json = _objects(b'{"a": 1, "b": 2, "c": 3}', b'{"c": 6.5, "a": 4, "b": 5}')
    columns = {"c": np.array([3.0, 6.5]), "a": np.array([1, 4]), "b": np.array([[2], [5]])}
    for inputs in ({"instances": as_dicts}, {"records": as_json}, columns, {"x": want}):
        out = t.preprocess(inputs, {})["input-0"]
        assert out.dtype == np.float64 and np.array_equal(out, want), inputs


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"instances": _objects({"a": 1, "b": 2})}, "record 0 is missing feature 'c'"),
        ({"a": np.array([1.0]), "c": np.array([1.0])}, "missing feature 'b'"),
        (
            {"instances": _objects({"a": 1, "b": "2", "c": 3})},
            "must be numbers, but record 0 has b = '2' (str)",
        ),
        ({"instances": _objects({"a": 1, "b": True, "c": 3})}, "record 0 has b = True (bool)"),
        ({"instances": _objects({"a": 1, "b": None, "c": 3})}, "record 0 has b = None (NoneType)"),
        ({"records": _objects(b"{not json")}, "record 0 is not a JSON object"),
        ({"instances": _objects([1, 2, 3])}, "record 0 must be an object"),
        ({"x": np.ones((2, 4))}, "shape [rows, 3]"),
        ({"x": np.ones(3), "y": np.ones(3)}, "got tensors x, y"),
        ({"a": np.ones(2), "b": np.ones(2), "c": np.ones(3)}, "same row count"),
    ],
)
def test_bad_features_are_400s_naming_the_problem(inputs: dict, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        _make(FeatureRecords).preprocess(inputs, {})
    assert message in caught.value.message


def test_one_feature_and_settings_checked_at_load() -> None:
    t = _make(FeatureRecords, features=("only",))
    assert t.preprocess({"instances": _objects({"only": 2})}, {})["input-0"].tolist() == [[2.0]]
    with pytest.raises(ValueError, match="needs --feature-names"):
        _make(FeatureRecords, features=())
    with pytest.raises(ValueError, match="repeats"):
        _make(FeatureRecords, features=("a", "a"))
    with pytest.raises(ValueError, match="needs --labels"):
        _make(ClassLabels, labels=())


def test_labels_from_indices_whole_floats_and_scores() -> None:
    t = _make(ClassLabels)
    assert t.postprocess({"p": np.array([1, 0, 1])}, {})["p"].tolist() == [b"yes", b"no", b"yes"]
    assert t.postprocess({"p": np.array([0.0, 1.0])}, {})["p"].tolist() == [b"no", b"yes"]
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert t.postprocess({"p": scores}, {})["p"].tolist() == [b"no", b"yes"]
    with pytest.raises(ModelFailure, match="class 2, but only 2 labels"):
        t.postprocess({"p": np.array([0, 2])}, {})
    with pytest.raises(ModelFailure, match="class -1, but only 2 labels"):  # not wrapped round to "yes"
        t.postprocess({"p": np.array([0, -1])}, {})
    many = np.zeros(1000, dtype=np.int64)  # a batch's rows are checked with numpy, a request's in Python
    assert t.postprocess({"p": many}, {})["p"].tolist() == [b"no"] * 1000
    many[500] = 7
    with pytest.raises(ModelFailure, match="class 7, but only 2 labels"):
        t.postprocess({"p": many}, {})
    many[500] = -3
    with pytest.raises(ModelFailure, match="class -3, but only 2 labels"):
        t.postprocess({"p": many}, {})
    with pytest.raises(ModelFailure, match="non-integer"):
        t.postprocess({"p": np.array([0.5])}, {})


def test_tabular_skips_the_half_without_settings() -> None:
    labels_only = _make(TabularTransformer, features=())
    matrix = {"x": np.ones((1, 5))}
    assert labels_only.preprocess(matrix, {}) is matrix
    features_only = _make(TabularTransformer, labels=())
    outputs = {"p": np.array([7])}
    assert features_only.postprocess(outputs, {}) is outputs


def test_wire_round_trip_v1_and_v2() -> None:
    tensors = {"input-0": np.array([[1.5, 2.0]]), "names": _objects(b"x")}
    v2 = orjson.loads(encode_v2(tensors))
    assert v2["inputs"][0] == {"name": "input-0", "datatype": "FP64", "shape": [1, 2], "data": [1.5, 2.0]}
    assert v2["inputs"][1]["data"] == ["x"]
    v2_answer = {"outputs": [{"name": "o", "datatype": "INT64", "shape": [2], "data": [1, 0]}]}
    assert decode_v2(v2_answer)["o"].tolist() == [1, 0]
    assert orjson.loads(encode_v1({"input-0": np.array([[1.5, 2.0]])})) == {"instances": [[1.5, 2.0]]}
    assert decode_v1({"predictions": [2, 1]})["predictions"].tolist() == [2, 1]
    rows = decode_v1({"predictions": [{"label": "a", "score": 0.5}]})
    assert rows["label"].tolist() == [b"a"] and rows["score"].tolist() == [0.5]
