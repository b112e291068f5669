"""A lighter ASGI cycle for a POST whose body has a declared length: the same app, less machinery around it.

uvicorn gives every request a `RequestResponseCycle`, an `asyncio.Event` and a task of its own, and checks
every ASGI message against the HTTP state machine. For an inference request — small, complete before the app
needs it, answered with one body — that machinery was ~20 of the ~98 µs of server CPU a request cost here
(iris V2 JSON, 16 connections, pinned: 99 -> 89 µs with this and uvicorn's proxy-headers wrapper off).
`LeanCycle` takes its place for such
a request (our protocol in header_limit.py decides, per request):
- the app is the same ASGI app, called with the same scope; nothing about routing or errors changes;
- no task: the requests a turn of the loop parsed are run one after another at the start of the next turn
  (`LeanRunner`, one `call_soon` per turn, so the responses still leave together: turn_writes.py), each
  driven until it finishes or waits; one that waits (a model thread, a batcher, an upstream) carries on in
  a task, as asyncio's eager tasks (3.12) do. Until then `FirstStep` is `asyncio.current_task()`, so code
  that keeps its task (`asyncio.timeout`) cancels the right one later;
- `receive` hands over the whole body, then waits for the client to leave; `send` writes the head and body
  (or chunks) with uvicorn's default headers and checks, and ends the response as uvicorn does.
Anything else (GET, chunked or `Expect: 100-continue` bodies, pipelined requests behind one not yet answered)
keeps uvicorn's cycle (an `Upgrade` is ignored: the request is read again without it, header_limit.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from asyncio.tasks import _enter_task, _leave_task
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from serving.http.turn_writes import per_loop

if TYPE_CHECKING:
    from serving.http.header_limit import HeaderLimitedProtocol

log = logging.getLogger("uvicorn.error")
# uvicorn's own checks on response headers: no response splitting through a header an app passes on.
_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:[\\]={} \t\\\\"]')
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")


class LeanCycle:
    """Stands in `protocol.cycle` for one request: the attributes uvicorn's protocol reads are here."""

    __slots__ = (
        "protocol",
        "scope",
        "body",
        "more_body",
        "keep_alive",
        "disconnected",
        "response_started",
        "response_complete",
        "_chunked",
        "_expected",
        "_head",
        "_body_given",
        "_gone",
        "on_gone",
    )

    def __init__(self, protocol: HeaderLimitedProtocol, scope: dict[str, Any], keep_alive: bool) -> None:
        self.protocol = protocol
        self.scope = scope
        self.body = b""
        self.more_body = True
        self.keep_alive = keep_alive
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self._chunked = False
        self._expected = 0  # body bytes still owed under Content-Length
        self._head = b""  # held until the first body part, so head and body leave in one write
        self._body_given = False
        # Resolved when the client leaves or the response is complete (a `receive` past the body waits on it).
        self._gone: asyncio.Future[None] | None = None
        # Called once if the client leaves before the answer (the router's lane abandons its upstream exchange)
        self.on_gone: Callable[[], None] | None = None

    # What uvicorn's protocol calls on its cycle
    @property
    def message_event(self) -> LeanCycle:
        return self

    def set(self) -> None:
        """uvicorn sets the cycle's event when the body is complete and when the connection is lost; we set it
        when the response is complete. A `receive` waiting past the body then returns `http.disconnect`."""
        if (self.disconnected or self.response_complete) and self._gone is not None and not self._gone.done():
            self._gone.set_result(None)
        if self.disconnected and self.on_gone is not None:
            gone, self.on_gone = self.on_gone, None
            gone()

    # ASGI
    async def receive(self) -> dict[str, Any]:
        if not self._body_given:
            self._body_given = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        if not self.disconnected and not self.response_complete:
            if self._gone is None or self._gone.cancelled():  # (a watch of it that was cancelled)
                self._gone = asyncio.get_running_loop().create_future()
            await self._gone
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        protocol = self.protocol
        if protocol.flow.write_paused and not self.disconnected:
            await protocol.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{kind}'.")
            self._start(message["status"], message.get("headers", ()))
        elif not self.response_complete:
            if kind != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")

    def answer(self, status: int, headers: Any, body: bytes, *, headers_checked: bool = False) -> None:
        """The whole response at once, from a callback (the router's direct lane): as `send` would write it.
        `headers_checked`: every header was parsed from a response by httptools, which refuses what the
        response-splitting checks look for (our client lower-cases their names), or built by us in lower case;
        they are not searched or lowered again."""
        self._start(status, headers, headers_checked)
        self._body(body, False)

    def _start(self, status: int, headers: Any, headers_checked: bool = False) -> None:
        self.response_started = True
        parts = [STATUS_LINE[status]]
        length: int | None = None
        close = False
        for name, value in self.protocol.server_state.default_headers:  # the server's own: date, server
            parts += [name, b": ", value, b"\r\n"]
        for name, value in headers:
            if not headers_checked:
                if _BAD_NAME.search(name):
                    raise RuntimeError("Invalid HTTP header name.")
                if _BAD_VALUE.search(value):
                    raise RuntimeError("Invalid HTTP header value.")
                name = name.lower()
            if name == b"content-length" and length is None:
                length = int(value.decode())
            elif name == b"connection" and b"close" in [t.strip() for t in value.lower().split(b",")]:
                close = True
            parts += [name, b": ", value, b"\r\n"]
        if close:
            self.keep_alive = False
        elif not self.keep_alive:
            parts.append(b"connection: close\r\n")
        if length is None and status not in (204, 304):
            self._chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        self._expected = length or 0
        parts.append(b"\r\n")
        self._head = b"".join(parts)

    def _body(self, body: bytes, more_body: bool) -> None:
        transport = self.protocol.transport
        if self._chunked:
            pieces = [b"%x\r\n" % len(body), body, b"\r\n"] if body else []
            if not more_body:
                pieces.append(b"0\r\n\r\n")
            data = b"".join(pieces)
        else:
            if len(body) > self._expected:
                raise RuntimeError("Response content longer than Content-Length")
            self._expected -= len(body)
            data = body
        if self._head:
            transport.write(self._head)  # held by our transport: leaves with the body in one write
            self._head = b""
        if data:
            transport.write(data)
        if not more_body:
            if self._expected:
                raise RuntimeError("Response content shorter than Content-Length")
            self._end()

    def _end(self) -> None:
        self.response_complete = True
        # The request body goes now: protocol and cycle refer to each other, so a closed connection's last
        # cycle waits for the garbage collector, and with it a body of up to --max-body-bytes
        self.body = b""
        self.set()
        if not self.keep_alive:
            self.protocol.transport.close()
        self.protocol.on_response_complete()

    def finished(self, outcome: BaseException | None) -> None:
        self.body = b""  # the app is done with it (see `_end`)
        if isinstance(outcome, asyncio.CancelledError):  # the graceful shutdown's bound passed: cut off
            log.warning("request cancelled: the server stopped before it was answered")
        elif outcome is not None:
            log.error("Exception in ASGI application\n", exc_info=outcome)
        elif not self.response_started and not self.disconnected:
            log.error("ASGI callable returned without starting response.")
        elif not self.response_complete and not self.disconnected:
            log.error("ASGI callable returned without completing response.")
        if (outcome is not None or not self.response_complete) and not self.disconnected:
            if self.response_started:
                self.protocol.transport.close()
            else:
                self._internal_error(outcome)

    def _internal_error(self, outcome: BaseException | None) -> None:
        """A JSON error as every other answer of ours: 503 for a request the shutdown cut off (ask again,
        elsewhere), else 500 naming the exception's type only."""
        self.keep_alive = False
        if isinstance(outcome, asyncio.CancelledError):
            status, message = (
                503,
                "the server is shutting down and could not finish this request; send it again",
            )
        else:
            status, message = 500, f"internal error: {type(outcome).__name__ if outcome else 'no answer'}"
        body = b'{"error":"' + message.encode() + b'"}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        self._start(status, [*headers, (b"connection", b"close")])
        self._body(body, False)


