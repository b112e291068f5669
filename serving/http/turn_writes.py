"""Responses leave at the end of the event loop's turn, all together: one wake-up of each peer per turn.

Under load one turn of the loop answers many requests (16 connections: ~17 requests per `epoll` here). Written
as each one completes, every response lands while its client sleeps, and each such send pays for waking it:
measured on the loopback, that wake-up (the peer's receive path and an inter-processor interrupt) was ~15 of the
~140 us of server CPU per request. Held until the turn's other work is done and then written back to back, the
responses reach clients that are still awake from the first one. Measured, server pinned to one core and wrk
to the other, iris, 16 connections: V2 JSON 142 -> 106 us of server CPU per request.

What a response waits: nothing when it was the only request open (the server's protocol reports requests
opening and finishing, and the last one to finish writes everything held at once: the same turn, so one
connection sees no added latency), else at most the rest of the turn it was computed in (a `call_soon` flush
at the start of the next turn is the backstop) — under load, where clients already wait for the whole batch.
Redis writes its replies the same way, just before the loop sleeps. Head and body of a response leave in one
write (one segment).

`TurnWrites` is one per event loop; a connection's transport registers with it on its first held write.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

COALESCE_MAX_BYTES = 64 * 1024  # held pieces up to this are joined into one write; beyond, written as a list


class TurnWrites:
    """The transports with writes held in this turn of one loop, flushed together at the start of the next."""

    __slots__ = ("_loop", "_pending", "_scheduled", "open_requests", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[TurnBatchedTransport] = []
        self._scheduled = False
        self.open_requests = 0  # requests of this loop's servers between head parsed and response complete

    def opened(self, count: int = 1) -> None:
        self.open_requests += count

    def finished(self, count: int = 1) -> None:
        """`count` requests are done (answered, or their connection lost): with none left open, nothing in
        this turn is waiting for company, so what is held goes now."""
        self.open_requests = max(0, self.open_requests - count)
        if not self.open_requests and self._pending:
            self.flush()

    def hold(self, transport: TurnBatchedTransport) -> None:
        self._pending.append(transport)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for transport in pending:
            transport.flush()


def per_loop(make: Callable[[asyncio.AbstractEventLoop], T]) -> Callable[[asyncio.AbstractEventLoop], T]:
    """`make(loop)` once per event loop (gone with the loop): the one `TurnWrites` or `LeanRunner` of a loop."""
    made: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def of(loop: asyncio.AbstractEventLoop) -> T:
        found = made.get(loop)
        if found is None:
            found = made[loop] = make(loop)
        return found

    return of


turn_writes = per_loop(TurnWrites)


class TurnBatchedTransport:
    """A transport whose writes are held until the end of the loop's turn (see the module docstring);
    `close` sends what is held first. Everything else is the wrapped transport's."""

    __slots__ = ("_transport", "_turn", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._turn = turn_writes(loop)
        self._held: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        piece = data if type(data) is bytes else bytes(data)  # the caller may reuse its buffer once we return
        if self._held is None:
            self._held = [piece]
            self._turn.hold(self)
        else:
            self._held.append(piece)

    def writelines(self, pieces: Any) -> None:
        for piece in pieces:
            self.write(piece)

    def flush(self) -> None:
        held, self._held = self._held, None
        if not held or self._transport.is_closing():
            return
        if len(held) == 1:
            self._transport.write(held[0])
        elif sum(map(len, held)) <= COALESCE_MAX_BYTES:
            self._transport.write(b"".join(held))
        else:  # large pieces are not copied into one
            self._transport.writelines(held)

    def is_closing(self) -> bool:  # asked once per response: not through __getattr__'s failed lookup first
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
