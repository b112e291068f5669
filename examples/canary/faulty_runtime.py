"""A scikit-learn runtime that misbehaves on purpose, for canary demos: it serves the model in its folder,
but fails a share of the calls (env FAULT_RATE, 0..1, default 1) and/or answers late (env FAULT_DELAY_MS).

Used as `runtime: examples.canary.faulty_runtime:FaultyRuntime` by `sklearn-iris-bad.yaml` (importable because
`serving up` runs from the repository root; its model processes start there too).
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from serving.runtimes.sklearn import SKLearnRuntime
from serving.types import TensorDict


class FaultyRuntime(SKLearnRuntime):
    def load(self) -> None:
        super().load()
        self.fault_rate = float(os.environ.get("FAULT_RATE", "1"))
        self.delay_s = float(os.environ.get("FAULT_DELAY_MS", "0")) / 1000

    def runs_inline(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> bool:
        return False  # it sleeps: never on the event loop

    def predict(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> TensorDict:
        if self.delay_s:
            time.sleep(self.delay_s)
        if random.random() < self.fault_rate:
            raise RuntimeError("the canary model failed on purpose (FAULT_RATE)")
        return super().predict(inputs, outputs, parameters)
