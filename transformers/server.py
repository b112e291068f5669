"""The transformer process: the model server's own app and data plane, serving one Transformer.

The only difference from `serving serve` is readiness: the transformer's model is ready exactly while
its predictor's model answers ready, re-checked every `PROBE_INTERVAL_S`, so `/v2/health/ready`, V1
status and V2 model readiness all follow the predictor, and requests fail fast with 503 while it is down.
Meanwhile its state says which kind of wait it is (repository index): LOADING while the predictor may yet
come (starting, loading, restarting), UNAVAILABLE with the reason once it answers that it will not serve the
model (`PredictorRefused`: no such model, or its load failed) -- the reason `serving up` puts in the status.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

from starlette.types import ASGIApp

from serving.dataplane import DataPlane
from serving.errors import ArtifactError
from serving.http.app import build_app
from serving.http.launcher import run_http_server
from serving.metrics import Metrics
from serving.observability.hook import observe
from serving.observability.options import ObservabilityOptions
from serving.plugins import load_class
from serving.repository import Model, ModelRepository, ModelState
from serving.settings import Limits, ModelSettings
from serving.transformers.base import CONFIG_KEY, Transformer, TransformerConfig
from serving.transformers.predictor_client import PredictorRefused

log = logging.getLogger("serving.transformers")

PROBE_INTERVAL_S = 0.5
Batching = tuple[int, float]  # rows per batch (0: off), longest wait for a batch in seconds
TRANSFORMERS: dict[str, str] = {
    "identity": "serving.transformers.base:Transformer",
    "records": "serving.transformers.tabular:FeatureRecords",
    "labels": "serving.transformers.tabular:ClassLabels",
    "tabular": "serving.transformers.tabular:TabularTransformer",
}


def transformer_path(name: str) -> str:
    """A short name or `module:Class` -> `module:Class`, checked to be a Transformer subclass."""
    target = TRANSFORMERS.get(name, name)
    if ":" not in target:
        raise ArtifactError(
            f"unknown transformer {name!r}; use one of {', '.join(TRANSFORMERS)} or 'module:Class'"
        )
    load_class(target, Transformer, "transformer")
    return target


class TransformerRepository(ModelRepository):
    """One transformer model, kept unavailable while its predictor is not ready."""

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__([settings])
        self.model = self.get(settings.name)
        self.predictor_ready = False
        self.waiting_state, self.waiting_reason = ModelState.LOADING, "waiting for the predictor"

    def _changed(self, model: Model) -> None:
        # Loading the transformer class is not enough: it is READY only once the predictor is.
        if model.state is ModelState.READY and not self.predictor_ready:
            model.state, model.reason = self.waiting_state, self.waiting_reason
        super()._changed(model)

    async def load(self, name: str, requested: bool = False) -> Model:
        """Loaded once: a repository `load` call while the predictor is down must not replace the runtime."""
        model = self.get(name)
        return model if model.runtime is not None else await super().load(name, requested)

    async def load_all(self) -> None:
        """Load, then follow the predictor's readiness until the server shuts down (cancelled)."""
        await super().load_all()
        runtime = self.model.runtime
        if not isinstance(runtime, Transformer):
            return  # failed to load: stays unavailable with its reason
        await runtime.start()
        try:
            while True:
                try:
                    ready, why = await runtime.ready()
                    waiting = ModelState.LOADING
                except PredictorRefused as exc:
                    ready, why, waiting = False, exc.message, ModelState.UNAVAILABLE
                self._follow(runtime, ready, why, waiting)
                await asyncio.sleep(PROBE_INTERVAL_S)
        finally:
            await runtime.aclose()

    def _follow(
        self, runtime: Transformer, ready: bool, why: str, waiting: ModelState = ModelState.LOADING
    ) -> None:
        if ready == self.predictor_ready and (
            ready or (why, waiting) == (self.model.reason, self.model.state)
        ):
            return
        self.predictor_ready, self.waiting_state, self.waiting_reason = ready, waiting, why
        model = self.model
        if model.runtime is not runtime:
            return  # unloaded through the repository API meanwhile
        if ready:
            model.state, model.reason = ModelState.READY, ""
            log.info("predictor of %s is ready", model.name)
        else:
            model.state, model.reason = waiting, why
            log.warning("transformer %s not ready: %s", model.name, why)
        self._changed(model)


def transformer_repository(
    name: str, transformer: str, config: TransformerConfig, batching: Batching | None = None
) -> TransformerRepository:
    """`batching`: (rows per batch, longest wait in seconds) of KServe's batcher in front of the transformer."""
    settings = ModelSettings(
        name=name, model_dir=Path.cwd(), runtime=transformer_path(transformer), extra={CONFIG_KEY: config}
    )
    if batching is not None:
        settings = replace(settings, max_batch_size=batching[0], max_latency_s=batching[1])
    return TransformerRepository(settings)


def create_app(
    name: str,
    transformer: str,
    config: TransformerConfig,
    limits: Limits | None = None,
    observability: ObservabilityOptions | None = None,
    batching: Batching | None = None,
) -> ASGIApp:
    repository = transformer_repository(name, transformer, config, batching)
    dataplane = DataPlane(repository, limits or Limits(), Metrics())
    options = observability or ObservabilityOptions(component="transformer")
    return observe(build_app(dataplane), options, dataplane.metrics.registry)  # the one observability hook


def run(
    app: ASGIApp, host: str, port: int, log_level: str = "warning", max_header_bytes: int | None = None
) -> None:
    run_http_server(
        app, host, port, log_level=log_level, max_header_bytes=max_header_bytes or Limits().max_header_bytes
    )
