"""Ready-made transformers for tabular models: named feature records in, class label names out.

`FeatureRecords` accepts, and turns into the one ordered FP64 matrix a tabular predictor expects:
- V1 `{"instances": [{"sepal_length": 5.1, ...}, ...]}` (records as JSON objects);
- V2 one BYTES tensor whose elements are JSON objects (`"{\"sepal_length\": 5.1, ...}"`);
- V1 `{"inputs": {"sepal_length": [...], ...}}` or V2 one tensor per feature (named columns);
- an already ordered numeric matrix (its width is checked).
Feature order comes from `--feature-names`. `ClassLabels` maps class indices (or per-class scores, by
argmax) to `--labels`. `TabularTransformer` does both.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from serving.errors import BadRequest, ModelFailure
from serving.transformers.base import Transformer
from serving.types import TensorDict


class FeatureRecords(Transformer):
    """Named features -> the ordered FP64 matrix, sent as the predictor's one input."""

    def load(self) -> None:
        Transformer.load(self)
        names = self.config.feature_names
        if not names:
            raise ValueError(f"{type(self).__name__} needs --feature-names (the predictor's feature order)")
        if len(set(names)) != len(names):
            raise ValueError(f"--feature-names repeats a name: {', '.join(names)}")
        self._get = itemgetter(*names) if len(names) > 1 else (lambda record: (record[names[0]],))

    def preprocess(self, inputs: TensorDict, parameters: dict[str, Any]) -> TensorDict:
        return {self.config.input_name: self.feature_matrix(inputs)}

    def feature_matrix(self, inputs: TensorDict) -> np.ndarray:
        names = self.config.feature_names
        if any(name in inputs for name in names):
            return self._columns(inputs)
        if len(inputs) != 1:
            raise BadRequest(
                f"expected records, one ordered matrix, or the columns {', '.join(names)}; "
                f"got tensors {', '.join(inputs)}"
            )
        (array,) = inputs.values()
        if array.dtype.kind == "O":
            return self._records(array)
        if array.dtype.kind not in "biuf":
            raise BadRequest(f"features must be numbers or named records, not {array.dtype}")
        matrix = array.reshape(1, -1) if array.ndim == 1 else array
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise BadRequest(
                f"a feature matrix needs shape [rows, {len(names)}] ({', '.join(names)}), "
                f"got {list(array.shape)}"
            )
        return matrix.astype(np.float64, copy=False)

    def _columns(self, inputs: TensorDict) -> np.ndarray:
        missing = [name for name in self.config.feature_names if name not in inputs]
        if missing:
            raise BadRequest(
                f"missing feature {missing[0]!r} (expected {', '.join(self.config.feature_names)})"
            )
        columns = [
            inputs[name].reshape(inputs[name].shape[0] if inputs[name].ndim else 1, -1)
            for name in self.config.feature_names
        ]
        rows = {c.shape[0] for c in columns}
        if len(rows) != 1 or any(c.shape[1] != 1 for c in columns):
            raise BadRequest("feature columns must each hold one value per row, with the same row count")
        return _float_matrix(np.hstack(columns), "feature columns", self.config.feature_names)

    def _records(self, array: np.ndarray) -> np.ndarray:
        records = [_record(value, i) for i, value in enumerate(array.ravel())]
        try:
            rows = list(map(self._get, records))
        except KeyError:
            raise self._missing(records) from None
        return _float_matrix(np.array(rows, dtype=object), "records", self.config.feature_names)

    def _missing(self, records: list[dict[str, Any]]) -> BadRequest:
        for i, record in enumerate(records):
            for name in self.config.feature_names:
                if name not in record:
                    return BadRequest(
                        f"record {i} is missing feature {name!r} "
                        f"(expected {', '.join(self.config.feature_names)})"
                    )
        return BadRequest("a record is missing a feature")


def _record(value: Any, index: int) -> dict[str, Any]:
    if isinstance(value, bytes | str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"record {index} is not a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise BadRequest(f"record {index} must be an object of named features, not {type(value).__name__}")
    return value


def _first_bad(values: np.ndarray, names: tuple[str, ...]) -> str:
    """Where the first value that is not a number is: row and feature name, and what it is."""
    for (row, column), value in np.ndenumerate(values.reshape(values.shape[0], -1)):
        if type(value) not in (int, float):
            feature = names[column] if column < len(names) else f"#{column}"
            return f"but record {row} has {feature} = {value!r} ({type(value).__name__})"
    return "found other values"


def _float_matrix(values: np.ndarray, what: str, names: tuple[str, ...] = ()) -> np.ndarray:
    """Object or numeric values -> FP64, refusing strings, booleans and nulls with a 400 naming the first."""
    if values.dtype.kind == "O":
        kinds = {type(v) for v in values.ravel()}
        bad = kinds - {int, float}
        if bad:
            raise BadRequest(f"{what}: features must be numbers, {_first_bad(values, names)}")
    elif values.dtype.kind not in "iuf":
        raise BadRequest(f"{what}: features must be numbers, not {values.dtype}")
    return values.astype(np.float64)


_FEW = 64  # class indices checked in Python below this many (see ClassLabels.label)


class ClassLabels(Transformer):
    """Class indices (or per-class scores) from the predictor -> label names."""

    def load(self) -> None:
        Transformer.load(self)
        if not self.config.labels:
            raise ValueError(f"{type(self).__name__} needs --labels (names of class 0, 1, ...)")
        self._labels = np.array([label.encode() for label in self.config.labels], dtype=object)

    def postprocess(self, outputs: TensorDict, parameters: dict[str, Any]) -> TensorDict:
        return {name: self.label(array) for name, array in outputs.items()}

    def label(self, array: np.ndarray) -> np.ndarray:
        if array.dtype.kind == "f" and array.ndim >= 2:
            array = array.argmax(axis=-1)  # per-class scores
        if array.dtype.kind == "f":
            if not np.all(np.mod(array, 1) == 0):
                raise ModelFailure("predictor returned non-integer classes; ClassLabels needs class indices")
            array = array.astype(np.int64)
        if array.dtype.kind not in "iu":
            raise ModelFailure(f"predictor returned {array.dtype} classes; ClassLabels needs class indices")
        if array.size:
            # numpy's reductions cost more than the work on a few rows (one request's)
            values = array.ravel().tolist() if array.size <= _FEW else None
            low = min(values) if values is not None else int(array.min())
            high = max(values) if values is not None else int(array.max())
            if low < 0 or high >= len(self._labels):
                bad = high if high >= len(self._labels) else low
                raise ModelFailure(
                    f"predictor returned class {bad}, but only {len(self._labels)} labels are set"
                )
        labels: np.ndarray = self._labels[array]
        return labels


class TabularTransformer(FeatureRecords, ClassLabels):
    """Records in, labels out; either half is skipped when its setting is empty."""

    def load(self) -> None:
        if self.config.feature_names:
            FeatureRecords.load(self)
        if self.config.labels:
            ClassLabels.load(self)

    def preprocess(self, inputs: TensorDict, parameters: dict[str, Any]) -> TensorDict:
        return FeatureRecords.preprocess(self, inputs, parameters) if self.config.feature_names else inputs

    def postprocess(self, outputs: TensorDict, parameters: dict[str, Any]) -> TensorDict:
        return ClassLabels.postprocess(self, outputs, parameters) if self.config.labels else outputs
