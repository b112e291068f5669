"""`Deadlines`: the data plane's request timeouts, one timer for all — the behaviour of `asyncio.timeout`."""

from __future__ import annotations

import asyncio
import time

import pytest

from serving.deadlines import Deadlines

pytestmark = pytest.mark.asyncio


async def _within(deadlines: Deadlines, awaitable: object) -> object:
    """What the data plane does around a model call."""
    deadline = deadlines.start()
    try:
        result = await awaitable  # type: ignore[misc]
    except BaseException as exc:
        deadlines.end(deadline, exc)
        raise
    deadlines.end(deadline)
    return result


async def test_only_the_requests_past_their_deadline_time_out() -> None:
    deadlines = Deadlines(0.2)
    slow = asyncio.create_task(_within(deadlines, asyncio.sleep(5)))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    # Later requests, quick ones, finish meanwhile: the slow one's deadline is not held up by them
    quick = [await _within(deadlines, asyncio.sleep(0.001, result=i)) for i in range(50)]
    assert quick == list(range(50))
    with pytest.raises(TimeoutError):
        await slow
    assert time.monotonic() - started < 1.0  # about 0.2 s after it began, not the 5 s it would have slept
    assert deadlines.pending() == 0


async def test_overlapping_slow_requests_each_time_out_at_their_own_deadline() -> None:
    deadlines = Deadlines(0.1)
    began = time.monotonic()
    tasks = []
    for _ in range(3):
        tasks.append(asyncio.create_task(_within(deadlines, asyncio.sleep(5))))
        await asyncio.sleep(0.05)
    ended = []
    for task in tasks:
        with pytest.raises(TimeoutError):
            await task
        ended.append(time.monotonic() - began)
    assert ended[-1] < 1.0
    assert deadlines.pending() == 0


async def test_someone_elses_cancellation_stays_a_cancellation() -> None:
    deadlines = Deadlines(5.0)
    task = asyncio.create_task(_within(deadlines, asyncio.sleep(5)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadlines.pending() == 0


async def test_a_request_that_finished_in_time_is_never_cancelled_later() -> None:
    deadlines = Deadlines(0.05)

    async def answered_then_busy() -> str:
        await _within(deadlines, asyncio.sleep(0.001))
        await asyncio.sleep(0.2)  # past the deadline of the call above: no stray cancellation arrives
        return "done"

    assert await answered_then_busy() == "done"


async def test_finished_requests_behind_a_slow_one_do_not_pile_up() -> None:
    deadlines = Deadlines(5.0)
    slow = asyncio.create_task(_within(deadlines, asyncio.sleep(5)))
    await asyncio.sleep(0.01)
    for _ in range(10_000):  # each finishes at once, while the slow one holds the front of the queue
        await _within(deadlines, asyncio.sleep(0))
    assert len(deadlines._queue) < 2_100
    assert deadlines.pending() == 1
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
