"""The one HTTP/1.1 client of our processes: pooled keep-alive connections to plain-`http://` servers.

Used for every hop between our own processes — router → model servers, transformer → predictor, the
control plane's health probes and the metrics federation. Built on asyncio + httptools because it sits on
the hot path: aiohttp's client was ~45 % of the router's CPU per request and an httpx.AsyncClient ~58 % of
the transformer's (iris, wrk, 16 connections: 215 req/s with httpx, 625 with this pool).

What it guarantees:
- at most `max_per_endpoint` connections per endpoint; further requests wait (within their timeout);
- idle connections expire after `idle_timeout_s` (a swept timer, not only on the next use);
- cancel-safe: a cancelled or timed-out exchange closes its connection and frees its slot (the response
  may still be arriving, so the connection can never be reused);
- HEAD-aware: a response to HEAD ends at its head, whatever Content-Length says; a body delimited by
  the server closing the connection is read to the end;
- `UpstreamConnectError` means the request never reached a server that answered (safe to retry
  elsewhere); any other `ConnectionError` means it failed after sending.

httpx stays where its features are needed: TLS and redirects for `serving storage` downloads
(serving/storage/http.py), the control-plane CLI client (serving/control/local/client.py, talks to a user-given
URL that may be https), and `serving demo` (a user-facing one-shot call).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlsplit

import httptools

from serving.http import local_sockets
from serving.http.direct_body import DIRECT_BODY_MIN_BYTES, BodyReader, unfilled_bytearray

Headers = list[tuple[bytes, bytes]]


class UpstreamConnectError(ConnectionError):
    """The request never reached a server that answered: retrying it elsewhere is safe. `sent`: it was written
    to a connection the server then closed without a byte of answer (a crash mid-request, or a kept-alive
    connection it had just closed); not sent: the connection was refused."""

    sent = False
    endpoint = ""  # where it was sent (the router's lane says so to the retry)


class ClosedBeforeAnswer(UpstreamConnectError):
    sent = True


class Response(NamedTuple):
    status: int
    headers: Headers  # names lower-cased
    body: bytes


class BadResponse(ConnectionError):
    """The server answered something that is not an HTTP/1.1 response we may pass on (malformed framing, a
    status outside 100-599, a 101 nobody asked for): a broken answer, not a broken connection."""


class Abandoned(ConnectionError):
    """An exchange given up by its caller (`_Connection.abandon`): not the server's failure."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `exchange` sends a request and waits for its whole response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop  # set once connected
        self.closed = False
        self.keep_alive = False
        self.reused = False  # it has answered before: a failure to answer now may just be a stale keep-alive
        self.idle_since = 0.0
        self._done: Callable[[Response | BaseException], None] | None = None  # the exchange in progress
        # One timer per connection, not one per exchange (arming and cancelling one per request cost ~1.3 us of
        # the router's ~40 us of Python): it fires at the earliest deadline it was armed for, and re-arms itself
        # for the exchange in progress then, if that one's deadline is still ahead.
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0  # loop time the exchange in progress must be answered by
        self._head_only = False
        self._answered_in_read = False  # an answer completed by the read being parsed: no other may follow
        self.parser = httptools.HttpResponseParser(self)
        self._new_message()

    def _new_message(self) -> None:
        """State for the next response; the parser is kept (it resets itself after each whole message)."""
        self.headers: Headers = []
        self.body: list[bytes] = []
        self.received = False
        self.head_done = False
        self.framed = False  # Content-Length or chunked: the parser knows where the body ends
        self.status = 0
        self.length = -1  # the declared Content-Length
        # A large declared body's buffer (serving/http/direct_body.py), filled up to `filled`
        self.direct: bytearray | None = None
        self.filled = 0
        self.direct_keep_alive = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # Its loop, looked up once: `asyncio.get_running_loop()` costs a getpid() per call on 3.11.
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.received = True
        self._answered_in_read = False
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            why = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else exc
            self._fail(BadResponse(f"bad HTTP response: {why}"))
            self.close()
            return
        if self.direct is not None and not self.closed and self.transport is not None:
            # The rest of a large body: read into its buffer by a protocol of its own, past the parser.
            self.transport.set_protocol(BodyReader(self, self.direct, self.filled))
            self.direct = None

    # BodyReader's owner
    def body_wanted(self) -> bool:
        return True  # an abandoned exchange closes its connection: the reader goes with it

    def body_read(self, body: bytearray) -> None:
        """The connection is ours again, with a fresh parser (this one saw the head and the start of the body)."""
        assert self.transport is not None
        self.transport.set_protocol(self)
        self.parser = httptools.HttpResponseParser(self)
        self.body = [body]  # type: ignore[list-item]
        self._complete(keep_alive=self.direct_keep_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if self.head_done and not self.framed:
            self._complete(keep_alive=False)  # the body ran until the server closed the connection
        elif self.received:
            self._fail(ConnectionError("server closed the connection mid-response"))
        else:
            self._fail(ClosedBeforeAnswer("server closed the connection before answering"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        """One request, one response: a response with no request waiting for it, or a second one after the
        answer (in the same read), means the server and this connection disagree on where messages end. It is
        never read as the next request's answer: the connection is closed (h11 refuses it the same way)."""
        if self._done is None or self._answered_in_read:
            raise ConnectionError("the server sent a response no request asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:  # a chunked body's trailer field: never one of the head's (RFC 9112 §7.1.2)
            return
        name = name.lower()
        if name == b"content-length":
            self.framed = True
            self.length = int(value) if value.isdigit() else -1
        elif name == b"transfer-encoding":
            if value.lower() != b"chunked":  # a coding we would pass on undone, as if it were the body
                raise BadResponse(f"Transfer-Encoding {value.decode('latin-1')!r}")
            self.framed = True
            self.length = -1  # chunked: the parser frames it
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.status = status = self.parser.get_status_code()
        if not 100 <= status <= 599 or status == 101:  # RFC 9110 §15 (and no upgrade was asked for)
            raise BadResponse(f"status {status}")
        if status in (204, 304) or 100 <= status < 200:
            self.framed = True  # no body by definition; the parser knows it
        elif self._head_only:
            self._complete(keep_alive=self.parser.should_keep_alive())
        elif self.length >= DIRECT_BODY_MIN_BYTES and not any(
            k == b"transfer-encoding" for k, _ in self.headers
        ):
            self.direct, self.filled = unfilled_bytearray(self.length), 0
            self.direct_keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        direct = self.direct
        if direct is None:
            self.body.append(body)
            return
        filled = self.filled
        direct[filled : filled + len(body)] = body
        self.filled = filled + len(body)
        if self.filled == len(direct):  # all of it came with the head: the parser completes it
            self.body, self.direct = [direct], None  # type: ignore[list-item]

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200 and self.status != 101:  # interim (100 Continue, 103): the answer follows
            self._new_message()
            return
        # Read it now: once the message is complete the parser resets and would always say False.
        self._complete(keep_alive=self.parser.should_keep_alive())

    def _complete(self, keep_alive: bool) -> None:
        if self._done is None:
            return
        self._answered_in_read = True
        self.keep_alive = keep_alive and not self.closed
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self._end(Response(self.status, self.headers, body))

    def _fail(self, exc: Exception) -> None:
        if self._done is not None:
            self._end(exc)

    def _end(self, outcome: Response | BaseException) -> None:
        done, self._done = self._done, None  # the armed timer stays: it finds nothing to time out
        assert done is not None
        done(outcome)

    def close(self) -> None:
        self.closed = True
        self._disarm()
        if self.transport is not None:
            self.transport.close()

    def abandon(self) -> None:
        """Give up the exchange in progress (its client is gone): the connection closes, so the server sees
        its client leave (a request still queued there leaves the queue), and `done` gets `Abandoned`."""
        if self._done is None:
            return
        self.close()
        self._fail(Abandoned("the client left before the answer"))

    def send(
        self,
        request: bytes,
        head_only: bool,
        timeout_s: float,
        done: Callable[[Response | BaseException], None],
    ) -> None:
        """Send one request; `done` gets its whole response, or the exception that ended it, exactly once
        (from a protocol callback: no task, no future). A TimeoutError closes the connection."""
        assert self.transport is not None
        if self._head_only:  # after a HEAD answer the old parser still expects a body: a fresh one
            self.parser = httptools.HttpResponseParser(self)
        self._new_message()
        self._head_only = head_only
        self._done = done
        self.transport.write(request)
        self._deadline = deadline = self.loop.time() + timeout_s
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._check_deadline)

    async def exchange(self, request: bytes, head_only: bool, timeout_s: float) -> Response:
        """`send`, awaited. Cancelled, it closes the connection (the response may still be on its way)."""
        waiter: asyncio.Future[Response] = self.loop.create_future()

        def done(outcome: Response | BaseException) -> None:
            if waiter.done():
                return
            if isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)

        self.send(request, head_only, timeout_s, done)
        try:
            return await waiter
        finally:
            if self._done is done:  # cancelled: nobody waits for this exchange any more
                self._done = None

    def _check_deadline(self) -> None:
        self._timer = None
        if self._done is None or self.closed:
            return  # answered meanwhile (or gone): nothing to time out
        # Armed for an earlier exchange: wait on for this one. (A timer may fire up to a millisecond early.)
        if self.loop.time() + 0.001 < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)
            return
        self._fail(TimeoutError())
        self.close()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Endpoint:
    """The connections of one endpoint: idle ones (most recent last), how many are open, who waits."""

    __slots__ = ("host", "port", "host_header", "unix_path", "idle", "open", "waiters")

    def __init__(self, endpoint: str, unix_socket_dir: str | None) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme != "http":
            raise ValueError(f"{endpoint!r}: only plain http:// endpoints are supported")
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.host_header = f"{self.host}:{self.port}".encode()
        self.unix_path = local_sockets.client_path(unix_socket_dir, self.host, self.port)
        self.idle: deque[_Connection] = deque()
        self.open = 0  # connections counted against the cap: idle + in use + being opened
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()


def encode_request(method: str, target: str, host: bytes, headers: Headers, body: bytes) -> bytes:
    """The request's bytes. A target holding a space or a control character is refused (ValueError): on the
    wire it would end the request line early or start another request (RFC 9112 §3.2, §11.2)."""
    if " " in target or not target.isprintable():
        raise ValueError(f"request target {target!r} holds a space or a control character")
    head = [
        f"{method} {target} HTTP/1.1\r\n".encode("latin-1"),
        b"host: ",
        host,
        b"\r\ncontent-length: ",
        str(len(body)).encode(),
        b"\r\n",
    ]
    for name, value in headers:
        head += [name, b": ", value, b"\r\n"]
    head.append(b"\r\n")
    return b"".join(head) + body


def split_url(url: str) -> tuple[str, str]:
    """`http://host:port/path?q` -> (`http://host:port`, `/path?q`)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    return f"{parts.scheme}://{parts.netloc}", target


class HTTPClient:
    """Keep-alive pools per endpoint (`http://host:port`), capped, expiring idle connections.

    With `unix_socket_dir` (by default `SERVING_UNIX_SOCKET_DIR`, set by `serving up` for its processes), a
    loopback endpoint is reached through its Unix socket there when one accepts (serving/http/local_sockets.py).
    """

    def __init__(
        self,
        *,
        connect_timeout_s: float = 5.0,
        max_per_endpoint: int = 256,
        idle_timeout_s: float = 30.0,
        unix_socket_dir: str | None = None,
    ) -> None:
        if max_per_endpoint < 1:
            raise ValueError("max_per_endpoint must be at least 1")
        self.unix_socket_dir = unix_socket_dir or os.environ.get(local_sockets.ENV) or None
        self.connect_timeout_s = connect_timeout_s
        self.max_per_endpoint = max_per_endpoint
        self.idle_timeout_s = idle_timeout_s
        self._endpoints: dict[str, _Endpoint] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    def _endpoint(self, endpoint: str) -> _Endpoint:
        ep = self._endpoints.get(endpoint)
        if ep is None:
            ep = self._endpoints[endpoint] = _Endpoint(endpoint, self.unix_socket_dir)
        return ep

    async def get(self, url: str, timeout_s: float) -> Response:
        endpoint, target = split_url(url)
        return await self.request(endpoint, "GET", target, timeout_s=timeout_s)

    async def request(
        self,
        endpoint: str,
        method: str,
        target: str,
        headers: Headers | None = None,
        body: bytes = b"",
        timeout_s: float = 60.0,
        retry_closed: bool = True,
    ) -> Response:
        """One request and its whole response; raises UpstreamConnectError, ConnectionError or TimeoutError.
        `retry_closed`: a kept-alive connection closed without an answer is tried again on another (else the
        caller hears of it: the router counts each such delivery, serving/router/upstream.py)."""
        if self._closed:
            raise UpstreamConnectError("the HTTP client is closed")
        ep = self._endpoint(endpoint)
        request = encode_request(method, target, ep.host_header, headers or [], body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            conn = self._idle_connection(ep) or await self._new_connection(ep, deadline)
            try:
                response = await conn.exchange(request, method == "HEAD", max(deadline - loop.time(), 0.0))
            except UpstreamConnectError:
                self._discard(ep, conn)
                if conn.reused and retry_closed:
                    continue  # an idle connection the server had closed: try the next or a fresh one
                raise
            except BaseException:  # timeout, bad response, or cancelled: the connection's state is unknown
                self._discard(ep, conn)
                raise
            self._release(ep, conn)
            return response

    def try_send(
        self,
        endpoint: str,
        method: str,
        target: str,
        headers: Headers,
        body: bytes,
        timeout_s: float,
        done: Callable[[Response | BaseException], None],
    ) -> Callable[[], None] | None:
        """`request` without waiting, when an idle keep-alive connection is at hand (else None, nothing sent):
        `done` gets the response or the exception, from the connection's callbacks; the returned callable
        abandons the exchange (until `done` is called). Used by the router's direct lane
        (serving/router/lane.py), which hands anything else to the awaited path."""
        ep = self._endpoints.get(endpoint)
        if ep is None or self._closed:
            return None
        conn = self._idle_connection(ep)
        if conn is None:
            return None
        try:
            request = encode_request(method, target, ep.host_header, headers, body)
        except ValueError:
            self._release(ep, conn)  # unused: back to the pool
            raise

        def finished(outcome: Response | BaseException) -> None:
            if isinstance(outcome, BaseException):
                self._discard(ep, conn)
            else:
                self._release(ep, conn)
            done(outcome)

        conn.send(
            request,
            method == "HEAD",
            timeout_s,
            finished,
        )
        return conn.abandon

    def _idle_connection(self, ep: _Endpoint) -> _Connection | None:
        while ep.idle:
            conn = ep.idle.pop()
            if not conn.closed and conn.loop.time() - conn.idle_since < self.idle_timeout_s:
                return conn
            self._discard(ep, conn)
        return None

    async def _new_connection(self, ep: _Endpoint, deadline: float) -> _Connection:
        """A connection handed over by a finishing request, or a new one in a free (or handed-over) slot."""
        if ep.open >= self.max_per_endpoint:
            handed = await self._wait_for_slot(ep, deadline)
            if handed is not None:
                return handed
        else:
            ep.open += 1
        try:
            return await self._connect(ep, deadline)
        except BaseException:
            self._free_slot(ep)
            raise

    async def _wait_for_slot(self, ep: _Endpoint, deadline: float) -> _Connection | None:
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        ep.waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():  # handed over just as we gave up: pass it on
                handed = waiter.result()
                if handed is None:
                    self._free_slot(ep)
                else:
                    self._release(ep, handed)
            elif waiter in ep.waiters:
                ep.waiters.remove(waiter)
            raise

    async def _connect(self, ep: _Endpoint, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(min(self.connect_timeout_s, max(deadline - loop.time(), 0.0))):
                if ep.unix_path is not None:
                    try:
                        _, conn = await loop.create_unix_connection(_Connection, ep.unix_path)
                        return conn
                    except OSError:  # no socket there (yet, or any more): the TCP port is the endpoint
                        pass
                _, conn = await loop.create_connection(_Connection, ep.host, ep.port)
        except (OSError, TimeoutError) as exc:
            raise UpstreamConnectError(
                f"cannot connect to {ep.host}:{ep.port}: {exc or 'timed out'}"
            ) from exc
        return conn

    def _release(self, ep: _Endpoint, conn: _Connection) -> None:
        """A finished exchange: hand the connection to a waiter, keep it idle, or close it."""
        if conn.closed or not conn.keep_alive or self._closed:
            self._discard(ep, conn)
            return
        conn.reused = True
        while ep.waiters:
            waiter = ep.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = conn.loop.time()
        ep.idle.append(conn)
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(self.idle_timeout_s, self._sweep)

    def _discard(self, ep: _Endpoint, conn: _Connection) -> None:
        conn.close()
        self._free_slot(ep)

    def _free_slot(self, ep: _Endpoint) -> None:
        """A connection is gone: its slot goes to the first live waiter (who connects), else back to the cap."""
        while ep.waiters:
            waiter = ep.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        ep.open -= 1

    def _sweep(self) -> None:
        """Close connections idle longer than `idle_timeout_s`; run again while any stay idle."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        oldest = None
        for ep in self._endpoints.values():
            while ep.idle and (ep.idle[0].closed or now - ep.idle[0].idle_since >= self.idle_timeout_s):
                self._discard(ep, ep.idle.popleft())
            if ep.idle and (oldest is None or ep.idle[0].idle_since < oldest):
                oldest = ep.idle[0].idle_since
        if oldest is not None:
            self._sweeper = loop.call_later(max(oldest + self.idle_timeout_s - now, 0.01), self._sweep)

    def connections(self, endpoint: str) -> tuple[int, int]:
        """(open, idle) connections to `endpoint`: for tests and metrics."""
        ep = self._endpoints.get(endpoint)
        return (ep.open, len(ep.idle)) if ep is not None else (0, 0)

    def close(self) -> None:
        """Close idle connections now; those in use close when their exchange ends."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for ep in self._endpoints.values():
            while ep.idle:
                self._discard(ep, ep.idle.pop())

    async def aclose(self) -> None:
        self.close()
