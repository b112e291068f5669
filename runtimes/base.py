"""The runtime contract: `load()`, `predict(TensorDict) -> TensorDict`, `metadata()`."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.errors import BadRequest
from serving.settings import ModelSettings
from serving.types import TensorDict, TensorSpec

PREDICT = "output-0"  # the label (or value) output of a classifier or regressor
PROBABILITIES = "probabilities"
# MLServer's names for them (its sklearn and XGBoost runtimes): requested by those names, answered so
MLSERVER_OUTPUTS = {"predict": PREDICT, "predict_proba": PROBABILITIES}
# Models load in threads, all at once; scikit-learn's submodules import each other, and two threads importing
# them in different orders get CPython's `_DeadlockError` or a "partially initialized module" ImportError (a
# folder of several estimator kinds failed to load at random). So a model library is imported, and a pickle
# (which imports what it names) is loaded, by one thread at a time; the rest of a load runs side by side.
IMPORT_LOCK = threading.RLock()


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    platform: str
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    default_outputs: tuple[str, ...] = field(default=())


class Runtime:
    """Base class for runtimes. `predict` runs in a worker thread, unless `runs_inline` vouches for the call."""

    platform = "python"

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings

    def load(self) -> None:
        raise NotImplementedError

    def predict(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> TensorDict:
        raise NotImplementedError

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(platform=self.platform)

    def runs_inline(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> bool:
        """True only for a call that is pure bounded numpy work too small to be worth a thread hop (which
        costs the event loop ~100 µs): it cannot hang or block for long. The default: never."""
        return False

    def unload(self) -> None:
        """Release resources; the default just drops references."""


def select_outputs(
    available: Mapping[str, object],
    wanted: tuple[str, ...] | None,
    model: str,
    aliases: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """Validate a request's `outputs` selection against what the model can produce (or other names for it,
    `aliases`: answered under the name asked for)."""
    if wanted is None:
        return ()
    known = aliases or {}
    unknown = [n for n in wanted if known.get(n, n) not in available]
    if unknown:
        also = [alias for alias, name in known.items() if name in available]
        said = f" (or {', '.join(also)})" if also else ""
        raise BadRequest(f"model {model!r} has no output {unknown[0]!r}; it has {', '.join(available)}{said}")
    return wanted


def text_as_str(inputs: TensorDict) -> TensorDict:
    """BYTES tensors as Python `str` (UTF-8), what a pipeline's encoders were fit on: the protocol's BYTES
    arrive as `bytes`, and `b"green"` is not the category `"green"` (OneHotEncoder would call it unknown).
    Text that is not UTF-8 stays bytes."""
    out = dict(inputs)
    for name, array in inputs.items():
        kind = array.dtype.kind
        if kind == "S" or (kind == "O" and array.size and isinstance(array.flat[0], bytes)):
            try:
                out[name] = np.char.decode(array.astype(np.bytes_), "utf-8").astype(object)
            except (UnicodeDecodeError, TypeError, ValueError):
                continue
    return out


def refuse_text(inputs: TensorDict, model: str) -> None:
    """A numeric model given strings or booleans (V1 has no datatypes: `["6.8"]` arrives as text, `[true]` as
    BOOL): numpy would make numbers of them without a word, so the caller hears it instead."""
    for name, array in inputs.items():
        kind = array.dtype.kind
        if kind == "O" and array.size and isinstance(array.flat[0], dict):
            raise BadRequest(
                f"model {model!r} takes rows of numbers; input {name!r} holds named records (JSON objects): "
                "send [[6.8, 2.8, 4.8, 1.4]], or put the records transformer in front (see README: Transformers)"
            )
        if kind in "OSU":
            raise BadRequest(
                f'model {model!r} takes numbers; input {name!r} holds strings (send 6.8, not "6.8")'
            )
        if kind == "b":
            raise BadRequest(f"model {model!r} takes numbers; input {name!r} holds booleans (send 1 or 0)")


def feature_matrix(
    inputs: TensorDict, features: int = -1, model: str = "", names: tuple[str, ...] = ()
) -> np.ndarray:
    """One 2-D matrix from the request: a single tensor as is, several as feature columns.

    With the model's trained width (`features` > 0) the shape is checked here, so the caller reads what was
    expected and what came instead of a library's message (XGBoost's carries a native trace and paths). A
    model trained on named columns (`names`: a DataFrame's, as scikit-learn and XGBoost keep them) takes
    several inputs by name, in its own order whatever the request's: columns matched by position would
    answer 200 with another row's prediction."""
    arrays = list(inputs.values())
    if len(arrays) == 1:
        matrix = arrays[0]
    else:
        if names:
            arrays = _named_columns(inputs, names, model)
        rows = {a.shape[0] if a.ndim else 1 for a in arrays}
        if len(rows) != 1:
            raise BadRequest(
                f"inputs have different row counts {sorted(rows)}; cannot form one feature matrix"
            )
        matrix = np.column_stack([a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1) for a in arrays])
    if features > 0 and (matrix.ndim != 2 or matrix.shape[1] != features):
        message = _shape_message(model, matrix.shape, features)
        if len(arrays) > 1:  # the shape said is of the inputs side by side, which the client never sent
            sent = ", ".join(f"{n} {list(a.shape)}" for n, a in inputs.items())
            message += f", the {len(arrays)} inputs ({sent}) side by side as columns; send one matrix, or one input per column"
        raise BadRequest(message)
    return matrix