class LeanRunner:
    """The lean requests parsed in this turn of one loop, run at the start of the next (one `call_soon`)."""

    __slots__ = ("_loop", "_queue", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: list[LeanCycle] = []

    def add(self, cycle: LeanCycle) -> None:
        if not self._queue:
            self._loop.call_soon(self._run)
        self._queue.append(cycle)

    def _run(self) -> None:
        queue, self._queue = self._queue, []
        for cycle in queue:
            if not cycle.disconnected:
                run_eagerly(cycle, self._loop)


lean_runner = per_loop(LeanRunner)


class FirstStep:
    """`asyncio.current_task()` while a request's first step runs without a task of its own.

    What code may do with its current task there (`asyncio.timeout` keeps it to cancel it later; anyio names
    it) works: cancellation is counted here until the request waits, then forwarded to the task it carries on
    in (`attach`)."""

    __slots__ = ("_coro", "_task", "_cancels", "__weakref__")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self._task: asyncio.Task[None] | None = None
        self._cancels = 0

    def attach(self, task: asyncio.Task[None]) -> None:
        self._task = task
        for _ in range(self._cancels):
            task.cancel()

    def cancel(self, msg: Any = None) -> bool:
        if self._task is not None:
            return self._task.cancel(msg)
        self._cancels += 1
        return True

    def cancelling(self) -> int:
        return self._task.cancelling() if self._task is not None else self._cancels

    def uncancel(self) -> int:
        if self._task is not None:
            return self._task.uncancel()
        self._cancels = max(0, self._cancels - 1)
        return self._cancels

    def done(self) -> bool:
        return self._task is not None and self._task.done()

    def cancelled(self) -> bool:
        return self._task is not None and self._task.cancelled()

    def get_coro(self) -> Coroutine[Any, Any, Any]:
        return self._coro

    def get_name(self) -> str:
        return "serving-lean-first-step"

    def add_done_callback(self, callback: Any, *, context: Any = None) -> None:
        if self._task is None:
            raise RuntimeError("the request has no task yet")
        self._task.add_done_callback(callback, context=context)


def run_eagerly(cycle: LeanCycle, loop: asyncio.AbstractEventLoop) -> None:
    """Call the app for `cycle` now; if it waits, it carries on in a task (same context, same coroutine)."""
    protocol = cycle.protocol
    context = contextvars.copy_context()
    coro = protocol.app(cycle.scope, cycle.receive, cycle.send)
    step = FirstStep(coro)
    _enter_task(loop, step)  # type: ignore[arg-type]  # stands in for the task (see FirstStep)
    try:
        waiting = context.run(coro.send, None)
    except StopIteration:
        cycle.finished(None)
        return
    except BaseException as exc:  # noqa: BLE001 - answered and logged as uvicorn's run_asgi does
        cycle.finished(exc)
        return
    finally:
        _leave_task(loop, step)  # type: ignore[arg-type]
    task = loop.create_task(_carry_on(coro, waiting, cycle), context=context)
    step.attach(task)
    protocol.tasks.add(task)
    task.add_done_callback(protocol.tasks.discard)


async def _carry_on(coro: Coroutine[Any, Any, Any], waiting: Any, cycle: LeanCycle) -> None:
    """Drive `coro` on, as its own task would have: wait for what it yielded, then resume it (the coroutine
    reads the outcome itself). Cancelling this task cancels what it waits for, so `coro` sees it."""
    try:
        while True:
            if waiting is None:  # a bare yield: one turn of the loop
                await asyncio.sleep(0)
            else:
                waiting._asyncio_future_blocking = False
                try:
                    await waiting
                except BaseException:  # noqa: BLE001, S110 - the coroutine reads the same outcome when resumed
                    pass
            waiting = coro.send(None)
    except StopIteration:
        cycle.finished(None)
    except BaseException as exc:  # noqa: BLE001 - answered and logged as uvicorn's run_asgi does
        cycle.finished(exc)
        if isinstance(exc, asyncio.CancelledError):
            raise
