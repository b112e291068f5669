"""uvicorn's httptools protocol with a bound on the request line + headers, and JSON for malformed HTTP.

httptools (unlike h11) has no header size limit: a client could stream megabytes of header and the server
would buffer all of it. This subclass answers `431 {"error": ...}` and closes the connection once the head
of a request passes `config.h11_max_incomplete_event_size` (the setting uvicorn already uses for the same
purpose with h11) — whether the head is still arriving or came complete in one chunk. uvicorn's plain-text
400 for unparsable HTTP becomes `{"error": ...}` too. Every server of ours selects it by import string
(`serving/http/launcher.py`), so worker processes import it. It subclasses uvicorn internals: pyproject pins
uvicorn to the minor version these tests run against (test_limits, test_coalescing_transport, test_launcher).

Its transport holds writes until the end of the event loop's turn and then sends every response of the turn
back to back, head and body in one write (serving/http/turn_writes.py): one wake-up of each peer per turn.
A POST with a declared body, on a connection with nothing pending, gets a `LeanCycle` instead of uvicorn's
cycle (serving/http/lean_cycle.py): same app, same scope, less machinery per request. A body from
DIRECT_BODY_MIN_BYTES up is read from the socket straight into the one buffer the app gets
(serving/http/direct_body.py).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.http.direct_body import DIRECT_BODY_MIN_BYTES, BodyReader, unfilled_bytearray
from serving.http.lean_cycle import LeanCycle, lean_runner
from serving.http.turn_writes import TurnBatchedTransport, turn_writes

DEFAULT_MAX_HEADER_BYTES = 64 * 1024
# A body of a declared length up to this is handed to the app in one piece, when it is complete. uvicorn
# hands over every 64 KiB (pausing the socket until the app asks again): for a 4 MB tensor that is ~60 task
# wake-ups, pause/resume pairs and copies, and a join at the end. The app holds the whole body anyway (and
# answers 413 over its own, smaller limit before reading: what arrives after the answer is dropped).
WHOLE_BODY_MAX_BYTES = 256 * 1024 * 1024


class HeadersTooLarge(Exception):
    pass


class HeaderLimitedProtocol(HttpToolsProtocol):
    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.max_header_bytes: int = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEADER_BYTES
        self._head_pending = True  # between requests, or inside a request line / headers
        self._head_bytes = 0
        self._oversize = False
        self._head_completed = False  # set when a head completes during the current data_received
        self._whole_body = False  # this request's body is delivered once complete (see WHOLE_BODY_MAX_BYTES)
        self._pieces: list[bytes] = []
        self._direct: bytearray | None = None  # a large whole body's buffer, filled up to self._direct_filled
        self._direct_filled = 0
        self._idle_since: float | None = None  # loop time of the last response with nothing after it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._turn = turn_writes(self.loop)
        self._lean = lean_runner(self.loop)
        # An app may answer lean requests itself, from callbacks (the router: serving/router/lane.py).
        self._direct_lane = getattr(self.app, "direct_lane", None)
        # A body declared over the app's own limit is not gathered first: the app answers 413 from the
        # Content-Length and uvicorn drops what follows (the model server and the router say theirs).
        limit = getattr(self.app, "max_body_bytes", None)
        self._whole_body_max = (
            min(limit, WHOLE_BODY_MAX_BYTES) if isinstance(limit, int) else WHOLE_BODY_MAX_BYTES
        )
        self._open_requests = 0  # this connection's share of self._turn.open_requests
        super().connection_made(TurnBatchedTransport(transport, self.loop))  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        if self._open_requests:
            self._turn.finished(self._open_requests)
            self._open_requests = 0

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive timer armed once per idle stretch instead of once per response (a
        timer armed and cancelled per request cost ~1.3 us): it checks when it fires, and waits on if the
        connection was used meanwhile."""
        self.server_state.total_requests += 1
        if not self.transport.is_closing():
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            else:
                self._idle_since = self.loop.time()
                if self.timeout_keep_alive_task is None:
                    self.timeout_keep_alive_task = self.loop.call_later(
                        self.timeout_keep_alive, self.timeout_keep_alive_handler
                    )
        if self._open_requests:
            self._open_requests -= 1
            self._turn.finished()

    def _unset_keepalive_if_required(self) -> None:
        """Data arrived: the connection is busy until its next response completes (the timer stays armed)."""
        self._idle_since = None

    def timeout_keep_alive_handler(self) -> None:
        self.timeout_keep_alive_task = None
        if self.transport.is_closing() or self._idle_since is None:
            return  # gone, or busy: armed again when its response completes
        remaining = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if remaining > 0:
            self.timeout_keep_alive_task = self.loop.call_later(remaining, self.timeout_keep_alive_handler)
        else:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        counting = self._head_pending
        self._head_completed = False
        super().data_received(data)
        if self._direct is not None and not self.transport.is_closing():
            # The rest of a large body: read into its buffer by a protocol of its own, past the parser.
            self.transport.set_protocol(BodyReader(self, self._direct, self._direct_filled))
            self._direct = None
        # A chunk that completed a head was measured exactly in on_headers_complete (it may also hold the whole
        # body and end the message, which makes a head pending again): count only chunks that left it incomplete.
        if counting and not self._head_completed and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._oversize = True
                self.send_400_response("")

    def on_headers_complete(self) -> None:
        self._head_pending = False
        self._head_completed = True
        self._head_bytes = 0
        # One pass: the head's size, and the declared body length (none: over any limit, streamed as uvicorn
        # does, e.g. chunked)
        size, length = len(self.url), -1
        for name, value in self.headers:
            size += len(name) + len(value) + 4
            if length < 0 and name == b"content-length" and value.isdigit():
                length = int(value)
        if size > self.max_header_bytes:
            self._oversize = True
            raise HeadersTooLarge  # httptools re-raises it from feed_data; uvicorn then calls send_400_response
        if length < 0:
            length = WHOLE_BODY_MAX_BYTES + 1
        self._whole_body = whole = length <= self._whole_body_max
        self._pieces = []
        if whole:
            upgrade = self.parser.should_upgrade()
            if length >= DIRECT_BODY_MIN_BYTES and not upgrade:
                self._direct, self._direct_filled = unfilled_bytearray(length), 0
            if not upgrade and self._lean_fits():
                self._start_lean()
            else:
                super().on_headers_complete()
        else:
            super().on_headers_complete()
        self._open_requests += 1
        self._turn.opened()

    def _lean_fits(self) -> bool:
        """A POST with a declared body, nothing unusual, on a connection with no response pending (and no
        upgrade: the caller asked the parser)."""
        return (
            self.parser.get_method() == b"POST"
            and not self.expect_100_continue
            and (self.cycle is None or self.cycle.response_complete)
            and self.limit_concurrency is None
        )

    def _start_lean(self) -> None:
        """The scope exactly as uvicorn completes it (on_headers_complete), and a `LeanCycle` for it."""
        http_version = self.parser.get_http_version()
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
        # (an upgrade request has no cycle of its own: uvicorn's checks, in uvicorn's order)
        if self._whole_body and not self.parser.should_upgrade() and not self.cycle.response_complete:
            self._pieces.append(body)  # no wake-up: on_message_complete sets the event once all is here
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        pieces, self._pieces = self._pieces, []
        if pieces and not self.cycle.response_complete:
            # bytes, not uvicorn's bytearray: its receive() hands `bytes(body)` over, which copies a bytearray
            # but returns a bytes object as it is. One piece (the usual case) is not copied at all.
            self.cycle.body = pieces[0] if len(pieces) == 1 else b"".join(pieces)  # type: ignore[assignment]
        super().on_message_complete()
        self._head_pending = True
        self._whole_body = False
        cycle: Any = self.cycle
        if type(cycle) is LeanCycle and not cycle.response_complete:
            if self._direct_lane is None or not self._direct_lane.take(cycle):
                self._lean.add(cycle)

    def body_wanted(self) -> bool:
        """Whether the body `BodyReader` is reading will be read (not when the app answered before it)."""
        return not self.cycle.response_complete

    def body_read(self, body: bytearray) -> None:
        """`BodyReader` filled the body: the connection is ours again, with a parser for the next request
        (this one saw the head and the start of the body only)."""
        self.transport.set_protocol(self)
        self.parser = httptools.HttpRequestParser(self)
        self._pieces = [body]  # type: ignore[list-item]
        self.on_message_complete()

    def run_lean(self, cycle: LeanCycle) -> None:
        """Run the app for a lean request (one the direct lane gave back before answering it)."""
        self._lean.add(cycle)

    def send_400_response(self, msg: str) -> None:
        """The one way out for a request that never reaches the app: a JSON error, then close."""
        if self._oversize:
            status = b"431 Request Header Fields Too Large"
            message = f"request line and headers are over the limit of {self.max_header_bytes} bytes"
        else:
            status, message = b"400 Bad Request", "malformed HTTP request (request line, headers or framing)"
        if self.cycle is None or self.cycle.response_complete:  # never interleave with a pipelined response
            body = orjson.dumps({"error": message})
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
            )
        self.transport.close()
