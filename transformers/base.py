"""The Transformer: a runtime whose "model" is the predictor of the same revision.

It plugs into the one data plane like any runtime (same app, endpoints, errors, metrics), but it is async
by nature: the data plane awaits `apredict` on the event loop instead of using a worker thread, so a
transformer waiting on its predictor holds no thread.

Subclass it and override `preprocess` (client tensors -> predictor tensors) and/or `postprocess`
(predictor tensors -> client tensors). Either may be a plain method (kept cheap: it runs on the event
loop) or `async def` (offload heavy work with `asyncio.to_thread`). Settings come from `serving transform`
flags through `self.config`; free-form `--param KEY=VALUE` pairs are in `self.config.params`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from serving.errors import ModelFailure, ServingError, user_code_error
from serving.observability import tracing
from serving.runtimes.base import ModelMetadata, Runtime, select_outputs
from serving.settings import ModelSettings
from serving.transformers.in_process import InProcessPredictor
from serving.transformers.predictor_client import PredictorClient
from serving.types import TensorDict

CONFIG_KEY = "transformer"  # ModelSettings.extra[CONFIG_KEY] holds a TransformerConfig
_ENCODING_PARAMETERS = frozenset({"binary_data_output", "binary_data", "binary_data_size"})


@dataclass(frozen=True, slots=True)
class TransformerConfig:
    """Where the predictor is and how to talk to it, plus the ready-made transformers' settings."""

    predictor_url: str
    predictor_model: str
    protocol: str = "v1"
    timeout_s: float = 60.0
    retries: int = 0  # a predictor call that could not connect is tried again this many times (KServe's)
    input_name: str = "input-0"  # name of the tensor sent to the predictor (V2)
    feature_names: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    params: dict[str, str] = field(default_factory=dict)
    in_process: InProcessPredictor | None = None  # the predictor in this process, called without HTTP


class Transformer(Runtime):
    """Identity by default: forwards the client's tensors and returns the predictor's."""

    platform = "transformer"

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__(settings)
        config = settings.extra.get(CONFIG_KEY)
        if not isinstance(config, TransformerConfig):
            raise ValueError(
                f"{type(self).__name__} needs settings.extra[{CONFIG_KEY!r}] (a TransformerConfig)"
            )
        self.config = config
        self.predictor: PredictorClient | InProcessPredictor | None = None

    def load(self) -> None:
        """Validate settings; the client itself is made on the event loop (`start`)."""

    async def start(self) -> None:
        """Called on the server's event loop once loaded: makes the pooled client (connections bind to it),
        or loads the predictor of this process."""
        c = self.config
        if c.in_process is not None:
            self.predictor = c.in_process
            await c.in_process.start()
            return
        self.predictor = PredictorClient(
            c.predictor_url, c.predictor_model, c.protocol, c.timeout_s, retries=c.retries
        )

    def preprocess(self, inputs: TensorDict, parameters: dict[str, Any]) -> TensorDict:
        return inputs

    def postprocess(self, outputs: TensorDict, parameters: dict[str, Any]) -> TensorDict:
        return outputs

    def predictor_parameters(self, parameters: dict[str, Any]) -> dict[str, Any] | None:
        """Request parameters forwarded to a V2 predictor: the client's, as KServe's transformer forwards its
        request, less the binary-extension flags (this hop's encoding is the transformer's own choice)."""
        forwarded = {k: v for k, v in parameters.items() if k not in _ENCODING_PARAMETERS}
        return forwarded or None

    def predictor_outputs(self, outputs: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """Outputs asked of a V2 predictor: the client's when `postprocess` is the identity (the predictor's
        outputs are then the answer, so its own defaults and names apply); else its defaults."""
        return outputs if type(self).postprocess is Transformer.postprocess else None

    async def apredict(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> TensorDict:
        predictor = self.predictor
        if predictor is None:
            raise ModelFailure(f"transformer {self.settings.name!r} is not started")
        # What the user's code raises is mapped by `user_code_error` (input-shaped: the caller's 400, else 500),
        # with no context manager or subject text per request (as dataplane.call_runtime does for models).
        with tracing.span("transformer.preprocess"):
            try:
                request = await _call(self.preprocess, inputs, parameters)
            except Exception as exc:
                blamed = self._blamed(exc, "preprocess")
                if blamed is exc:
                    raise
                raise blamed from exc
        # OpenTelemetry's HTTP client span: named by its method, with the server's address and the answer's status
        with tracing.span("POST", getattr(predictor, "span_attributes", None), client=True):
            try:
                response = await predictor.infer(
                    request, self.predictor_parameters(parameters), self.predictor_outputs(outputs)
                )
            except ServingError as exc:
                tracing.set_http_status(exc.status_code, client=True)
                raise
            tracing.set_http_status(200, client=True)
        with tracing.span("transformer.postprocess"):
            try:
                result = await _call(self.postprocess, response, parameters)
            except Exception as exc:
                blamed = self._blamed(exc, "postprocess", input_errors=False)
                if blamed is exc:
                    raise
                raise blamed from exc
        wanted = select_outputs(result, outputs, self.settings.name)
        return {name: result[name] for name in wanted} if wanted else result

    def _blamed(self, exc: Exception, stage: str, *, input_errors: bool = True) -> Exception:
        return user_code_error(exc, f"transformer {self.settings.name!r}", stage, input_errors=input_errors)

    async def ready(self) -> tuple[bool, str]:
        """Ready exactly when the predictor's model answers ready."""
        if self.predictor is None:
            return False, "not started"
        return await self.predictor.ready()

    async def aclose(self) -> None:
        if self.predictor is not None:
            self.predictor.close()

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(platform=self.platform)


async def _call(method: Any, tensors: TensorDict, parameters: dict[str, Any]) -> TensorDict:
    result = method(tensors, parameters)
    if type(result) is dict:  # a plain method's answer: nothing to await or check (the usual case)
        return result
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, dict):
        raise ModelFailure(f"{method.__qualname__} returned {type(result).__name__}, not a dict of tensors")
    return result
