"""Custom runtimes for the bad-input, limits and logging tests (`--runtime tests.runtimes_bad_input:Class`).

Hand-shakes with the tests go through files in the model folder (polled, never slept for), so a test knows
when a request is inside the model without guessing.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from serving.runtimes.base import ModelMetadata, Runtime
from serving.types import TensorDict

STARTED_FILE = "started"  # GatedRuntime creates it when a request reaches predict()
RELEASE_FILE = "release"  # ... and returns once the test creates this one
MAX_WAIT_S = 30.0


class GatedRuntime(Runtime):
    """Echo; with parameter `gate: true` it blocks inside predict() until the test releases it.

    With `sleep_s` it sleeps that long first (the request-timeout test).
    """

    platform = "gated"

    def load(self) -> None:
        pass

    def predict(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        if parameters.get("gate"):
            (self.settings.model_dir / STARTED_FILE).touch()
            release = self.settings.model_dir / RELEASE_FILE
            deadline = time.monotonic() + MAX_WAIT_S
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        sleep_s = parameters.get("sleep_s")
        if isinstance(sleep_s, (int, float)):
            time.sleep(min(float(sleep_s), MAX_WAIT_S))
        return dict(inputs)

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(platform=self.platform)


class _Unserialisable(dict):
    """What a buggy runtime might return: a mapping that blows up, quoting the data, when encoded."""

    def items(self) -> Any:  # type: ignore[override]
        raise RuntimeError(f"cannot encode {[a.tolist() for a in self.values()]!r}")


class LeakyRuntime(Runtime):
    """Raises an error quoting the request's data from inside the model, or (parameter `where: encode`)
    returns outputs whose encoding fails with the data in the message: neither may reach the server log."""

    platform = "leaky"

    def load(self) -> None:
        pass

    def predict(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        if parameters.get("where") == "encode":
            return _Unserialisable(inputs)
        raise RuntimeError(f"model failed on {[a.tolist() for a in inputs.values()]!r}")


class WrongAnswerRuntime(Runtime):
    """Returns what the request's parameter `answer` names instead of a dict of arrays (MLServer users port
    `predict` methods that return lists or nothing)."""

    platform = "wrong-answer"

    def load(self) -> None:
        pass

    def predict(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> TensorDict:
        answers: dict[str, Any] = {
            "list": {"y": [1, 2, 3]},
            "none": None,
            "none-output": {"y": None},
            "list-of-arrays": [next(iter(inputs.values()))],
            "datetime": {"y": np.array(["2022-01-11T11:00:00"], dtype="datetime64[s]")},
            "objects": {"y": np.array([None, 1, {"a": 1}, b"x", "z"], dtype=object)},
        }
        return answers[str(parameters.get("answer"))]  # type: ignore[no-any-return]

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(platform=self.platform, inputs=(), outputs=())
