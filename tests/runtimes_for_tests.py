"""Custom runtimes loaded by real servers as `--runtime tests.runtimes_for_tests:Class`.

They exercise the `module:Class` path with model folders that hold no artifact at all, and give the
protocol tests a model that returns exactly what it was sent (every datatype, every shape).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np
import orjson

from serving.runtimes.base import ModelMetadata, Runtime, select_outputs
from serving.types import TensorDict

RELEASE_FILE = "release"  # SlowLoadRuntime finishes loading once this file exists in its model folder
PARAMETERS_OUTPUT = "parameters"  # EchoRuntime can return the request parameters it received, as JSON


class EchoRuntime(Runtime):
    """Returns its inputs unchanged; asking for the output `parameters` returns the request parameters."""

    platform = "echo"

    def load(self) -> None:
        self.loaded = True

    def predict(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        available: dict[str, object] = {**inputs, PARAMETERS_OUTPUT: None}
        names = select_outputs(available, outputs, self.settings.name) or tuple(inputs)
        result = {name: inputs[name] for name in names if name in inputs}
        if PARAMETERS_OUTPUT in names:
            result[PARAMETERS_OUTPUT] = np.array([orjson.dumps(parameters)], dtype=object)
        return result

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(platform=self.platform)


class FailingRuntime(Runtime):
    """Loads fine; every prediction raises, unless the request sets the parameter `fail` to false."""

    platform = "failing"

    def load(self) -> None:
        pass

    def predict(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        if parameters.get("fail", True):
            raise RuntimeError("the model exploded on purpose")
        return dict(inputs)


class SlowLoadRuntime(EchoRuntime):
    """An echo model whose `load()` only returns once the test creates `RELEASE_FILE` (polled)."""

    def load(self) -> None:
        release = self.settings.model_dir / RELEASE_FILE
        deadline = time.monotonic() + 60
        while not release.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{release} never appeared")
            time.sleep(0.02)
        super().load()


class FirstLoadsRuntime(SlowLoadRuntime):
    """An echo model that one process loads at once; in every other process (`--workers`) `load()` touches
    `loading-<pid>` and only returns once the test creates `RELEASE_FILE`."""

    def load(self) -> None:
        folder = self.settings.model_dir
        try:
            (folder / "first").open("x").close()
        except FileExistsError:
            (folder / f"loading-{os.getpid()}").touch()
            super().load()
        else:
            EchoRuntime.load(self)


class BrokenLoadRuntime(Runtime):
    """Fails to load, so the model stays not ready with a reason."""

    def load(self) -> None:
        raise RuntimeError("weights are corrupt")


class PidRuntime(Runtime):
    """Answers with the id of the process that served the request (tells `--workers` processes apart)."""

    def load(self) -> None:
        self.pid = os.getpid()

    def predict(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        return {"pid": np.array([self.pid], dtype=np.int64)}


class SlowPredictRuntime(EchoRuntime):
    """An echo model that takes 0.6 s per call (a canary whose p99 breaks a 500 ms limit)."""

    def predict(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        time.sleep(0.6)
        return super().predict(inputs, outputs, parameters)


class WideRuntime(Runtime):
    """A custom runtime that ignores `outputs` (as a user's often does): returns `y` and `z` always."""

    platform = "wide"

    def load(self) -> None:
        self.loaded = True

    def predict(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        x = next(iter(inputs.values()))
        return {"y": x + 1, "z": x * 2}


class VersionedRuntime(Runtime):
    """Answers `version`: for each row of its one input, the integer its folder's `version` file held when it
    loaded (anything else there fails the load). The request parameter `hold` keeps a call in flight: it
    touches `held-<version>`, then waits for the file `go`. `unload()` touches `released-<version>`."""

    platform = "versioned"

    def load(self) -> None:
        self.version = int((self.settings.model_dir / "version").read_text())

    def predict(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        folder = self.settings.model_dir
        if parameters.get("hold"):
            (folder / f"held-{self.version}").touch()
            deadline = time.monotonic() + 60
            while not (folder / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        rows = next(iter(inputs.values())).shape[0]
        return {"version": np.full(rows, self.version, dtype=np.int64)}

    def unload(self) -> None:
        (self.settings.model_dir / f"released-{self.version}").touch()


class ContentTypes(Runtime):
    """Answers, per input, the Python type of its first value and that value as text (what MLServer's per-input
    content types decode BYTES into)."""

    platform = "content-types"

    def load(self) -> None:
        pass

    def predict(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> TensorDict:
        answer = {}
        for name, array in inputs.items():
            first = array.ravel()[0]
            answer[name] = np.array([type(first).__name__, str(first)], dtype=object)
        return answer


HOG_FILE = "hog"  # LoopHogRuntime holds its event loop (burning CPU) on the next call while this file exists


class LoopHogRuntime(Runtime):
    """While HOG_FILE is in its model folder, removes it and burns CPU for the seconds the input gives, keeping
    the GIL (the event loop of its process cannot run meanwhile): a replica whose health checks go unanswered
    because it works, as one decoding a very large body does. Answers its process id."""

    platform = "loop-hog"

    def load(self) -> None:
        self.folder = self.settings.model_dir

    def predict(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        hog = os.path.join(str(self.folder), HOG_FILE)
        if os.path.exists(hog):
            os.remove(hog)
            seconds = float(next(iter(inputs.values())).ravel()[0])
            before = sys.getswitchinterval()
            sys.setswitchinterval(seconds + 1)  # this thread keeps the GIL: the event loop cannot run
            try:
                until = time.monotonic() + seconds
                while time.monotonic() < until:
                    pass
            finally:
                sys.setswitchinterval(before)
        return {"output-0": np.array([[os.getpid()]])}

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(platform=self.platform)
