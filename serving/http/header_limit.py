"""uvicorn's httptools protocol with bounds on what a client can hold, and JSON for every refusal below the app.

- Head size: httptools (unlike h11) has no header size limit: a client could stream megabytes of header and
  the server would buffer all of it. A head past `config.h11_max_incomplete_event_size` (the setting uvicorn
  already uses for the same purpose with h11) is answered `431 {"error": ...}` — whether it is still
  arriving or came complete in one chunk.
- Time: one timer per connection (never one per request), armed lazily and checked when it fires: a request
  line and headers must arrive within `header_timeout_s` of the connection opening or of the previous
  response (408 if some of it came, else a silent close), a body must not go `body_timeout_s` without a byte
  (408), and an idle kept-alive connection closes after uvicorn's `timeout_keep_alive`. A request being
  answered runs on no clock of ours (the app has its own request timeout).
- Refusals (malformed HTTP, including body framing; the 431; the 408s): `{"error": ...}` naming what was
  wrong, written after the answers to every complete request before it on the connection, in order (RFC 9112
  §9.3.2: pipelined requests are not dropped), then the connection closes; nothing more is read or parsed.
- RFC 9112's musts on the head: an HTTP/1.1 request without a Host header, or any with two, is a 400; a
  version other than 1.0 and 1.1 (an `HTTP/2.0` request line) is a 505.
- A response that starts before its request's body was all read (a 413 from the Content-Length, any early
  answer) says `connection: close` and closes the connection after it: the rest of the body is never read.
- An `Upgrade` (h2c, websocket) is ignored, as RFC 9110 §7.8 allows: the request is read and answered as
  HTTP/1.1, body included (llhttp stops at the end of such a head, so the head is parsed again without it).
Every server of ours selects this class (`serving/http/launcher.py`), so worker processes import it. It
subclasses uvicorn internals: pyproject pins uvicorn to the minor version these tests run against
(test_limits, test_coalescing_transport, test_launcher, test_http_edge).

Its transport holds writes until the end of the event loop's turn and then sends every response of the turn
back to back, head and body in one write (serving/http/turn_writes.py): one wake-up of each peer per turn.
A POST with a declared body, on a connection with nothing pending, gets a `LeanCycle` instead of uvicorn's
cycle (serving/http/lean_cycle.py): same app, same scope, less machinery per request. A body from
DIRECT_BODY_MIN_BYTES up is read from the socket straight into the one buffer the app gets
(serving/http/direct_body.py).
"""

from __future__ import annotations

import asyncio
import math
import re
import select
import urllib.parse
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.client_gone import CONNECTION_KEY
from serving.http.direct_body import DIRECT_BODY_MIN_BYTES, BodyReader, unfilled_bytearray
from serving.http.lean_cycle import LeanCycle, lean_runner
from serving.http.turn_writes import TurnBatchedTransport, turn_writes

DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT_S = 30.0  # nginx's client_header_timeout is 60 s
DEFAULT_BODY_TIMEOUT_S = 30.0  # nginx's client_body_timeout is 60 s
# A body of a declared length up to this is handed to the app in one piece, when it is complete. uvicorn
# hands over every 64 KiB (pausing the socket until the app asks again): for a 4 MB tensor that is ~60 task
# wake-ups, pause/resume pairs and copies, and a join at the end. The app holds the whole body anyway (and
# answers 413 over its own, smaller limit before reading: the connection then closes, the rest unread).
WHOLE_BODY_MAX_BYTES = 256 * 1024 * 1024
_BAD_REQUEST = b"400 Bad Request"
_TIMEOUT = b"408 Request Timeout"
_TOO_LARGE = b"431 Request Header Fields Too Large"
_VERSION = b"505 HTTP Version Not Supported"
_NOT_IMPLEMENTED = b"501 Not Implemented"
# What a Host value may hold (RFC 3986 reg-name, IPv4, [IPv6], :port); anything left after deleting these is not
_HOST_BYTES = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%:[]"
_MALFORMED = "malformed HTTP request (request line, headers or framing)"
_NEVER = math.inf


