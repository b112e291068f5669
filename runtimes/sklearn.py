"""scikit-learn (and any pickled estimator with `predict`): joblib / pickle artifacts.

Pickles execute code when loaded: `allow_pickle=False` (`--no-pickle`) refuses them.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from serving.errors import ArtifactError, ArtifactRefused, ModelFailure
from serving.runtimes import find_artifact, linear_cache
from serving.runtimes.base import (
    IMPORT_LOCK,
    MLSERVER_OUTPUTS,
    PREDICT,
    PROBABILITIES,
    ModelMetadata,
    Runtime,
    column_names,
    data_frame,
    feature_matrix,
    refuse_text,
    requested_outputs,
    select_outputs,
    text_as_str,
)
from serving.runtimes.linear_fast_path import Predict, all_finite, from_params, guarded, verified_linear
from serving.types import TensorDict, TensorSpec

log = logging.getLogger("serving.runtimes")
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
INLINE_MAX_ELEMENTS = 4096  # a (1024 x 4) product is a few microseconds


def load_pickle(settings: Any) -> Any:
    return unpickle(pickle_path(settings))


def pickle_path(settings: Any) -> Path:
    """The model's pickle, refused when pickles are disabled (they run code when loaded)."""
    path = find_artifact(settings.model_dir, PICKLE_SUFFIXES, settings.artifact)
    if not settings.allow_pickle:
        raise ArtifactRefused(f"{path.name} is a pickle (code execution on load) and pickles are disabled")
    return path


def unpickle(path: Path, data: bytes | None = None) -> Any:
    """The estimator in `path` (from `data`, its bytes, when already read)."""
    import joblib

    try:
        with IMPORT_LOCK:  # unpickling imports the estimator's modules
            return joblib.load(io.BytesIO(data) if data is not None else path)
    except Exception as exc:  # joblib's own messages ("pop from empty list") do not say which file
        # a missing module or class is another environment's pickle; the rest, bytes that are no pickle
        corrupt = not isinstance(exc, ImportError | AttributeError | TypeError)
        why = " (not a joblib/pickle file, or a damaged one)" if corrupt else ""
        raise ArtifactError(f"cannot load {path.name}{why}: {type(exc).__name__}: {exc}") from exc


class LazyEstimator:
    """The estimator, unpickled (and scikit-learn imported) the first time a request needs it."""

    def __init__(self, path: Path, data: bytes) -> None:
        self._path, self._data = path, data
        self._model: Any = None
        self._error: ModelFailure | None = None  # the same bytes fail the same way: not unpickled again
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self) -> Any:
        """A failure is the server's, not the request's (these bytes unpickled once, when the cache entry was
        made, with this scikit-learn): a 500."""
        if self._model is None:
            with self._lock:
                if self._error is not None:
                    raise self._error
                if self._model is None:
                    log.info("unpickling %s: a request needs the full estimator", self._path.name)
                    try:
                        self._model = unpickle(self._path, self._data)
                    except ArtifactError as exc:
                        self._error = ModelFailure(exc.message)
                        raise self._error from exc
        return self._model


