"""XGBoost: native Booster files (.json / .ubj / .bst) and pickled sklearn-API models.

A Booster saved from `XGBClassifier.save_model` carries its sklearn type, so it is reloaded as that
estimator: `predict` gives labels and `predict_proba` probabilities, as the user trained it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from serving.runtimes import find_artifact
from serving.runtimes.base import (
    MLSERVER_OUTPUTS,
    PREDICT,
    PROBABILITIES,
    ModelMetadata,
    Runtime,
    column_names,
    feature_matrix,
    refuse_text,
    requested_outputs,
    select_outputs,
)
from serving.runtimes.sklearn import PICKLE_SUFFIXES, load_pickle
from serving.runtimes.xgboost_native import aligned, native_estimator, xgboost_module
from serving.types import TensorDict, TensorSpec

NATIVE_SUFFIXES = (".json", ".ubj", ".bst")


class XGBoostRuntime(Runtime):
    platform = "xgboost"

    def load(self) -> None:
        path = find_artifact(
            self.settings.model_dir, NATIVE_SUFFIXES + PICKLE_SUFFIXES, self.settings.artifact
        )
        booster: Any = None
        if path.suffix.lower() in PICKLE_SUFFIXES:
            xgb = xgboost_module(with_sklearn=True)  # the pickle holds an sklearn-API estimator
            self.model: Any = load_pickle(self.settings)
        else:
            xgb = xgboost_module(with_sklearn=False)
            booster = xgb.Booster()
            booster.load_model(str(path))
            self.model = _as_estimator(booster, path)
        self._methods: dict[str, Any] = {}
        if isinstance(self.model, xgb.Booster):
            booster = self.model
            self._methods[PREDICT] = lambda m: booster.inplace_predict(aligned(m))
            self._features = booster.num_features()
        else:
            self._methods[PREDICT] = self.model.predict
            if hasattr(self.model, "predict_proba"):
                self._methods[PROBABILITIES] = self.model.predict_proba
            self._features = int(getattr(self.model, "n_features_in_", -1))
        self._columns = column_names(self.model) or (column_names(booster) if booster is not None else ())
        self._shape = _prediction_shape(self.model, booster, xgb)
        wants_proba = self.settings.predict_proba and PROBABILITIES in self._methods
        self._default = (PROBABILITIES,) if wants_proba else (PREDICT,)

    def predict(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> TensorDict:
        methods = self._methods
        names = select_outputs(methods, outputs, self.settings.name, MLSERVER_OUTPUTS) or requested_outputs(
            parameters, methods, self._default
        )
        refuse_text(inputs, self.settings.name)
        matrix = feature_matrix(inputs, self._features, self.settings.name, self._columns)
        return {name: np.asarray(methods[MLSERVER_OUTPUTS.get(name, name)](matrix)) for name in names}

    def metadata(self) -> ModelMetadata:
        f32 = np.dtype(np.float32)
        classes = getattr(self.model, "classes_", None) if PROBABILITIES in self._methods else None
        # A classifier's `predict` gives its class labels (int64 for 0..n-1), a Booster or regressor float32.
        label_type = f32 if classes is None else np.asarray(classes).dtype
        outputs = [TensorSpec(PREDICT, label_type, self._shape)]
        if PROBABILITIES in self._methods:
            outputs.append(TensorSpec(PROBABILITIES, f32, (-1, -1 if classes is None else len(classes))))
        return ModelMetadata(
            platform=self.platform,
            inputs=(TensorSpec("input-0", f32, (-1, self._features)),),
            outputs=tuple(outputs),
            default_outputs=self._default,
        )


def _prediction_shape(model: Any, booster: Any, xgb: Any) -> tuple[int, ...]:
    """The shape of `predict`'s answer: a softprob Booster's classes, a multi-target model's targets, else one
    value per row (a classifier's `predict` is its labels, whatever its Booster's objective)."""
    if hasattr(model, "predict_proba"):
        return (-1,)
    if isinstance(model, xgb.Booster):
        booster = model
    elif hasattr(model, "get_booster"):
        booster = model.get_booster()
    if booster is None:
        return (-1,)
    try:
        learner = json.loads(booster.save_config())["learner"]
        params = learner["learner_model_param"]
        if learner["objective"]["name"] == "multi:softprob":
            return (-1, int(params.get("num_class", 1)))
        targets = int(params.get("num_target", 1))
    except (KeyError, TypeError, ValueError):
        return (-1,)
    return (-1, targets) if targets > 1 else (-1,)


def _as_estimator(booster: Any, path: Path) -> Any:
    """Rewrap a Booster in the sklearn estimator it was saved from, if it says so: computed from the Booster
    where that is plain arithmetic (no scikit-learn import), else xgboost's own wrapper class."""
    attr = booster.attr("scikit_learn")
    if not attr:
        return booster
    try:
        kind = json.loads(attr).get("_estimator_type")
    except (ValueError, AttributeError):
        return booster
    if kind not in ("classifier", "regressor"):
        return booster
    native = native_estimator(booster, kind)
    if native is not None:
        return native
    xgb = xgboost_module(with_sklearn=True)
    booster = xgb.Booster()
    booster.load_model(str(path))
    estimator = {"classifier": xgb.XGBClassifier, "regressor": xgb.XGBRegressor}[kind]()
    estimator._Booster = booster
    config = json.loads(booster.save_config())
    estimator.n_classes_ = int(config["learner"]["learner_model_param"].get("num_class", "0")) or 2
    return estimator
