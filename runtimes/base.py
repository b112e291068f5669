"""The runtime contract: `load()`, `predict(TensorDict) -> TensorDict`, `metadata()`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.errors import BadRequest
from serving.settings import ModelSettings
from serving.types import TensorDict, TensorSpec


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
    available: Mapping[str, object], wanted: tuple[str, ...] | None, model: str
) -> tuple[str, ...]:
    """Validate a request's `outputs` selection against what the model can produce."""
    if wanted is None:
        return ()
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise BadRequest(f"model {model!r} has no output {unknown[0]!r}; it has {', '.join(available)}")
    return wanted


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


def feature_matrix(inputs: TensorDict, features: int = -1, model: str = "") -> np.ndarray:
    """One 2-D matrix from the request: a single tensor as is, several as feature columns in order.

    With the model's trained width (`features` > 0) the shape is checked here, so the caller reads what was
    expected and what came instead of a library's message (XGBoost's carries a native trace and paths)."""
    arrays = list(inputs.values())
    if len(arrays) == 1:
        matrix = arrays[0]
    else:
        rows = {a.shape[0] if a.ndim else 1 for a in arrays}
        if len(rows) != 1:
            raise BadRequest(
                f"inputs have different row counts {sorted(rows)}; cannot form one feature matrix"
            )
        matrix = np.column_stack([a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1) for a in arrays])
    if features > 0 and (matrix.ndim != 2 or matrix.shape[1] != features):
        raise BadRequest(_shape_message(model, matrix.shape, features))
    return matrix


def _shape_message(model: str, shape: tuple[int, ...], features: int) -> str:
    said = f"model {model!r} expects" if model else "the model expects"
    message = f"{said} shape [rows, {features}] ({features} features per row); got shape {list(shape)}"
    if len(shape) == 1 and shape[0] % features == 0:
        message += "; send a list of rows (one list per row), not one flat list"
    return message
