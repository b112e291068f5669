"""The one data plane under V1 and V2: find the model, check readiness, run it, time and count it."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from serving.admission import Admission
from serving.batching import Batcher
from serving.client_gone import Connection, unless_client_leaves
from serving.concurrency import ModelSlots
from serving.deadlines import Deadlines
from serving.errors import (
    BadRequest,
    ClientGone,
    GatewayTimeout,
    ModelFailure,
    ModelNotReady,
    ServingError,
    user_code_error,
)
from serving.metrics import Metrics, ModelMetrics
from serving.observability import tracing
from serving.protocol.classification import class_count, top_classes
from serving.protocol.codec import Codec
from serving.repository import Model, ModelRepository
from serving.settings import Limits
from serving.types import InferRequest, InferResponse, TensorDict


class DataPlane:
    def __init__(
        self, repository: ModelRepository, limits: Limits | None = None, metrics: Metrics | None = None
    ) -> None:
        self.repository = repository
        self.limits = limits or Limits()
        self.metrics = metrics or Metrics()
        threads = max(4, (os.cpu_count() or 1) * 2)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="predict")
        self._admission = Admission(self.limits.max_queue, self.limits.max_queue_wait_s, threads)
        self._slots = ModelSlots(self.limits.max_concurrency)
        self._batchers: dict[str, tuple[Model, Batcher]] = {}  # by name: the model it runs, its batcher
        self._deadlines = Deadlines(self.limits.request_timeout_s)
        repository.on_change.append(self.metrics.model_state_changed)
        repository.on_change.append(self._model_changed)

    async def infer(
        self,
        name: str,
        version: str | None,
        body: bytes,
        headers: Mapping[str, str],
        codec: Codec,
        client_gone: Callable[[], Awaitable[object]] | None = None,
        connection: Connection | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """Decode, run and encode one request; every outcome is counted once with its status code.
        `client_gone` resolves when the client hangs up: a request still queued for a slot then leaves.
        `connection` closed once the model has answered (or failed): the client left, 499, nothing delivered."""
        started = time.monotonic()
        code = 500
        bound: ModelMetrics | None = None
        held: Model | None = None  # a reload releases a model's runtime only once no request holds it
        try:
            model = self.repository.get(name, version)  # ModelNotFound: counted under a fixed label
            bound = self.metrics.model(model.name, model.settings.version)
            held = model = self.repository.ready_model(name, version)
            model.enter()
            with tracing.span("decode"):
                request = codec.decode(body, headers, self.limits)
            request.client_gone = client_gone
            decoded = time.monotonic()
            bound.preprocess.observe(decoded - started)
            attributes = (
                {"serving.model": model.name, "serving.model_version": model.settings.version}
                if tracing.enabled()
                else None
            )
            with tracing.span("predict", attributes):
                outputs = requested(await self._admit_and_run(model, request, bound), request, model.name)
            if connection is not None and connection.is_closing():
                raise ClientGone(f"the client left before model {model.name!r} answered")
            predicted = time.monotonic()
            bound.predict.observe(predicted - decoded)
            response = InferResponse(
                model_name=name, model_version=model.settings.version, outputs=outputs, id=request.id
            )
            with tracing.span("encode"):
                encoded = codec.encode(response, request)
            code = 200
            bound.postprocess.observe(time.monotonic() - predicted)
            return encoded
        except ServingError as exc:
            code = exc.status_code
            if code != 499 and connection is not None and connection.is_closing():
                code = 499
                raise ClientGone(
                    f"the client left before its answer ({exc.status_code}: {exc.message})"
                ) from exc
            raise
        except asyncio.CancelledError:  # a gRPC client that cancelled, or whose deadline passed: it left
            code = 499
            raise
        finally:
            if held is not None:
                held.leave()
            if bound is None:
                self.metrics.unknown_model(codec.protocol, code, time.monotonic() - started)
            else:
                bound.request(codec.protocol, code, time.monotonic() - started)

    def refuse_unknown(self, name: str, version: str | None, codec: Codec) -> None:
        """Raise ModelNotFound, counted as `infer` counts it, for a model no request could reach: asked
        before a body that waits for `100 Continue` is read, so that a wrong name never uploads it."""
        started = time.monotonic()
        try:
            self.repository.get(name, version)
        except ServingError as exc:
            self.metrics.unknown_model(codec.protocol, exc.status_code, time.monotonic() - started)
            raise

    async def infer_tensors(
        self, name: str, request: InferRequest, protocol: str = "in-process"
    ) -> TensorDict:
        """Run one already-decoded request (a transformer in this process calling its predictor): the same
        readiness, limits, batching and metrics as `infer`, without a codec."""
        started = time.monotonic()
        code = 500
        bound: ModelMetrics | None = None
        held: Model | None = None
        try:
            model = self.repository.get(name)
            bound = self.metrics.model(model.name, model.settings.version)
            held = model = self.repository.ready_model(name)
            model.enter()
            outputs = requested(await self._admit_and_run(model, request, bound), request, model.name)
            bound.predict.observe(time.monotonic() - started)
            code = 200
            return outputs
        except ServingError as exc:
            code = exc.status_code
            raise
        finally:
            if held is not None:
                held.leave()
            if bound is None:
                self.metrics.unknown_model(protocol, code, time.monotonic() - started)
            else:
                bound.request(protocol, code, time.monotonic() - started)

    async def _admit_and_run(self, model: Model, request: InferRequest, bound: ModelMetrics) -> TensorDict:
        name = model.name
        slots = self._slots
        deadline = None
        if not slots.try_take(name):  # over --max-concurrency: queued, within the request's deadline
            deadline = self._deadlines.start()
            bound.waiting.inc()
            try:
                waiter = None
                try:
                    # queued now (a slot freed from here on reaches it); a client that hangs up meanwhile
                    # leaves the queue, its request never runs
                    waiter = slots.join(name)
                    await unless_client_leaves(
                        waiter,
                        request.client_gone,
                        f"the client left while its request waited for model {name!r}",
                    )
                except BaseException as exc:
                    if waiter is not None:
                        slots.leave(name, waiter)
                    self._deadlines.end(deadline, exc)  # a TimeoutError if the deadline cancelled the wait
                    raise
                finally:
                    bound.waiting.dec()
            except ClientGone:
                raise
            except (TimeoutError, ServingError) as exc:
                self.metrics.rejected("timeout" if isinstance(exc, TimeoutError) else "concurrency")
                if isinstance(exc, ServingError):
                    raise
                raise GatewayTimeout(
                    f"model {name!r} did not get one of its {slots.limit} slots within "
                    f"{self.limits.request_timeout_s:g}s"
                ) from None
        bound.in_flight.inc()
        try:
            if deadline is None and self._runs_inline(
                model, request
            ):  # synchronous: a timeout could not interrupt it, so none is armed
                return self._call_inline(model, request, bound)
            if deadline is None:
                deadline = self._deadlines.start()  # asyncio.timeout's behaviour, one timer for all requests
            try:
                outputs = await self.run_model(model, request)
            except BaseException as exc:
                self._deadlines.end(deadline, exc)
                raise
            self._deadlines.end(deadline)
            return outputs
        except TimeoutError:
            self.metrics.rejected("timeout")
            raise GatewayTimeout(
                f"model {name!r} did not answer within {self.limits.request_timeout_s:g}s"
            ) from None
        finally:
            slots.release(name)
            bound.in_flight.dec()

    async def run_model(self, model: Model, request: InferRequest) -> TensorDict:
        """The model call, off the event loop; through the model's batcher when it has one."""
        batched = self._batchers.get(model.name)
        if batched is not None and batched[0] is model:  # else a copy replaced by a reload: runs unbatched
            return await batched[1].submit(request)
        started = time.monotonic()
        try:
            apredict = getattr(model.runtime, "apredict", None)
            if apredict is not None:  # async by nature (a transformer awaiting its predictor): no thread
                outputs: TensorDict = await apredict(request.inputs, request.output_names, request.parameters)
                return outputs
            return await self._in_thread(model, request)
        finally:
            self.metrics.model(model.name, model.settings.version).inference(time.monotonic() - started)

    def _runs_inline(self, model: Model, request: InferRequest) -> bool:
        """Calls the runtime vouches for as tiny bounded numpy work run right on the loop: a thread hop (and
        the timeout around it) would cost more than the call. Never for a batching or async model."""
        runtime = model.runtime
        return (
            runtime is not None
            and model.name not in self._batchers
            and getattr(runtime, "apredict", None) is None
            and runtime.runs_inline(request.inputs, request.output_names, request.parameters)
        )

    def _call_inline(self, model: Model, request: InferRequest, bound: ModelMetrics) -> TensorDict:
        started = time.monotonic()
        try:
            return call_runtime(model, request.inputs, request.output_names, request.parameters)
        finally:
            bound.inference(time.monotonic() - started)

    async def _in_thread(self, model: Model, request: InferRequest) -> TensorDict:
        """Admitted (or shed with 503) by the expected wait for a model thread, then run in one."""
        if self._runs_inline(model, request):  # run_model called directly (not through _admit_and_run)
            return call_runtime(model, request.inputs, request.output_names, request.parameters)
        admission = self._admission
        try:
            blind = admission.enter(model.name)
        except ServingError:
            self.metrics.rejected("overload")
            raise
        service_s = None
        job = self._pool.submit(timed_call, model, request.inputs, request.output_names, request.parameters)
        if blind:  # admitted with no service time known yet: shed from the queue if the first says so
            admission.waiting(model.name, job)
        try:
            outputs, service_s = await asyncio.wrap_future(job)
            return outputs
        except asyncio.CancelledError:
            if job not in admission.shed:
                raise
            admission.shed.discard(job)
            self.metrics.rejected("overload")
            raise admission.refusal(model.name) from None
        finally:
            admission.leave(model.name, service_s)

    def _model_changed(self, model: Model) -> None:
        """Repository callback: a batcher exists exactly while a batching model is ready. A reload (a new
        `Model` of the same name) gets a new batcher; the old one runs what it queued, on the old model."""
        settings = model.settings
        batched = self._batchers.get(model.name)
        if batched is not None and (batched[0] is not model or not model.ready):
            del self._batchers[model.name]
            if batched[0] is not model:
                batched[1].retire()
            else:
                batched[1].close()
            batched = None
        if model.ready and batched is None and settings.max_batch_size > 0:
            batcher = Batcher(
                model.name,
                functools.partial(call_runtime, model),
                self._pool,
                self.metrics.model(model.name, settings.version),
                max_batch_size=settings.max_batch_size,
                max_latency_s=settings.max_latency_s,
                max_batches_in_flight=settings.max_batches_in_flight,
                max_queue_size=settings.max_queue_size,
                acall=getattr(model.runtime, "apredict", None),  # a transformer: awaited on the loop
            )
            self._batchers[model.name] = (model, batcher)

    def close(self) -> None:
        for _, batcher in self._batchers.values():
            batcher.close()
        self._batchers.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)


