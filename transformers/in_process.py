"""A transformer and its predictor in one process: the tensors are handed over, no HTTP hop and no JSON between.

Opt-in, per InferenceService: `serving.dev/placement: in-process` on `spec.transformer.annotations` (or
`serving serve --with-transformer "transform ..."` by hand). The predictor keeps its own data plane (readiness,
limits, batching, metrics under the model name `<name>-predictor`); the transformer calls it as it would call
a remote predictor, and sees what the remote call would have given it: with V1, one output comes back as
`predictions`, several as one tensor each; with V2, the outputs under their own names. The tensors keep the
dtypes the predictor produced (a JSON round trip would have widened them to float64 / int64).

The price: pre/post-processing shares the predictor's process and cores, and both scale as one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from serving.dataplane import DataPlane
from serving.errors import BadRequest
from serving.repository import ModelState
from serving.settings import Limits
from serving.transformers.predictor_client import PredictorRefused
from serving.types import InferRequest, RequestedOutput, TensorDict

PREDICTOR_SUFFIX = "-predictor"


class InProcessPredictor:
    """The transformer's predictor, in this process: the `PredictorClient` interface over a local data plane."""

    url = "in-process"

    def __init__(self, dataplane: DataPlane, model: str, protocol: str = "v1") -> None:
        self.dataplane = dataplane
        self.model = model
        self.protocol = protocol

    async def start(self) -> None:
        """Load the predictor's model (a failure leaves it unavailable with its reason, as `ready` reports)."""
        await self.dataplane.repository.load_all()

    async def infer(
        self,
        inputs: TensorDict,
        parameters: dict[str, Any] | None = None,
        outputs: tuple[str, ...] | None = None,
    ) -> TensorDict:
        """As PredictorClient.infer: parameters and outputs reach a V2 predictor only (V1 carries neither)."""
        v2 = self.protocol != "v1"
        request = InferRequest(
            inputs=inputs,
            parameters=(parameters or {}) if v2 else {},
            outputs=[RequestedOutput(name) for name in outputs] if v2 and outputs else None,
        )
        answer = await self.dataplane.infer_tensors(self.model, request)
        if self.protocol == "v1" and len(answer) == 1:
            (array,) = answer.values()
            return {"predictions": array if array.ndim else array.reshape(1)}
        return answer

    async def ready(self) -> tuple[bool, str]:
        """(ready, why not); PredictorRefused once the model's load has failed (waiting will not help)."""
        model = self.dataplane.repository.get(self.model)
        if model.state is ModelState.READY:
            return True, ""
        if model.state is ModelState.UNAVAILABLE and model.reason and model.reason != "unloaded":
            raise PredictorRefused(model.reason)
        return False, model.reason or f"predictor {self.model!r} is {model.state.value.lower()}"

    def close(self) -> None:
        self.dataplane.close()


def transformer_dataplane(predictor: DataPlane, argv: list[str], limits: Limits, name: str) -> DataPlane:
    """The public data plane of `serve --with-transformer "transform ..."`: the transformer, calling `predictor`
    (whose one model is `<name>-predictor`) in this process; metrics on the predictor's registry."""
    from serving.commands.transform import batching_from_args, config_from_args, parse_in_process
    from serving.transformers.server import transformer_repository

    argv = argv[1:] if argv[:1] == ["serving"] else argv
    if argv[:1] != ["transform"]:
        raise BadRequest(
            f"--with-transformer: expected `transform` and its flags (as `serving transform` takes them), "
            f"got {' '.join(argv)!r}"
        )
    if not any(a.startswith(("--model-name", "--model_name")) for a in argv):
        argv = [*argv, "--model-name", name]
    args = parse_in_process(argv)
    (model,) = predictor.repository.names()
    local = InProcessPredictor(predictor, model, args.protocol)
    config = config_from_args(args, local)
    repository = transformer_repository(args.model_name, args.transformer, config, batching_from_args(args))
    if args.max_concurrency > 0:  # the transformer's own limit, over the predictor's
        limits = dataclasses.replace(limits, max_concurrency=args.max_concurrency)
    return DataPlane(repository, limits, predictor.metrics)
