"""scikit-learn (and any pickled estimator with `predict`): joblib / pickle artifacts.

Pickles execute code when loaded: `allow_pickle=False` (`--no-pickle`) refuses them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serving.errors import ArtifactError, ArtifactRefused
from serving.runtimes import find_artifact
from serving.runtimes.base import ModelMetadata, Runtime, feature_matrix, select_outputs
from serving.runtimes.linear_fast_path import linear_predict
from serving.types import TensorDict, TensorSpec

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
PREDICT = "output-0"
PROBABILITIES = "probabilities"
INLINE_MAX_ELEMENTS = 4096  # a (1024 x 4) product is a few microseconds


def load_pickle(settings: Any) -> Any:
    path = find_artifact(settings.model_dir, PICKLE_SUFFIXES)
    if not settings.allow_pickle:
        raise ArtifactRefused(f"{path.name} is a pickle (code execution on load) and pickles are disabled")
    import joblib

    try:
        return joblib.load(path)
    except Exception as exc:  # joblib's own messages ("pop from empty list") do not say which file
        raise ArtifactError(f"cannot load {path.name}: {type(exc).__name__}: {exc}") from exc


class SKLearnRuntime(Runtime):
    platform = "sklearn"

    def load(self) -> None:
        self.model = load_pickle(self.settings)
        self._linear = linear_predict(self.model)
        self._methods: dict[str, Any] = {PREDICT: self._linear or self.model.predict}
        if hasattr(self.model, "predict_proba"):
            self._methods[PROBABILITIES] = self.model.predict_proba
        self._default = (
            (PROBABILITIES,) if self.settings.predict_proba and PROBABILITIES in self._methods else (PREDICT,)
        )
        self._features = int(getattr(self.model, "n_features_in_", -1))

    def predict(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> TensorDict:
        names = select_outputs(self._methods, outputs, self.settings.name) or self._requested(parameters)
        matrix = feature_matrix(inputs, self._features, self.settings.name)
        return {name: np.asarray(self._methods[name](matrix)) for name in names}

    def runs_inline(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> bool:
        """The linear fast path on a small request is one small matrix product: cheaper than a thread hop."""
        if self._linear is None or outputs not in (None, (PREDICT,)):
            return False
        if (outputs is None and self._requested(parameters) != (PREDICT,)) or len(inputs) != 1:
            return False
        return sum(a.size for a in inputs.values()) <= INLINE_MAX_ELEMENTS

    def _requested(self, parameters: dict[str, Any]) -> tuple[str, ...]:
        flag = parameters.get("predict_proba") if parameters else None
        if flag is True and PROBABILITIES in self._methods:
            return (PROBABILITIES,)
        if flag is False:
            return (PREDICT,)
        return self._default

    def metadata(self) -> ModelMetadata:
        classes = getattr(self.model, "classes_", None)
        label_type = np.dtype(np.float64) if classes is None else np.asarray(classes).dtype
        outputs = [TensorSpec(PREDICT, label_type, (-1,))]
        if PROBABILITIES in self._methods:
            width = len(classes) if classes is not None else -1
            outputs.append(TensorSpec(PROBABILITIES, np.dtype(np.float64), (-1, width)))
        return ModelMetadata(
            platform=self.platform,
            inputs=(TensorSpec("input-0", np.dtype(np.float64), (-1, self._features)),),
            outputs=tuple(outputs),
            default_outputs=self._default,
        )
