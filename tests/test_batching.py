"""The batcher on its own: merge/split round trips, isolation of concurrent callers, mismatches, failures,
queue bound, deadlines and adaptivity. The "model" is a small deterministic function run in a real thread
pool, so every row's answer can be told apart."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serving.batching import Batcher, merge, split
from serving.errors import BadRequest, ServiceUnavailable
from serving.types import InferRequest, TensorDict

DTYPES = st.sampled_from(["<f4", "<f8", "<i4", "<i8", "<u1", "|b1", "<f2", "<u8"])
POOL = ThreadPoolExecutor(4)


class Recorder:
    """A BatchObserver that remembers what it saw."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.rejections: list[str] = []
        self.depths: list[int] = []

    def batch_formed(self, rows: int, waits_s: Sequence[float]) -> None:
        self.batches.append(rows)

    def inference(self, seconds: float) -> None:
        pass

    def queue_depth(self, depth: int) -> None:
        self.depths.append(depth)

    def rejected(self, reason: str) -> None:
        self.rejections.append(reason)


class Model:
    """Doubles every input; answers slowly if asked, refuses rows holding -1, counts calls."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        rows = next(iter(inputs.values())).shape[0]
        with self.lock:
            self.calls.append(rows)
        if self.delay_s:
            time.sleep(self.delay_s)
        if any((a == -1).any() for a in inputs.values()):
            raise BadRequest("a row holds -1")
        scale = float(parameters.get("scale", 2))
        return {f"{k}-out": (a * scale).astype(a.dtype) for k, a in inputs.items()}


def batcher(model: Model, recorder: Recorder | None = None, **kw) -> Batcher:
    options = dict(max_batch_size=32, max_latency_s=0.02, max_batches_in_flight=1, max_queue_size=1024) | kw
    return Batcher("m", model, POOL, recorder or Recorder(), **options)


def request(rows: int, marker: float, cols: int = 3, dtype: str = "<f8", **params) -> InferRequest:
    values = marker * 1000 + np.arange(rows * cols).reshape(rows, cols)
    return InferRequest(inputs={"x": values.astype(dtype)}, parameters=params)


@st.composite
def compatible_parts(draw: st.DrawFn) -> list[TensorDict]:
    names = draw(st.lists(st.text("abcxyz", min_size=1, max_size=3), min_size=1, max_size=3, unique=True))
    specs = {
        n: (draw(DTYPES), draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3)))
        for n in names
    }
    parts = []
    for rows in draw(st.lists(st.integers(0, 4), min_size=1, max_size=6)):
        parts.append({n: draw(hnp.arrays(np.dtype(d), (rows, *trail))) for n, (d, trail) in specs.items()})
    return parts


@given(compatible_parts())
@settings(max_examples=150, deadline=None)
def test_split_of_merge_gives_back_every_part(parts: list[TensorDict]) -> None:
    rows = [next(iter(p.values())).shape[0] for p in parts]
    back = split(merge(parts), rows)
    assert len(back) == len(parts)
    for original, returned in zip(parts, back, strict=True):
        assert list(returned) == list(original)
        for name, array in original.items():
            assert returned[name].dtype == array.dtype and returned[name].shape == array.shape
            np.testing.assert_array_equal(returned[name], array)


def test_split_refuses_outputs_without_one_row_per_input_row() -> None:
    with pytest.raises(Exception, match="'y' has 3 rows for a batch of 4 rows"):
        split({"y": np.zeros((3, 2))}, [1, 3])


@given(
    st.lists(
        st.tuples(st.integers(1, 12), st.sampled_from(["<f8", "<f4", "<i8"]), st.sampled_from([2, 3])),
        min_size=1,
        max_size=40,
    )
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_concurrent_callers_get_exactly_their_rows(shapes: list[tuple[int, str, int]]) -> None:
    async def scenario() -> None:
        model = Model()
        b = batcher(model, max_batch_size=16)
        requests = [request(rows, i, cols, dtype) for i, (rows, dtype, cols) in enumerate(shapes)]
        results = await asyncio.gather(*(b.submit(r) for r in requests))
        for r, out in zip(requests, results, strict=True):
            assert out["x-out"].dtype == r.inputs["x"].dtype
            np.testing.assert_array_equal(out["x-out"], r.inputs["x"] * 2)
        assert sum(model.calls) == sum(rows for rows, _, _ in shapes)
        b.close()

    asyncio.run(scenario())


def test_many_callers_are_batched_and_mismatches_are_never_merged() -> None:
    async def scenario() -> None:
        model, seen = Model(delay_s=0.01), Recorder()
        b = batcher(model, seen)
        mixed = [request(2, i, cols=3 if i % 3 else 4, dtype="<f8" if i % 2 else "<f4") for i in range(60)]
        scaled = [request(1, 100 + i, scale=3) for i in range(10)]
        results = await asyncio.gather(*(b.submit(r) for r in mixed + scaled))
        for r, out in zip(mixed + scaled, results, strict=True):
            assert out["x-out"].dtype == r.inputs["x"].dtype  # float32 callers were not merged into float64
            np.testing.assert_array_equal(out["x-out"], r.inputs["x"] * r.parameters.get("scale", 2))
        assert max(seen.batches) > 2, seen.batches  # batching happened
        assert len(seen.batches) < len(mixed + scaled)
        b.close()

    asyncio.run(scenario())


def test_inputs_in_another_order_are_not_merged() -> None:
    def stack(inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        time.sleep(0.005)
        return {"y": np.column_stack(list(inputs.values()))}  # column order follows the request's input order

    async def scenario() -> None:
        b = Batcher("m", stack, POOL, Recorder(), max_batch_size=32, max_latency_s=0.02)
        ab = [InferRequest(inputs={"a": np.full((1, 1), i), "b": np.full((1, 1), -i)}) for i in range(5)]
        ba = [InferRequest(inputs={"b": np.full((1, 1), -i), "a": np.full((1, 1), i)}) for i in range(5)]
        results = await asyncio.gather(*(b.submit(r) for pair in zip(ab, ba, strict=True) for r in pair))
        for i, (first, second) in enumerate(zip(results[::2], results[1::2], strict=True)):
            np.testing.assert_array_equal(first["y"], [[i, -i]])
            np.testing.assert_array_equal(second["y"], [[-i, i]])
        b.close()

    asyncio.run(scenario())


def test_a_bad_request_fails_alone_and_a_large_one_runs_alone() -> None:
    async def scenario() -> None:
        model, seen = Model(delay_s=0.01), Recorder()
        b = batcher(model, seen, max_batch_size=8)
        good = [request(1, i) for i in range(6)]
        bad = InferRequest(inputs={"x": np.full((1, 3), -1.0)})
        large = request(20, 99)
        results = await asyncio.gather(
            *(b.submit(r) for r in [*good[:3], bad, *good[3:], large]), return_exceptions=True
        )
        assert isinstance(results[3], BadRequest) and results[3].status_code == 400
        for r, out in zip(good, results[:3] + results[4:7], strict=True):
            np.testing.assert_array_equal(out["x-out"], r.inputs["x"] * 2)
        np.testing.assert_array_equal(results[7]["x-out"], large.inputs["x"] * 2)
        assert 20 in model.calls and all(rows <= 8 for rows in model.calls if rows != 20)
        b.close()

    asyncio.run(scenario())


def test_an_async_model_is_batched_on_the_loop_and_a_bad_request_fails_alone() -> None:
    """A transformer awaiting its predictor (`acall`): KServe's batcher in front of it. No thread is used."""
    model = Model()

    async def transform(inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        await asyncio.sleep(0.01)  # the predictor's answer
        return model(inputs, outputs, parameters)

    def no_thread(*_: object) -> TensorDict:
        raise AssertionError("an async model never runs in a thread")

    async def scenario() -> None:
        seen = Recorder()
        b = Batcher("t", no_thread, POOL, seen, max_batch_size=16, max_latency_s=0.02, acall=transform)
        good = [request(1, i) for i in range(12)]
        bad = InferRequest(inputs={"x": np.full((1, 3), -1.0)})
        results = await asyncio.gather(*(b.submit(r) for r in [*good, bad]), return_exceptions=True)
        assert isinstance(results[-1], BadRequest), results[-1]
        for r, out in zip(good, results[:-1], strict=True):
            np.testing.assert_array_equal(out["x-out"], r.inputs["x"] * 2)
        assert max(seen.batches) > 2 and len(seen.batches) < len(good), seen.batches
        b.close()

    asyncio.run(scenario())


def test_outputs_that_cannot_be_split_fall_back_to_one_call_per_request() -> None:
    def summary(inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        time.sleep(0.005)
        return {"total": np.array([inputs["x"].sum()])}  # one row whatever the batch

    async def scenario() -> None:
        b = Batcher("m", summary, POOL, Recorder(), max_batch_size=32, max_latency_s=0.02)
        requests = [request(2, i) for i in range(10)]
        results = await asyncio.gather(*(b.submit(r) for r in requests))
        for r, out in zip(requests, results, strict=True):
            assert out["total"][0] == r.inputs["x"].sum()
        b.close()

    asyncio.run(scenario())


def test_full_queue_refuses_at_once_with_503_and_retry_after() -> None:
    async def scenario() -> None:
        seen = Recorder()
        b = batcher(Model(delay_s=0.2), seen, max_batch_size=1, max_queue_size=2)
        first = asyncio.ensure_future(b.submit(request(1, 0)))
        while not b._running:  # the first request is running; the next two wait  # noqa: SLF001
            await asyncio.sleep(0.001)
        waiting = [asyncio.ensure_future(b.submit(request(1, i))) for i in (1, 2)]
        await asyncio.sleep(0)
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable) as info:
            await b.submit(request(1, 3))
        assert time.monotonic() - started < 0.05
        assert info.value.status_code == 503 and info.value.headers["Retry-After"]
        assert seen.rejections == ["queue_full"]
        await asyncio.gather(first, *waiting)
        b.close()

    asyncio.run(scenario())


def test_a_request_past_its_deadline_leaves_the_queue_unrun() -> None:
    async def scenario() -> None:
        model, seen = Model(delay_s=0.15), Recorder()
        b = batcher(model, seen, max_batch_size=1)
        first = asyncio.ensure_future(b.submit(request(1, 0)))
        while not b._running:  # noqa: SLF001
            await asyncio.sleep(0.001)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await b.submit(request(1, 7))
        assert seen.depths[-1] == 0  # counted out of the queue at once
        await first
        np.testing.assert_array_equal((await b.submit(request(1, 8)))["x-out"], request(1, 8).inputs["x"] * 2)
        assert model.calls == [1, 1]  # the timed-out request never reached the model
        b.close()

    asyncio.run(scenario())


def test_an_idle_model_does_not_wait_for_max_latency() -> None:
    async def scenario() -> None:
        b = batcher(Model(), max_latency_s=1.0)
        started = time.monotonic()
        for i in range(5):
            await b.submit(request(1, i))
        assert time.monotonic() - started < 2.5  # five lone requests, none waited its second (5 s in all)
        b.close()

    asyncio.run(scenario())


def test_while_a_batch_runs_others_collect_up_to_max_latency() -> None:
    async def scenario() -> None:
        model, seen = Model(delay_s=0.05), Recorder()
        b = batcher(model, seen, max_batch_size=64, max_latency_s=0.03, max_batches_in_flight=2)
        first = asyncio.ensure_future(b.submit(request(1, 0)))
        while not b._running:  # noqa: SLF001
            await asyncio.sleep(0.001)
        later = []
        for i in range(8):  # trickle in while the first batch runs: the second batch lingers for them
            later.append(asyncio.ensure_future(b.submit(request(1, i + 1))))
            await asyncio.sleep(0.002)
        await asyncio.gather(first, *later)
        assert seen.batches[0] == 1 and max(seen.batches[1:]) >= 4, seen.batches
        b.close()

    asyncio.run(scenario())


def test_fewer_callers_than_a_full_batch_do_not_wait_max_latency_each_time() -> None:
    async def caller(b: Batcher, start_s: float, marker: int) -> None:
        await asyncio.sleep(start_s)
        for i in range(6):
            r = request(1, marker * 10 + i)
            np.testing.assert_array_equal((await b.submit(r))["x-out"], r.inputs["x"] * 2)

    async def scenario() -> None:
        seen = Recorder()
        b = batcher(Model(delay_s=0.01), seen, max_batch_size=64, max_latency_s=1.0)
        started = time.monotonic()
        await asyncio.gather(
            *(caller(b, k * 0.004, k) for k in range(8))
        )  # staggered: some queue behind a batch
        assert time.monotonic() - started < 0.9, seen.batches  # 6 rounds: far from a 1 s wait per batch
        assert max(seen.batches) > 1
        b.close()

    asyncio.run(scenario())


def test_close_fails_waiting_requests_with_503() -> None:
    async def scenario() -> None:
        b = batcher(Model(delay_s=0.1), max_batch_size=1)
        running = asyncio.ensure_future(b.submit(request(1, 0)))
        while not b._running:  # noqa: SLF001
            await asyncio.sleep(0.001)
        queued = asyncio.ensure_future(b.submit(request(1, 1)))
        await asyncio.sleep(0)
        b.close()
        with pytest.raises(ServiceUnavailable):
            await queued
        await running  # a batch already running still answers
        with pytest.raises(ServiceUnavailable):
            await b.submit(request(1, 2))

    asyncio.run(scenario())


def test_retire_runs_what_is_queued_refuses_new_requests_and_ends_the_collector() -> None:
    """A reloaded model's old batcher: its callers are answered by the old model, nobody else joins it."""
    gate = threading.Event()

    class Gated(Model):
        def __call__(
            self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict
        ) -> TensorDict:
            gate.wait(30)
            return super().__call__(inputs, outputs, parameters)

    async def scenario() -> None:
        model = Gated()
        b = batcher(model, max_batch_size=1)
        running = asyncio.ensure_future(b.submit(request(1, 0)))
        while not b._running:  # noqa: SLF001
            await asyncio.sleep(0.001)
        queued = asyncio.ensure_future(b.submit(request(1, 1)))
        await asyncio.sleep(0)  # queued behind the running batch
        b.retire()
        with pytest.raises(ServiceUnavailable):
            await b.submit(request(1, 2))
        gate.set()
        answers = await asyncio.gather(running, queued)
        for marker, answer in enumerate(answers):
            np.testing.assert_array_equal(answer["x-out"], request(1, marker).inputs["x"] * 2)
        assert model.calls == [1, 1]
        collector = b._collector  # noqa: SLF001
        assert collector is not None
        await asyncio.wait_for(collector, 5)  # ended by itself: nothing holds the old model any more

    asyncio.run(scenario())
