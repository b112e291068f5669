"""The runtime contract: `load()`, `predict(TensorDict) -> TensorDict`, `metadata()`."""

from __future__ import annotations

from dataclasses import dataclass, field

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

    def predict(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        raise NotImplementedError

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(platform=self.platform)

    def runs_inline(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> bool:
        """True only for a call that is pure bounded numpy work too small to be worth a thread hop (which
        costs the event loop ~100 µs): it cannot hang or block for long. The default: never."""
        return False

    def unload(self) -> None:
        """Release resources; the default just drops references."""


def select_outputs(available: dict[str, object], wanted: tuple[str, ...] | None, model: str) -> tuple[str, ...]:
    """Validate a request's `outputs` selection against what the model can produce."""
    if wanted is None:
        return ()
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise BadRequest(f"model {model!r} has no output {unknown[0]!r}; it has {', '.join(available)}")
    return wanted


def feature_matrix(inputs: TensorDict) -> np.ndarray:
    """One 2-D matrix from the request: a single tensor as is, several as feature columns in order."""
    arrays = list(inputs.values())
    if len(arrays) == 1:
        return arrays[0]
    rows = {a.shape[0] if a.ndim else 1 for a in arrays}
    if len(rows) != 1:
        raise BadRequest(f"inputs have different row counts {sorted(rows)}; cannot form one feature matrix")
    return np.column_stack([a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1) for a in arrays])
