"""A model that costs a fixed 5 ms per call, one call at a time per replica (`--runtime
loadtests.fixed_cost_model:FixedCostRuntime`): like a model that saturates its accelerator, its throughput
grows only with replicas — what the autoscaling benchmark and end-to-end test need. It sleeps rather than
burns CPU, so on a shared 2-core machine adding replicas still adds capacity."""

from __future__ import annotations

import threading
import time
from typing import Any

from serving.runtimes.base import ModelMetadata, Runtime
from serving.types import TensorDict

COST_S = 0.005


class FixedCostRuntime(Runtime):
    def load(self) -> None:
        self._busy = threading.Lock()

    def predict(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> TensorDict:
        with self._busy:
            time.sleep(COST_S)
        return dict(inputs)

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(platform="fixed-cost")