def requested(outputs: TensorDict, request: InferRequest, model: str) -> TensorDict:
    """Only the outputs the request named, in its order: a runtime that returns more (a custom one may ignore
    `outputs`) must not widen the answer, and a named output it did not produce is the caller's 400."""
    if request.outputs is None:
        return outputs
    wanted = tuple(o.name for o in request.outputs)
    if tuple(outputs) != wanted:
        missing = [name for name in wanted if name not in outputs]
        if missing:
            raise BadRequest(
                f"model {model!r} has no output {missing[0]!r}; it produced {', '.join(outputs)}"
            )
        outputs = {name: outputs[name] for name in wanted}
    for output in request.outputs:
        if output.parameters:  # Triton's classification extension: the top K as "value:index"
            count = class_count(output)
            if count:
                array = outputs[output.name]
                rows = batch_rows(request.inputs)
                # one value per row of a batch (rows: a 2-D input) is labels; a 1-D input is one sample, and
                # its 1-D output the scores the extension's own example ranks
                if array.ndim == 1 and rows > 1 and array.shape[0] == rows and _batched(request.inputs):
                    raise BadRequest(
                        f"output {output.name!r} holds one value per row ({rows} rows), not a row's classes: "
                        "classification ranks the classes of an output of shape [batch, classes] (e.g. "
                        "'probabilities')"
                    )
                outputs[output.name] = top_classes(array, count, output.name)
    return outputs