def _codings_then_chunked(value: bytes) -> bool:
    """`gzip, chunked`: codings we do not undo, before the framing we do."""
    if b"," not in value:  # `chunked` alone, the usual one
        return False
    codings = [token.strip() for token in value.lower().split(b",")]
    return len(codings) > 1 and codings[-1] == b"chunked"


_REQUEST_LINE = re.compile(rb"(?:^|\n)([!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \r\n]+ HTTP/\d\.\d)\r?\n")


def _names_unknown_method(data: bytes) -> bool:
    """A well-formed request line in `data` whose method llhttp refuses (the chunk's earlier requests, if
    pipelined, were parsed: their methods are known)."""
    for line in _REQUEST_LINE.findall(data):
        try:
            httptools.HttpRequestParser(_NoCallbacks()).feed_data(line + b"\r\n")
        except httptools.HttpParserInvalidMethodError:
            return True
        except httptools.HttpParserError:
            continue
    return False


class _NoCallbacks:
    pass


class Refused(Exception):
    """Raised from a parser callback: the request is refused with `status` and `{"error": message}`."""

    def __init__(self, status: bytes, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _NotParsed:
    """The parser of a refused connection: nothing after the refused request is parsed."""

    def feed_data(self, data: bytes) -> None:
        pass


_NOT_PARSED: Any = _NotParsed()


def _new_parser(protocol: Any) -> httptools.HttpRequestParser:
    parser = httptools.HttpRequestParser(protocol)
    # As uvicorn's: a request after one that closes the connection is not an error (it is not answered).
    parser.set_dangerous_leniencies(lenient_data_after_close=True)
    return parser


class HeaderLimitedProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Any,
        *args: Any,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, *args, **kwargs)
        self.max_header_bytes: int = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEADER_BYTES
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self._head_pending = True  # between requests, or inside a request line / headers
        self._head_started = False  # some bytes of the pending head arrived
        self._head_bytes = 0
        self._head_completed = False  # set when a head completes during the current data_received
        self._whole_body = False  # this request's body is delivered once complete (see WHOLE_BODY_MAX_BYTES)
        self._pieces: list[bytes] = []
        self._direct: bytearray | None = None  # a large whole body's buffer, filled up to self._direct_filled
        self._direct_filled = 0
        self._keep_alive_after_body = True  # uvicorn's cycle: its keep-alive once its body is all read
        self._upgrade_ignored = False  # the head just parsed asked for an Upgrade: parsed again without it
        self._version = "1.1"  # the HTTP version of the head being answered (read once per head)
        self._trailing = False  # the head is parsed: a header now is a chunked body's trailer field
        self._refusal: bytes | None = None  # once refused: the answer still to write (b"": close only)
        # The one timer (see the module docstring) and what it checks
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = _NEVER
        self._idle_since: float | None = None  # when the wait for a head began; None while one is answered
        self._body_at = 0.0  # when body bytes last arrived
        # After a response: the first deadline that can come (keep-alive, or a head begun and not finished)
        self._idle_check_s = min(self.timeout_keep_alive, header_timeout_s)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._turn = turn_writes(self.loop)
        self._lean = lean_runner(self.loop)
        # An app may answer lean requests itself, from callbacks (the router: serving/router/lane.py).
        self._direct_lane = getattr(self.app, "direct_lane", None)
        # A body declared over the app's own limit is not gathered first: the app answers 413 from the
        # Content-Length and the connection closes (the model server and the router say theirs).
        limit = getattr(self.app, "max_body_bytes", None)
        self._whole_body_max = (
            min(limit, WHOLE_BODY_MAX_BYTES) if isinstance(limit, int) else WHOLE_BODY_MAX_BYTES
        )
        self._open_requests = 0  # this connection's share of self._turn.open_requests
        super().connection_made(TurnBatchedTransport(transport, self.loop))  # type: ignore[arg-type]
        self._idle_since = now = self.loop.time()
        self._arm(now + self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, _NEVER
        if self._open_requests:
            self._turn.finished(self._open_requests)
            self._open_requests = 0

    def shutdown(self) -> None:
        self._keep_alive_after_body = (
            False  # a request still arriving is answered, then the connection closes
        )
        super().shutdown()

    # The timer
    def _arm(self, at: float) -> None:
        """The connection's timer fires at `at` (loop time), unless it is armed to fire sooner."""
        if at >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._check_timeouts)

    def _check_timeouts(self) -> None:
        """What the connection is waiting for, and whether it waited too long; armed again for what is left."""
        self._timer, self._timer_at = None, _NEVER
        if self._refusal is not None or self.transport.is_closing():
            return
        now = self.loop.time()
        if not self._head_pending:  # inside a request's body
            if self.flow.read_paused:
                self._body_at = (
                    now  # the app is not reading (or a response is pending): no stall of the client
                )
            deadline = self._body_at + self.body_timeout_s
            if now >= deadline:
                self._refuse(_TIMEOUT, f"no bytes of the request body arrived for {self.body_timeout_s:g} s")
                return
        elif self._idle_since is None:
            return  # a request is being answered: its response arms the timer again
        elif self._head_started:
            deadline = self._idle_since + self.header_timeout_s
            if now >= deadline:
                self._refuse(
                    _TIMEOUT,
                    f"the request line and headers did not arrive within {self.header_timeout_s:g} s",
                )
                return
        else:  # nothing of a next request: a new connection waits for its first, a used one is kept alive
            deadline = self._idle_since + (
                self.header_timeout_s if self.cycle is None else self.timeout_keep_alive
            )
            if now >= deadline:
                if not _unread(self.transport):
                    self.transport.close()
                    return
                # Its next request is already here, unread: timers run before reads in a turn of the loop, and a
                # process paused past the deadline (SIGSTOP, a stall) finds both due at once. Closing now would
                # drop that request without an answer; it is read next in this same turn.
                deadline = now + self._idle_check_s
        self._arm(deadline)

    # Reading
    def data_received(self, data: bytes) -> None:
        counting = self._head_pending
        self._head_completed = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._parse_without_upgrade(data[upgrade.args[0] :])
            return
        except httptools.HttpParserError as exc:
            self._refuse_malformed(exc, data)
            return
        if self._direct is not None and not self.transport.is_closing():
            # The rest of a large body: read into its buffer by a protocol of its own, past the parser.
            self.transport.set_protocol(BodyReader(self, self._direct, self._direct_filled))
            self._direct = None
        if self._head_pending:
            # A chunk that completed a head was measured exactly in on_headers_complete (it may also hold the
            # whole body and end the message, which makes a head pending again): count only chunks that left
            # it incomplete.
            if counting and not self._head_completed and not self.transport.is_closing():
                self._head_bytes += len(data)
                if self._head_bytes > self.max_header_bytes:
                    self._refuse(_TOO_LARGE, self._too_large())
        else:  # a body is still arriving (never the case for a request that came in one read)
            self._body_at = now = self.loop.time()
            self._arm(now + self.body_timeout_s)

    def _parse_without_upgrade(self, rest: bytes) -> None:
        """llhttp stops at the end of a head that asks for an Upgrade (what follows would be the other
        protocol): the head is parsed again by a fresh parser without its `upgrade` header, then the rest."""
        self._upgrade_ignored = False
        parser = self.parser
        head = [parser.get_method(), b" ", self.url, b" HTTP/", parser.get_http_version().encode(), b"\r\n"]
        for name, value in self.headers:
            if name != b"upgrade":
                head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        self.parser = _new_parser(self)
        self.data_received(b"".join(head) + rest)

    def on_message_begin(self) -> None:
        """uvicorn's, and the head's clock knows some of it arrived."""
        self._head_started = True
        self._trailing = False
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    def on_header(self, name: bytes, value: bytes) -> None:
        """uvicorn's, except for a trailer field (after a chunked body): llhttp reports those as headers, and
        they would join the head the app already has (auth, routing, the request id). RFC 9112 §7.1.2: not
        merged; dropped here."""
        if self._trailing:
            return
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._trailing = True  # what comes after the head is body, then trailers
        # One pass: the head's size, the declared body length (none: over any limit, streamed as uvicorn
        # does, e.g. chunked) and the Host headers
        size, length, hosts = len(self.url), -1, 0
        for name, value in self.headers:
            size += len(name) + len(value) + 4
            if name == b"content-length":
                if length < 0 and value.isdigit():
                    length = int(value)
            elif name == b"host":
                hosts += 1
                # RFC 9112 §3.2: a Host that is no host[:port] is a 400 (nothing may be left once they are gone)
                if value.translate(None, _HOST_BYTES):
                    raise Refused(_BAD_REQUEST, f"Host {value.decode('latin-1')!r} is not a host[:port]")
            elif name == b"transfer-encoding" and _codings_then_chunked(value):
                # llhttp frames by the final `chunked` and would hand the app still-coded bytes (RFC 9112 §6.1;
                # `chunked` not last is llhttp's 400, as §6.3 asks)
                raise Refused(
                    _NOT_IMPLEMENTED,
                    f"Transfer-Encoding {value.decode('latin-1')!r} is not supported: send chunked alone "
                    "(compress with Content-Encoding: gzip)",
                )
        if size > self.max_header_bytes:
            raise Refused(_TOO_LARGE, self._too_large())  # httptools re-raises it from feed_data
        self._version = version = self.parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise Refused(_VERSION, f"HTTP/{version} is not supported here: send HTTP/1.1 (or use gRPC)")
        if hosts != 1 and (hosts or version == "1.1"):  # RFC 9112 §3.2: a MUST, and the router routes on it
            raise Refused(
                _BAD_REQUEST,
                "an HTTP/1.1 request needs exactly one Host header"
                if hosts == 0
                else f"{hosts} Host headers: a request has exactly one",
            )
        if version == "1.0":
            self.expect_100_continue = False  # RFC 9110 §10.1.1: ignored from an HTTP/1.0 client
        if self.url[:1] != b"/":
            self._host_from_target()
        self._head_completed = True
        if self.parser.should_upgrade():
            if self.parser.get_method() == b"CONNECT":
                raise Refused(_BAD_REQUEST, "CONNECT is not supported: this server is not a proxy")
            self._upgrade_ignored = True  # no cycle: the head is parsed again without it (data_received)
            return
        self._head_pending = self._head_started = False
        self._idle_since = None
        self._head_bytes = 0
        if length < 0:
            length = WHOLE_BODY_MAX_BYTES + 1
        self._whole_body = whole = length <= self._whole_body_max
        self._pieces = []
        if whole:
            if length >= DIRECT_BODY_MIN_BYTES:
                self._direct, self._direct_filled = unfilled_bytearray(length), 0
            if self._lean_fits():
                self._start_lean()
            else:
                self._start_uvicorn_cycle()
        else:
            self._start_uvicorn_cycle()
        self._open_requests += 1
        self._turn.opened()

    def _host_from_target(self) -> None:
        """An absolute-form request (`POST http://host/v1/...`): its authority is the Host, whatever the Host
        header says (RFC 9112 §3.2.2), and the router routes on it."""
        try:
            parsed = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            return  # the request's own parsing refuses it
        if not parsed.host:
            return
        host = b"[" + parsed.host + b"]" if b":" in parsed.host else parsed.host  # an IPv6 literal
        authority = host + (b":%d" % parsed.port if parsed.port else b"")
        self.headers[:] = [(k, authority if k == b"host" else v) for k, v in self.headers]

    def _start_uvicorn_cycle(self) -> None:
        """uvicorn's cycle, closing its connection if it answers before its body is all read (a 413 from the
        Content-Length, a 404 that never read it): until then it says `connection: close`, and closes after
        its response, so the rest of the body is never read. The body complete, it keeps what it had."""
        super().on_headers_complete()
        cycle = self.cycle
        self._keep_alive_after_body = cycle.keep_alive
        cycle.keep_alive = False

    def _lean_fits(self) -> bool:
        """A POST with a declared body, nothing unusual, on a connection with no response pending."""
        return (
            self.parser.get_method() == b"POST"
            and not self.expect_100_continue
            and (self.cycle is None or self.cycle.response_complete)
            and self.limit_concurrency is None
        )

    def _start_lean(self) -> None:
        """The scope exactly as uvicorn completes it (on_headers_complete), and a `LeanCycle` for it."""
        http_version = self._version  # read once, by on_headers_complete
        scope: Any = self.scope
        scope["method"] = "POST"
        if http_version != "1.1":
            scope["http_version"] = http_version
        url = self.url
        # The usual origin form (`/path?query`) is split here, as parse_url would split it, for less
        if url[:1] == b"/" and b"#" not in url:
            raw_path, _, query = url.partition(b"?")
        else:
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path, parsed.query or b""
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        root_path = self.root_path
        scope["path"] = root_path + path if root_path else path
        scope["raw_path"] = root_path.encode("ascii") + raw_path if root_path else raw_path
        scope["query_string"] = query
        keep_alive = http_version != "1.0" and self.parser.should_keep_alive()
        scope[CONNECTION_KEY] = self.transport  # asked after the model run: is its client still there?
        self.cycle = LeanCycle(self, scope, keep_alive)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        direct = self._direct
        if direct is not None:  # the head's read brought the start of a large body
            filled = self._direct_filled
            direct[filled : filled + len(body)] = body
            self._direct_filled = filled + len(body)
            if self._direct_filled == len(direct):
                self._pieces, self._direct = [direct], None  # type: ignore[list-item]
            return
        if self._whole_body and not self.cycle.response_complete:
            self._pieces.append(body)  # no wake-up: on_message_complete sets the event once all is here
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """uvicorn's (without its upgrade check: an upgrade never has a cycle here), with the whole body."""
        if self._upgrade_ignored:
            return
        self._head_pending = True
        self._whole_body = False
        pieces, self._pieces = self._pieces, []
        cycle: Any = self.cycle
        if cycle.response_complete:
            return
        if pieces:
            # bytes, not uvicorn's bytearray: its receive() hands `bytes(body)` over, which copies a bytearray
            # but returns a bytes object as it is. One piece (the usual case) is not copied at all.
            cycle.body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        cycle.more_body = False
        if type(cycle) is LeanCycle:
            if self._direct_lane is None or not self._direct_lane.take(cycle):
                self._lean.add(cycle)
        else:
            if not cycle.response_started:
                cycle.keep_alive = self._keep_alive_after_body
            cycle.message_event.set()

    def body_wanted(self) -> bool:
        """Whether the body `BodyReader` is reading will be read (asked before each read: the body's clock)."""
        self._body_at = self.loop.time()
        return not self.cycle.response_complete

    def body_read(self, body: bytearray) -> None:
        """`BodyReader` filled the body: the connection is ours again, with a parser for the next request
        (this one saw the head and the start of the body only)."""
        self.transport.set_protocol(self)
        self.parser = _new_parser(self)
        self._pieces = [body]  # type: ignore[list-item]
        self.on_message_complete()

    def run_lean(self, cycle: LeanCycle) -> None:
        """Run the app for a lean request (one the direct lane gave back before answering it)."""
        self._lean.add(cycle)

    # Answers
    def on_response_complete(self) -> None:
        """uvicorn's, with the timer armed once per idle stretch instead of once per response (a timer armed
        and cancelled per request cost ~1.3 us): it checks when it fires, and waits on if the connection was
        used meanwhile. A refusal waiting for the answers before it is written after the last of them."""
        self.server_state.total_requests += 1
        if self._open_requests:
            self._open_requests -= 1
            self._turn.finished()
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if (
            not self._head_pending
        ):  # a pipelined request's body, unread while this one was answered: its clock
            self._body_at = now = self.loop.time()  # starts again now, not at the last look while paused
            self._arm(now + self.body_timeout_s)
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._refusal is not None:
            if not self._open_requests:
                self._close_refused()
        elif self._head_pending:
            self._idle_since = now = self.loop.time()
            self._arm(now + self._idle_check_s)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's name for refusing unparsable HTTP (only our data_received refuses, by `_refuse`)."""
        self._refuse(_BAD_REQUEST, _MALFORMED)

    def _too_large(self) -> str:
        return f"request line and headers are over the limit of {self.max_header_bytes} bytes"

    def _refuse_malformed(self, exc: httptools.HttpParserError, data: bytes = b"") -> None:
        cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else None
        if isinstance(cause, Refused):
            self._refuse(cause.status, cause.message)
            return
        self.logger.warning("Invalid HTTP request received.")  # as uvicorn logs it
        if isinstance(exc, httptools.HttpParserInvalidMethodError) and _names_unknown_method(data):
            # RFC 9110 §9.1: a well-formed request line with a method we do not know (not `GARBAGE`)
            self._refuse(_NOT_IMPLEMENTED, "request method not implemented: send GET, HEAD or POST")
        elif str(exc) == "Invalid HTTP version":  # `HTTP/1.2`, `HTTP/3.0`: llhttp parses 0.9-1.1 and 2.0 only
            self._refuse(_VERSION, "this HTTP version is not supported here: send HTTP/1.1 (or use gRPC)")
        else:  # llhttp's reason ("Invalid character in chunk size"): a constant, never bytes of the request
            self._refuse(_BAD_REQUEST, _MALFORMED if cause is not None else f"{_MALFORMED}: {exc}")

    def _refuse(self, status: bytes, message: str) -> None:
        """A request the app will not see (malformed, over the head limit, too slow): nothing more is read or
        parsed; `{"error": message}` is written once every request before it on the connection is answered,
        in order, and the connection closes."""
        if self._refusal is not None or self.transport.is_closing():
            return
        self.parser = _NOT_PARSED
        self._upgrade_ignored = False
        self.flow.read_paused = False  # so that nothing resumes reading: the connection is done
        self.transport.pause_reading()
        body = orjson.dumps({"error": message})
        answer = b"".join(
            [
                b"HTTP/1.1 " + status + b"\r\n",
                # date and server, as on every other answer (RFC 9110 §6.6.1: a 4xx carries a Date)
                *(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers),
                b"content-type: application/json\r\ncontent-length: " + str(len(body)).encode(),
                b"\r\nconnection: close\r\n\r\n" + body,
            ]
        )
        if not self._head_pending:  # the refused request's head was parsed: its cycle never gets the rest
            self._head_pending = True
            self._direct = None
            cycle: Any = self.cycle
            if cycle.response_started:  # answered early: it closes the connection once that answer is out
                answer = b""
            else:
                cycle.disconnected = True  # its app (if it runs) hears a disconnect; what it sends is dropped
                cycle.message_event.set()
                for entry in self.pipeline:
                    if entry[0] is cycle:
                        self.pipeline.remove(entry)
                        break
                if self._open_requests:
                    self._open_requests -= 1
                    self._turn.finished()
        self._refusal = answer
        if not self._open_requests:
            self._close_refused()

    def _close_refused(self) -> None:
        if self._refusal:
            self.transport.write(self._refusal)
        self.transport.close()


def _unread(transport: Any) -> bool:
    """Whether bytes (or the peer's close) wait on the connection's socket, not yet read by the loop."""
    sock = transport.get_extra_info("socket")
    try:
        fd = sock.fileno() if sock is not None else -1
        return fd >= 0 and bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return False