class SKLearnRuntime(Runtime):
    platform = "sklearn"

    def load(self) -> None:
        path = pickle_path(self.settings)
        data = path.read_bytes() if path.stat().st_size <= linear_cache.MAX_ARTIFACT_BYTES else None
        cached = linear_cache.load(data) if data is not None else None
        fast = from_params(cached.params) if cached is not None else None
        if cached is not None and fast is not None and data is not None:
            self._load_cached(path, data, cached, fast)
            return
        model = self._eager = unpickle(path, data)
        self._lazy: LazyEstimator | None = None
        verified = verified_linear(model)
        self._linear = verified[0] if verified is not None else None
        self._methods: dict[str, Any] = {PREDICT: self._linear or model.predict}
        if hasattr(model, "predict_proba"):
            self._methods[PROBABILITIES] = model.predict_proba
        self._numeric = self._linear is not None or _takes_numbers_only(model)
        self._finish_load(int(getattr(model, "n_features_in_", -1)), getattr(model, "classes_", None))
        self._shape: tuple[int, ...] = prediction_shape(model)
        self._columns: tuple[str, ...] = column_names(model)
        self._frame = bool(self._columns) and _selects_columns_by_name(model)
        if self._frame:
            _import_pandas(self.settings.name)
        if verified is not None and data is not None:
            linear_cache.store(data, linear_cache.CachedLinear(verified[1], PROBABILITIES in self._methods))

    def _load_cached(self, path: Path, data: bytes, cached: linear_cache.CachedLinear, fast: Predict) -> None:
        """`predict` from the stored product; the estimator itself waits until a request needs it."""
        lazy = self._lazy = LazyEstimator(path, data)
        params = cached.params
        self._linear = guarded(fast, params.width, lambda: lazy.get().predict)
        self._numeric = True  # a linear product
        self._methods = {PREDICT: self._linear}
        if cached.has_proba:
            self._methods[PROBABILITIES] = lambda x: lazy.get().predict_proba(x)
        self._finish_load(params.width, params.classes)
        self._columns = ()  # a linear product is never one of named columns
        self._frame = False
        self._shape = (-1,)  # the product is verified against a single-output model

    def _finish_load(self, features: int, classes: Any) -> None:
        self._classes = classes
        self._default = (
            (PROBABILITIES,) if self.settings.predict_proba and PROBABILITIES in self._methods else (PREDICT,)
        )
        self._features = features

    @property
    def model(self) -> Any:
        """The scikit-learn estimator (unpickled now if the model was served from the cache so far)."""
        return self._lazy.get() if self._lazy is not None else self._eager

    def predict(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> TensorDict:
        methods = self._methods
        names = select_outputs(methods, outputs, self.settings.name, MLSERVER_OUTPUTS) or self._requested(
            parameters
        )
        if self._numeric:  # an estimator itself is numbers only (a pipeline may take text: not refused)
            refuse_text(inputs, self.settings.name)
        else:  # a pipeline's encoders were fit on str, as it is given by scikit-learn users and KServe
            inputs = text_as_str(inputs)
        if self._frame:
            matrix = data_frame(inputs, self._columns, self.settings.name)
        else:
            matrix = feature_matrix(inputs, self._features, self.settings.name, self._columns)
        if len(matrix) == 0:  # scikit-learn refuses no rows ("Found array with 0 sample(s)"): none answered
            return self._no_rows(names)
        return {name: np.asarray(methods[MLSERVER_OUTPUTS.get(name, name)](matrix)) for name in names}

    def _no_rows(self, names: tuple[str, ...]) -> TensorDict:
        """Each output for a batch of no rows: empty, with its dtype and the width metadata gives it, as the
        linear fast path, XGBoost and ONNX answer one (scikit-learn itself raises)."""
        specs = {spec.name: spec for spec in self.metadata().outputs}
        answer = {}
        for name in names:
            spec = specs[MLSERVER_OUTPUTS.get(name, name)]
            answer[name] = np.empty((0, *(max(d, 0) for d in spec.shape[1:])), dtype=spec.dtype)
        return answer

    def runs_inline(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> bool:
        """The linear fast path on a small request is one small matrix product: cheaper than a thread hop."""
        if self._linear is None or outputs not in (None, (PREDICT,)):
            return False
        if (outputs is None and self._requested(parameters) != (PREDICT,)) or len(inputs) != 1:
            return False
        if sum(a.size for a in inputs.values()) > INLINE_MAX_ELEMENTS:
            return False
        # Not yet unpickled: an input the product does not take would unpickle it here, on the event loop.
        return self._lazy is None or self._lazy.loaded or _product_takes(inputs)

    def _requested(self, parameters: dict[str, Any]) -> tuple[str, ...]:
        return requested_outputs(parameters, self._methods, self._default)

    def metadata(self) -> ModelMetadata:
        classes = self._classes
        label_type = np.dtype(np.float64) if classes is None else np.asarray(classes).dtype
        outputs = [TensorSpec(PREDICT, label_type, self._shape)]
        if PROBABILITIES in self._methods:
            width = len(classes) if classes is not None else -1
            outputs.append(TensorSpec(PROBABILITIES, np.dtype(np.float64), (-1, width)))
        return ModelMetadata(
            platform=self.platform,
            inputs=(TensorSpec("input-0", np.dtype(np.float64), (-1, self._features)),),
            outputs=tuple(outputs),
            default_outputs=self._default,
        )


def _product_takes(inputs: TensorDict) -> bool:
    """Whether the linear product answers these inputs itself (numeric and finite; the width is checked
    before any call)."""
    return all(a.dtype.kind in "fiub" and all_finite(a) for a in inputs.values())


def prediction_shape(model: Any) -> tuple[int, ...]:
    """The shape of `predict`'s answer: (-1, k) for a multi-output estimator (`n_outputs_`, a multi-target
    linear model's 2-D `coef_`, a MultiOutputRegressor's estimators), the last step's for a pipeline."""
    steps = getattr(model, "steps", None)
    final = steps[-1][1] if isinstance(steps, list) and steps else model
    outputs = getattr(final, "n_outputs_", None)
    if isinstance(outputs, int) and outputs > 1:
        return (-1, outputs)
    estimators = getattr(final, "estimators_", None)
    if type(final).__name__.startswith("MultiOutput") and isinstance(estimators, list):
        return (-1, len(estimators))
    coef: Any = getattr(final, "coef_", None)
    if coef is not None and getattr(final, "classes_", None) is None and np.ndim(coef) == 2:
        return (-1, int(np.shape(coef)[0]))
    return (-1,)


def _selects_columns_by_name(model: Any) -> bool:
    """A ColumnTransformer (anywhere in the pipeline) that picks columns by name or by a selector: it takes a
    pandas DataFrame only ("Specifying the columns using strings is only supported for dataframes")."""
    with IMPORT_LOCK:
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import FeatureUnion, Pipeline

    if isinstance(model, ColumnTransformer):
        for _, inner, columns in model.transformers:
            if callable(columns) or isinstance(columns, str):
                return True
            if isinstance(columns, list | tuple | np.ndarray) and any(isinstance(c, str) for c in columns):
                return True
            if _selects_columns_by_name(inner):
                return True
        return False
    if isinstance(model, Pipeline):
        return any(_selects_columns_by_name(step) for _, step in model.steps)
    if isinstance(model, FeatureUnion):
        return any(_selects_columns_by_name(inner) for _, inner in model.transformer_list)
    return False


def _import_pandas(model: str) -> None:
    try:
        with IMPORT_LOCK:
            import pandas  # noqa: F401
    except ImportError as exc:
        raise ArtifactError(
            f"model {model!r} selects its columns by name (a ColumnTransformer fit on a DataFrame): it needs "
            "pandas, which is not installed (pip install pandas)"
        ) from exc


def _takes_numbers_only(model: Any) -> bool:
    """A bare estimator (forest, SVM, ...) computes on numbers; strings reach it only through a pipeline's
    encoders or a column transformer, which may take text, so those are not refused here."""
    with IMPORT_LOCK:  # other models may be unpickling in other threads
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import FeatureUnion, Pipeline

    return not isinstance(model, Pipeline | ColumnTransformer | FeatureUnion)
