"""Adaptive batching of decoded requests: one model call for many callers, each getting exactly its rows.

Why here (after the codec): V1, V2 JSON and V2 binary all arrive as `TensorDict`s, so one batcher serves
every protocol. Requests join a batch only when input names (in order), dtypes, trailing dimensions,
requested outputs and model parameters all match; the first mismatch closes the batch (first come, first
served), so nothing is ever merged wrongly. A request with more rows than `max_batch_size` (or one whose
inputs disagree on their row count) runs alone.

Adaptive: a collector task takes what is queued; it lingers for more (never past the oldest request's
`max_latency_s`) only while the queue keeps growing or another batch is already running, so an idle model
answers a lone request at once. Up to `max_batches_in_flight` batches run at the same time.

Failures: when a batch of several requests fails, each request is retried alone, so only the request
that breaks the model gets an error (with its own status); a model whose outputs do not have one row per
input row is caught the same way and keeps answering, unbatched.

A model that is async by nature (a transformer awaiting its predictor: `acall`) is batched the same way, its
batch awaited on the loop instead of run in a thread: KServe's batcher in front of a transformer.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from serving.errors import ModelFailure, ModelNotReady, ServiceUnavailable
from serving.observability import tracing
from serving.types import InferRequest, TensorDict

log = logging.getLogger("serving.batching")
ModelCall = Callable[[TensorDict, "tuple[str, ...] | None", dict[str, Any]], TensorDict]
AsyncModelCall = Callable[[TensorDict, "tuple[str, ...] | None", dict[str, Any]], Awaitable[TensorDict]]
ENCODING_PARAMETERS = frozenset({"binary_data_output"})  # change how the answer is written, not computed
QUIET_S = 0.001  # an idle model stops lingering once no request arrived for this long
PATIENT_QUIET_S = 0.005  # under load, the same pause is longer (callers are coming back) but still bounded


class BatchObserver(Protocol):
    """What the batcher reports (implemented by `serving.metrics.ModelMetrics`)."""

    def batch_formed(self, rows: int, waits_s: Sequence[float]) -> None: ...

    def inference(self, seconds: float) -> None: ...

    def queue_depth(self, depth: int) -> None: ...

    def rejected(self, reason: str) -> None: ...


def rows_of(inputs: TensorDict) -> int | None:
    """Rows on axis 0 shared by every input, or None when the request cannot be batched."""
    rows = -1
    for array in inputs.values():
        if array.ndim == 0 or (rows >= 0 and array.shape[0] != rows):
            return None
        rows = array.shape[0]
    return rows if rows > 0 else None


def batch_key(request: InferRequest) -> Hashable:
    """Requests with equal keys can share one model call."""
    tensors = tuple((name, a.dtype.str, a.shape[1:]) for name, a in request.inputs.items())
    params = request.parameters
    if params and not ENCODING_PARAMETERS.issuperset(params):
        kept = {k: v for k, v in params.items() if k not in ENCODING_PARAMETERS}
        return tensors, request.output_names, orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)
    return tensors, request.output_names, b""


def merge(parts: Sequence[TensorDict]) -> TensorDict:
    """Concatenate compatible requests on axis 0 (same names, dtypes and trailing dims)."""
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def split(outputs: TensorDict, rows: Sequence[int]) -> list[TensorDict]:
    """Cut a batch's outputs back into per-request outputs; every output needs the batch's row count."""
    total = sum(rows)
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            found = "a scalar" if array.ndim == 0 else f"{array.shape[0]} rows"
            raise ModelFailure(
                f"output {name!r} has {found} for a batch of {total} rows; it cannot be split per request"
            )
    offsets = np.cumsum(rows[:-1])
    pieces = {name: np.split(array, offsets) for name, array in outputs.items()}
    return [{name: parts[i] for name, parts in pieces.items()} for i in range(len(rows))]


@dataclass(slots=True, eq=False)
class _Pending:
    request: InferRequest
    rows: int
    key: Hashable | None  # None: runs alone
    future: asyncio.Future[TensorDict]
    enqueued_s: float
    started: bool = False
    batch_started_s: float = 0.0  # noted only while tracing: the span of this request's wait in the queue
    batch_rows: int = 0


@dataclass(slots=True, eq=False)
class _Batch:
    entries: list[_Pending] = field(default_factory=list)
    rows: int = 0
    closed: bool = False  # full, or the next queued request cannot join


class Batcher:
    """Queue, collector and batch runner for one model."""

    def __init__(
        self,
        name: str,
        call: ModelCall,
        executor: Executor,
        observer: BatchObserver,
        *,
        max_batch_size: int,
        max_latency_s: float,
        max_batches_in_flight: int = 1,
        max_queue_size: int = 1024,
        acall: AsyncModelCall | None = None,
    ) -> None:
        self.name = name
        self._acall = acall  # set: the model is awaited on the loop (`call` is then not used)
        self.max_batch_size = max(1, max_batch_size)
        self.max_latency_s = max(0.0, max_latency_s)
        self.max_queue_size = max(1, max_queue_size)
        self._call, self._executor, self._observer = call, executor, observer
        self._queue: collections.deque[_Pending] = collections.deque()
        self._waiting = 0  # queued, not cancelled, not started
        self._arrivals = 0
        self._running = 0
        self._free_since = 0.0  # when a batch last finished (monotonic)
        self._last_rows = 0  # rows of the last batch formed
        self.quiet_s = min(QUIET_S, self.max_latency_s)
        self.patient_quiet_s = min(PATIENT_QUIET_S, self.max_latency_s)
        self._slots = asyncio.Semaphore(max(1, max_batches_in_flight))
        self._wake = asyncio.Event()
        self._collector: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._retired = False  # takes no new requests; the collector ends once the queue is empty

    async def submit(self, request: InferRequest) -> TensorDict:
        """Queue one decoded request and wait for its own outputs (503 at once when the queue is full)."""
        if self._closed or self._retired:
            raise ModelNotReady(f"model {self.name!r} is being unloaded")
        if self._waiting >= self.max_queue_size:
            self._observer.rejected("queue_full")
            raise ServiceUnavailable(
                f"model {self.name!r}: batch queue is full ({self.max_queue_size} requests waiting)"
            )
        rows = rows_of(request.inputs)
        key = batch_key(request) if rows is not None and rows < self.max_batch_size else None
        loop = asyncio.get_running_loop()
        entry = _Pending(request, rows or 0, key, loop.create_future(), time.monotonic())
        self._queue.append(entry)
        self._waiting += 1
        self._arrivals += 1
        self._observer.queue_depth(self._waiting)
        if self._collector is None or self._collector.done():  # first use, or restart after a crash (logged)
            self._collector = loop.create_task(self._collect(), name=f"batcher-{self.name}")
            self._collector.add_done_callback(_log_crash)
        self._wake.set()
        try:
            outputs = await entry.future
        except asyncio.CancelledError:  # deadline or client gone: leave the queue if not started yet
            if not entry.started:
                self._waiting -= 1
                self._observer.queue_depth(self._waiting)
            raise
        if entry.batch_rows:
            tracing.record(
                "batch.queue_wait",
                entry.enqueued_s,
                entry.batch_started_s,
                {"serving.batch_size": entry.batch_rows, "serving.rows": entry.rows},
            )
        return outputs

    async def _collect(self) -> None:
        while True:
            while not self._queue:
                if self._retired:
                    return
                self._wake.clear()
                await self._wake.wait()
            await self._slots.acquire()
            batch = _Batch()
            self._take(batch)
            if batch.entries:
                try:
                    await self._linger(batch)
                except asyncio.CancelledError:  # closed while lingering: these requests never ran
                    self._fail(batch.entries)
                    raise
                self._running += 1
                task = asyncio.get_running_loop().create_task(self._run(batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._slots.release()

    def _take(self, batch: _Batch) -> None:
        """Move queued requests into `batch` while they fit; close it at the first one that cannot join."""
        queue, limit = self._queue, self.max_batch_size
        while queue and not batch.closed:
            entry = queue[0]
            if entry.future.done():  # cancelled while waiting
                queue.popleft()
                continue
            if batch.entries:
                first = batch.entries[0]
                if entry.key is None or entry.key != first.key or batch.rows + entry.rows > limit:
                    batch.closed = True
                    break
            queue.popleft()
            entry.started = True
            self._waiting -= 1
            batch.entries.append(entry)
            batch.rows += entry.rows
            batch.closed = entry.key is None or batch.rows >= limit
        self._observer.queue_depth(self._waiting)

    async def _linger(self, batch: _Batch) -> None:
        """Wait for more requests only while that can pay: under load, or while arrivals keep coming.

        Under load (the oldest request queued behind a running batch, a batch is running, or this batch
        is still smaller than the last one, whose callers are likely coming back) more are on their way:
        collect until full, the deadline, or a pause of `patient_quiet_s` (fewer callers than a full batch
        must not cost `max_latency_s` every time). Otherwise (idle model) go as soon as arrivals pause for
        `quiet_s`. The deadline is `max_latency_s` from when the oldest request
        could first have run (its arrival, or the model freeing up): time queued behind a running batch
        does not count, since holding back was not the batcher's choice then.
        """
        oldest = batch.entries[0].enqueued_s
        loaded = oldest < self._free_since
        deadline = max(oldest, self._free_since) + self.max_latency_s
        while not batch.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            patient = loaded or self._running > 0 or batch.rows < self._last_rows
            self._wake.clear()
            try:
                async with asyncio.timeout(min(remaining, self.patient_quiet_s if patient else self.quiet_s)):
                    await self._wake.wait()
            except TimeoutError:
                return
            self._take(batch)

    async def _run(self, batch: _Batch) -> None:
        entries = batch.entries
        started = time.monotonic()
        self._last_rows = batch.rows
        self._observer.batch_formed(batch.rows, [started - e.enqueued_s for e in entries])
        if tracing.enabled():
            for e in entries:
                e.batch_started_s, e.batch_rows = started, batch.rows
        requests = [e.request for e in entries]
        try:
            try:
                results = await self._results(requests, [e.rows for e in entries])
            finally:
                self._observer.inference(time.monotonic() - started)
            for entry, result in zip(entries, results, strict=True):
                if entry.future.done():
                    continue
                if isinstance(result, BaseException):
                    entry.future.set_exception(result)
                else:
                    entry.future.set_result(result)
        finally:
            self._running -= 1
            self._free_since = time.monotonic()
            self._slots.release()
            self._wake.set()

    async def _results(self, requests: list[InferRequest], rows: list[int]) -> list[Any]:
        """Each request's outputs (or its exception): one call for the batch, or one each if that fails."""
        loop = asyncio.get_running_loop()
        try:
            if self._acall is not None:
                return await self._apredict_batch(self._acall, requests, rows)
            return await loop.run_in_executor(self._executor, self._predict_batch, requests, rows)
        except Exception as exc:
            if len(requests) == 1:
                return [exc]
            # one bad request must not fail its neighbours: each runs alone
            if self._acall is not None:
                call = self._acall
                return await asyncio.gather(
                    *(call(r.inputs, r.output_names, r.parameters) for r in requests), return_exceptions=True
                )
            return await loop.run_in_executor(self._executor, self._predict_each, requests)

    @staticmethod
    async def _apredict_batch(
        call: AsyncModelCall, requests: list[InferRequest], rows: list[int]
    ) -> list[TensorDict]:
        first = requests[0]
        if len(requests) == 1:
            return [await call(first.inputs, first.output_names, first.parameters)]
        outputs = await call(merge([r.inputs for r in requests]), first.output_names, first.parameters)
        return split(outputs, rows)

    def _predict_batch(self, requests: list[InferRequest], rows: list[int]) -> list[TensorDict]:
        first = requests[0]
        if len(requests) == 1:
            return [self._call(first.inputs, first.output_names, first.parameters)]
        outputs = self._call(merge([r.inputs for r in requests]), first.output_names, first.parameters)
        return split(outputs, rows)

    def _predict_each(self, requests: list[InferRequest]) -> list[TensorDict | Exception]:
        results: list[TensorDict | Exception] = []
        for r in requests:
            try:
                results.append(self._call(r.inputs, r.output_names, r.parameters))
            except Exception as exc:
                results.append(exc)
        return results

    def retire(self) -> None:
        """Replaced (the model was reloaded): take no new requests, run those queued, then stop collecting."""
        self._retired = True
        self._wake.set()

    def close(self) -> None:
        """Stop collecting; queued requests get 503, batches already running finish."""
        self._closed = True
        if self._collector is not None:
            self._collector.cancel()
        self._fail(list(self._queue))
        self._queue.clear()
        self._waiting = 0
        self._observer.queue_depth(0)

    def _fail(self, entries: list[_Pending]) -> None:
        for entry in entries:
            if not entry.future.done():
                entry.future.set_exception(ModelNotReady(f"model {self.name!r} was unloaded"))


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "batch collector %s crashed; it restarts with the next request",
            task.get_name(),
            exc_info=task.exception(),
        )
