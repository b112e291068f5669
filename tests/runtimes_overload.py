"""A model with a fixed service time (it sleeps, releasing the GIL like native code): its sustainable rate is
known, so a test can offer several times that rate."""

from __future__ import annotations

import time

from serving.runtimes.base import ModelMetadata, Runtime
from serving.types import TensorDict

SERVICE_S = 0.04


class FixedServiceTime(Runtime):
    platform = "fixed-service-time"

    def load(self) -> None:
        pass

    def predict(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        time.sleep(SERVICE_S)
        return dict(inputs)

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(platform=self.platform)


class NativeThreads(Runtime):
    """Answers how many threads the BLAS library in this process may use."""

    platform = "native-threads"

    def load(self) -> None:
        pass

    def predict(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        import numpy as np
        from threadpoolctl import threadpool_info

        blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        return {"threads": np.asarray(blas or [-1], dtype=np.int64)}