def data_frame(inputs: TensorDict, names: tuple[str, ...], model: str) -> Any:
    """A pandas DataFrame of the model's named columns (what a ColumnTransformer that selects columns by name
    needs, and what MLServer's `pd` content type builds): one input per column, by name, each keeping its own
    type; or one matrix in the model's column order."""
    import pandas as pd

    if len(inputs) == 1 and next(iter(inputs)) not in names:
        (matrix,) = inputs.values()
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise BadRequest(_shape_message(model, matrix.shape, len(names)))
        return pd.DataFrame(matrix, columns=list(names))
    columns = _named_columns(inputs, names, model)
    rows = {c.shape[0] if c.ndim else 1 for c in columns}
    if len(rows) != 1:
        raise BadRequest(f"inputs have different row counts {sorted(rows)}; cannot form one table")
    return pd.DataFrame({n: c.reshape(-1) for n, c in zip(names, columns, strict=True)})


def _named_columns(inputs: TensorDict, names: tuple[str, ...], model: str) -> list[np.ndarray]:
    """The inputs in the model's column order; a 400 naming the columns missing or unknown."""
    missing = [n for n in names if n not in inputs]
    unknown = [n for n in inputs if n not in names]
    if missing or unknown:
        said = [f"missing {', '.join(map(repr, missing))}" if missing else ""]
        said.append(f"unknown {', '.join(repr(n[:64]) for n in unknown[:8])}" if unknown else "")
        raise BadRequest(
            f"model {model!r} was trained on the named columns {', '.join(names)}: send one input per "
            f"column, by name (any order), or one matrix in that order; {'; '.join(s for s in said if s)}"
        )
    wide = [n for n in names if inputs[n].ndim > 1 and inputs[n].size != inputs[n].shape[0]]
    if wide:
        raise BadRequest(f"input {wide[0]!r} is a column of model {model!r}: one value per row, not several")
    return [inputs[n] for n in names]


def column_names(model: Any) -> tuple[str, ...]:
    """The named columns a scikit-learn estimator or XGBoost model was trained on (a DataFrame's), else ()."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        names = getattr(model, "feature_names", None)  # an XGBoost Booster's
    return tuple(str(n) for n in names) if names is not None and len(names) else ()


def requested_outputs(
    parameters: dict[str, Any] | None, methods: Mapping[str, object], default: tuple[str, ...]
) -> tuple[str, ...]:
    """The outputs of a request that names none: its `predict_proba` parameter (true/false) or the model's
    default. Another value is a 400, as the binary extension's flags are: it would silently mean the
    default."""
    flag = parameters.get("predict_proba") if parameters else None
    if flag is None:
        return default
    if flag is True:
        return (PROBABILITIES,) if PROBABILITIES in methods else default
    if flag is False:
        return (PREDICT,)
    raise BadRequest(f"parameter 'predict_proba' must be true or false; got {str(flag)[:64]!r}")


def _shape_message(model: str, shape: tuple[int, ...], features: int) -> str:
    said = f"model {model!r} expects" if model else "the model expects"
    message = f"{said} shape [rows, {features}] ({features} features per row); got shape {list(shape)}"
    if len(shape) == 1 and shape[0] % features == 0:
        message += "; send a list of rows (one list per row), not one flat list"
    return message
