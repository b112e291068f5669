"""XGBoost without scikit-learn: a saved `XGBClassifier` / `XGBRegressor` served from its Booster alone.

`import xgboost` imports scikit-learn when it is installed (for its estimator classes), which took an idle iris
predictor from ~61 to ~139 MB. A Booster saved by `XGBClassifier.save_model` needs none of it: its sklearn
`predict` and `predict_proba` are arithmetic on `Booster.inplace_predict` for the objectives the wrapper uses by
default (`binary:logistic`, `multi:softprob`; any regression objective), and that arithmetic is written out here
the way xgboost's wrapper does it (trees up to `best_iteration`, labels by argmax or p > 0.5, the binary
probability matrix as [1 - p, p]). tests/test_xgboost_native.py checks each case against the wrapper itself.

So xgboost is imported with scikit-learn hidden while nothing needs the wrapper; when something does (a pickled
estimator, another objective), it is imported again with it (`xgboost_module(with_sklearn=True)`).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from serving.runtimes.base import IMPORT_LOCK

CLASSIFIER_OBJECTIVES = ("binary:logistic", "multi:softprob")


def xgboost_module(with_sklearn: bool) -> Any:
    """The `xgboost` module; without scikit-learn behind it unless `with_sklearn` (or it is already loaded)."""
    with IMPORT_LOCK:  # one import (and one re-import) at a time, and none beside an unpickling
        xgb = sys.modules.get("xgboost")
        if xgb is None:
            if with_sklearn or "sklearn" in sys.modules:
                return importlib.import_module("xgboost")
            with _sklearn_hidden():
                return importlib.import_module("xgboost")
        if with_sklearn and not xgb.compat.SKLEARN_INSTALLED and importlib.util.find_spec("sklearn"):
            # Imported without it earlier: import it afresh (the models loaded since keep the module they use).
            for name in [m for m in sys.modules if m == "xgboost" or m.startswith("xgboost.")]:
                del sys.modules[name]
            return importlib.import_module("xgboost")
        return xgb


class _HideSklearn:
    """A meta path entry that makes `import sklearn` fail, for the length of one import, in the thread doing
    it only: the other models of a folder load in threads at the same time, and a pickled scikit-learn model
    among them must import it meanwhile."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if (name == "sklearn" or name.startswith("sklearn.")) and threading.get_ident() == self.thread:
            raise ImportError(f"{name} is not imported while xgboost loads without it")


@contextmanager
def _sklearn_hidden() -> Iterator[None]:
    hider = _HideSklearn()
    sys.meta_path.insert(0, hider)
    try:
        yield
    finally:
        sys.meta_path.remove(hider)


def native_estimator(booster: Any, kind: str) -> NativeEstimator | None:
    """The estimator a Booster was saved from (`kind`: classifier or regressor), if it needs no wrapper class."""
    config = json.loads(booster.save_config())
    objective = config["learner"]["objective"]["name"]
    if kind == "regressor":
        return NativeEstimator(booster, 0)
    classes = int(config["learner"]["learner_model_param"].get("num_class", "0")) or 2
    # binary:logistic has 2 classes; softprob over exactly 2 is a multi-label case in the wrapper: left to it.
    binary = objective == "binary:logistic"
    if kind == "classifier" and objective in CLASSIFIER_OBJECTIVES and binary == (classes == 2):
        return NativeEstimator(booster, classes)
    return None


def aligned(matrix: np.ndarray) -> np.ndarray:
    """`matrix`, copied where XGBoost would refuse its pointer: a tensor is a view of the request's bytes,
    at whatever offset the body put it, and `inplace_predict` checks the alignment of even an empty one
    (a zero-row request failed or not depending on the length of its id)."""
    if matrix.size == 0 or not matrix.flags.aligned:
        return np.array(matrix)
    return matrix


class NativeEstimator:
    """What the runtime reads of an sklearn-API estimator: `predict`, `predict_proba` (classifiers),
    `n_features_in_`, `classes_`."""

    def __init__(self, booster: Any, n_classes: int) -> None:
        self.booster = booster
        self.n_classes_ = n_classes  # 0: a regressor
        best = booster.attr("best_iteration")
        self._range = (0, int(best) + 1) if best is not None else (0, 0)
        self.n_features_in_ = booster.num_features()
        if n_classes:
            self.classes_ = np.arange(n_classes)
            self.predict_proba = self._probabilities

    def _values(self, matrix: np.ndarray) -> np.ndarray:
        values: np.ndarray = self.booster.inplace_predict(aligned(matrix), iteration_range=self._range)
        return values

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        values = self._values(matrix)
        if not self.n_classes_:
            return values
        labels: np.ndarray = np.argmax(values, axis=1) if values.ndim > 1 else (values > 0.5).astype(np.int64)
        return labels

    def _probabilities(self, matrix: np.ndarray) -> np.ndarray:
        values = self._values(matrix)
        if values.ndim == 2 and values.shape[1] == self.n_classes_:
            return values
        return np.vstack((1.0 - values, values)).transpose()