def _batched(inputs: TensorDict) -> bool:
    first = next(iter(inputs.values()), None)
    return first is not None and first.ndim >= 2


def batch_rows(inputs: TensorDict) -> int:
    """Rows on axis 0 of the request's first input (1 for a scalar)."""
    first = next(iter(inputs.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


def timed_call(
    model: Model, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
) -> tuple[TensorDict, float]:
    """The model call plus how long it took in its thread (the admission's service-time estimate)."""
    started = time.monotonic()
    return call_runtime(model, inputs, outputs, parameters), time.monotonic() - started


def call_runtime(
    model: Model, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
) -> TensorDict:
    """Map what a model raises onto the error family: bad input is the caller's, the rest the model's."""
    runtime = model.runtime
    if runtime is None:
        raise ModelNotReady(f"model {model.name!r} was unloaded; retry")
    try:
        answer = runtime.predict(inputs, outputs, parameters)
    except Exception as exc:
        blamed = user_code_error(exc, f"model {model.name!r}")
        if blamed is exc:
            raise
        raise blamed from exc
    if type(answer) is dict:
        for value in answer.values():  # a loop, not all(<genexpr>): this runs on every request
            if type(value) is not np.ndarray:
                return checked_outputs(model.name, answer)
        return answer  # every built-in runtime: nothing to check further
    return checked_outputs(model.name, answer)


def checked_outputs(model: str, answer: Any) -> TensorDict:
    """A custom runtime's answer as the codecs take it (array-likes made arrays), or a 500 saying what it returned
    instead of an AttributeError deep in an encoder."""
    if not isinstance(answer, Mapping):
        raise ModelFailure(
            f"model {model!r} returned {type(answer).__name__}; a runtime's predict returns a dict of output "
            "name -> numpy array"
        )
    out: TensorDict = {}
    for name, value in answer.items():
        if not isinstance(name, str) or value is None:
            raise ModelFailure(
                f"model {model!r} returned {name!r}: {type(value).__name__}; a runtime's predict returns a dict "
                "of output name (str) -> numpy array"
            )
        try:
            out[name] = value if isinstance(value, np.ndarray) else np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise ModelFailure(f"model {model!r}: output {name!r} is not an array: {exc}") from exc
    return out
