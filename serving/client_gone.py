"""Work on behalf of an HTTP client, given up when the client hangs up first.

Past its body, an ASGI `receive` resolves only with `http.disconnect` (the client gone, or the answer sent):
raced against a request's wait for a model slot (the model server) or for its upstream answer (the router), it
lets a request nobody waits for leave, as Knative's queue-proxy drops one whose client is gone, instead of
taking a slot from the next client. Cancelled, the work cleans up after itself: a slot's waiter leaves the
queue, an upstream exchange closes its connection (so the replica sees its client go in turn)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from serving.errors import ClientGone

T = TypeVar("T")
Watch = Callable[[], Awaitable[object]]
# The request's connection, in the ASGI scope our HTTP protocol builds (serving/http/header_limit.py): asked
# once the model has answered, so an answer nobody can read is counted and logged as the client leaving (499,
# as nginx and our router count it), not as delivered.
CONNECTION_KEY = "serving.connection"


class Connection(Protocol):
    def is_closing(self) -> bool: ...


async def unless_client_leaves(work: Awaitable[T], client_gone: Watch | None, what: str) -> T:
    """`await work`, unless `client_gone` resolves with a disconnect first: `work` is then cancelled and
    `ClientGone(what)` raised (status 499 in metrics and logs)."""
    if client_gone is None:
        return await work
    task = asyncio.ensure_future(work)
    watch: asyncio.Future[object] = asyncio.ensure_future(client_gone())
    try:
        while not task.done():
            await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
            if watch.done() and not task.done():
                if hung_up(watch):
                    raise ClientGone(what)
                watch = asyncio.ensure_future(asyncio.Event().wait())  # not a hang-up: the work alone
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
    return task.result()


def hung_up(watch: asyncio.Future[object]) -> bool:
    """Whether the watch ended with the client gone (ASGI `http.disconnect`), not with an error of its own."""
    if watch.cancelled() or watch.exception() is not None:
        return False
    message = watch.result()
    return not isinstance(message, dict) or message.get("type") == "http.disconnect"
