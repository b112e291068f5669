"""Pooled keep-alive HTTP connections to model servers, with least-outstanding-requests choice.

Bodies pass through as bytes. A connection that fails before any response byte is retried on another
endpoint of the same arm (inference is a pure function of its input, so a retry is safe).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from serving.errors import BadGateway, ClientGone, GatewayTimeout, ServiceUnavailable, ServingError
from serving.http_client import Abandoned, BadResponse, HTTPClient, Response, UpstreamConnectError

log = logging.getLogger("serving.router")
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",  # RFC 2616's spelling (an erratum), still sent by some clients
        b"transfer-encoding",
        b"proxy-connection",  # the pre-standard Connection some clients still send
        b"upgrade",
        b"expect",  # `100-continue` is between the client and the router's own server, which answers it
        b"host",
        b"content-length",
    }
)
# Tokens a Connection header may carry that name nothing to drop: hop-by-hop anyway, `close`, and the request
# id, which the router sends on itself (its own id, as it does when it makes one), so hops' logs correlate
_CONNECTION_TOKENS_KNOWN = HOP_BY_HOP | {b"close", b"", b"x-request-id"}
USUAL_CONNECTION = (b"keep-alive", b"close")  # Connection values that name no other header (most requests')


def connection_named(value: bytes) -> frozenset[bytes]:
    """The headers a Connection header names beyond the usual hop-by-hop ones: an intermediary removes them too
    (RFC 9110 §7.6.1). Empty for the common `keep-alive` and `close`."""
    if value in USUAL_CONNECTION:
        return frozenset()
    return frozenset(token.strip().lower() for token in value.split(b",")) - _CONNECTION_TOKENS_KNOWN


def forwarded_headers(
    headers: Iterable[tuple[bytes, bytes]], dropped: Container[bytes] = HOP_BY_HOP
) -> list[tuple[bytes, bytes]]:
    """A message's headers without the `dropped` ones (hop-by-hop) and those its Connection header names."""
    out = []
    named: frozenset[bytes] = frozenset()
    for key, value in headers:
        if key not in dropped:
            out.append((key, value))
        elif key == b"connection" and value not in USUAL_CONNECTION:
            named |= connection_named(value)
    return [(k, v) for k, v in out if k not in named] if named else out


def upstream_target(scope: Mapping[str, Any]) -> str:
    """The request-target to forward: the path as the client sent it, still percent-encoded, and its query.
    Never the decoded path: a `%0d%0a` in it would be a line break on the wire to the model server, one
    request split into two (RFC 9112 §11.2), and `%20` a space ending the request line."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope["path"], safe="/:@!$&'()*+,;=-._~")
    query = scope.get("query_string")
    return path + "?" + query.decode("latin-1") if query else path


# The router's own server adds `date` and `server` to what it sends: the model server's would be duplicates.
NOT_FORWARDED_BACK = HOP_BY_HOP | {b"date", b"server"}
# A request delivered to this many replicas that closed its connection without an answer is not sent again: one
# replica killed mid-request (kill -9, a crash) loses nothing, while a request that itself crashes replicas
# reaches two, not every one (RFC 9110 §9.2.2 on automatic retries).
MAX_CLOSED_DELIVERIES = 2
DOWN_FOR_S = 2.0  # after a connection failure, skip the endpoint this long (the supervisor replaces it)


class NoReplicaReached(ServiceUnavailable):
    """No replica took the request: every one refused the connection, closed it without an answer, or is marked
    down. The request may wait for a replica and go again (the router's activator); `closed_on` carries the
    replicas that closed it without an answer into that next try."""

    closed_on: frozenset[str] = frozenset()


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class Upstreams:
    """Keep-alive pools to every model server; counts requests in flight per endpoint."""

    def __init__(self, timeout_s: float = 60.0, unix_socket_dir: str | None = None) -> None:
        self.timeout_s = timeout_s
        self.outstanding: dict[str, int] = {}
        self.down_until: dict[str, float] = {}  # endpoint -> monotonic time it may be tried again
        self.pool = HTTPClient(unix_socket_dir=unix_socket_dir)  # `serving up`'s replicas: their Unix sockets

    def pick(self, endpoints: Iterable[str], exclude: Container[str] = ()) -> str | None:
        best, best_load = None, None
        now = time.monotonic()
        for endpoint in endpoints:
            if endpoint in exclude or self.down_until.get(endpoint, 0.0) > now:
                continue
            load = self.outstanding.get(endpoint, 0)
            if best_load is None or load < best_load:
                best, best_load = endpoint, load
        return best

    async def forward(
        self,
        endpoints: tuple[str, ...],
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout_s: float | None = None,
        stated_s: float | None = None,
        closed_before: str = "",
        closed_earlier: frozenset[str] = frozenset(),
    ) -> tuple[str, UpstreamResponse]:
        """Send to the least-loaded endpoint; on a connection failure try the next one, within the one timeout
        (a retry does not start it over). `stated_s`: the timeout a 504 names, when `timeout_s` is what is left
        of it. `closed_before`: the endpoint that closed this request's connection without an answer just before
        (the lane's try): it counts, and the request goes elsewhere first. `closed_earlier`: the endpoints that
        closed it in an earlier call (before the activator's hold)."""
        tried: set[str] = {closed_before} if closed_before else set()
        last_error = "no ready replica"
        # The replicas that closed it without an answer, over kept-alive connections too (the server closing one
        # idle just as it was written to is rare: its FIN closes it in the pool first; a crash is not). Counted
        # by replica: two stale pooled connections to one dead replica are one delivery, not two
        closed_on = closed_earlier | {closed_before} if closed_before else closed_earlier
        timeout_s = timeout_s or self.timeout_s
        stated_s = stated_s or timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            endpoint = self.pick(endpoints, tried)
            if endpoint is None:
                unreached = NoReplicaReached(f"no replica could take the request ({last_error})")
                unreached.closed_on = closed_on
                raise unreached
            left = deadline - time.monotonic()
            if left <= 0:
                raise _timed_out(stated_s)
            tried.add(endpoint)
            self.outstanding[endpoint] = self.outstanding.get(endpoint, 0) + 1
            try:
                return endpoint, await self._send(endpoint, method, path, headers, body, left, stated_s)
            except UpstreamConnectError as exc:
                # A refused connect, or a peer that dropped the connection before answering.
                self.down_until[endpoint] = time.monotonic() + DOWN_FOR_S
                if exc.sent:
                    closed_on = closed_on | {endpoint}
                if (
                    len(closed_on) >= MAX_CLOSED_DELIVERIES
                ):  # a request that kills its replica does not go to all
                    raise ServiceUnavailable(
                        f"the model server closed the connection without an answer, {len(closed_on)} times: "
                        "the request is not sent again (it may be what makes replicas fail)"
                    ) from exc
                # what happened, not where: a replica's address is no business of the client's
                last_error = "a replica refused the connection or closed it before answering"
                log.info("replica %s not reached: %s", endpoint, exc)
            except BadResponse as exc:  # it answered, badly: the connection is closed, the replica serves on
                raise _bad_answer(exc) from exc
            except ConnectionError as exc:
                self.down_until[endpoint] = time.monotonic() + DOWN_FOR_S
                raise _failed_mid_response(exc) from exc
            finally:
                self.outstanding[endpoint] -= 1

    def try_forward(
        self,
        endpoints: tuple[str, ...],
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout_s: float,
        done: Callable[[UpstreamResponse | ServingError | UpstreamConnectError], None],
    ) -> Callable[[], None] | None:
        """`forward` from callbacks, when the least-loaded endpoint has an idle connection (else False, nothing
        sent). `done` gets the response, the error to answer (504, or 503 for a failure mid-response), or an
        `UpstreamConnectError`: the request reached no server that answered, and the caller retries it through
        `forward` (which marks the endpoint down if a fresh connection fails too). The returned callable
        abandons the request (its client left): `done` then gets `ClientGone`."""
        endpoint = self.pick(endpoints)
        if endpoint is None:
            return None

        def finished(outcome: Response | BaseException) -> None:
            self.outstanding[endpoint] -= 1
            if isinstance(outcome, Response):
                done(_answer(outcome, method))
            elif isinstance(outcome, TimeoutError):
                done(_timed_out(timeout_s))
            elif isinstance(outcome, UpstreamConnectError):
                # An idle connection the server had closed, or a server gone: `forward` finds out which.
                outcome.endpoint = endpoint
                done(outcome)
            elif isinstance(outcome, Abandoned):  # its client left: no fault of the endpoint's
                done(ClientGone(str(outcome)))
            elif isinstance(outcome, BadResponse):
                done(_bad_answer(outcome))
            else:
                self.down_until[endpoint] = time.monotonic() + DOWN_FOR_S
                done(_failed_mid_response(outcome))

        self.outstanding[endpoint] = self.outstanding.get(endpoint, 0) + 1
        abandon = self.pool.try_send(endpoint, method, path, headers, body, timeout_s, finished)
        if abandon is None:
            self.outstanding[endpoint] -= 1
        return abandon

    async def _send(
        self,
        endpoint: str,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout_s: float,
        stated_s: float,
    ) -> UpstreamResponse:
        try:
            response = await self.pool.request(
                endpoint, method, path, headers, body, timeout_s, retry_closed=False
            )
        except TimeoutError:
            raise _timed_out(stated_s) from None
        return _answer(response, method)

    def idle(self, endpoints: Iterable[str]) -> bool:
        return all(self.outstanding.get(e, 0) == 0 for e in endpoints)

    async def drain(self, endpoints: Iterable[str], timeout_s: float = 30.0) -> None:
        """Wait (bounded) until no request is in flight to these endpoints."""
        endpoints = tuple(endpoints)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.idle(endpoints) and loop.time() < deadline:
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.pool.aclose()


def _answer(response: Response, method: str) -> UpstreamResponse:
    """What goes back to the client: the model server's answer without hop-by-hop or duplicate headers. Its
    Content-Length is the body's; for HEAD, the model server's (RFC 9110 §8.6: what GET would send; the body
    is empty)."""
    out = forwarded_headers(response.headers, NOT_FORWARDED_BACK)
    if method == "HEAD":
        out += [(k, v) for k, v in response.headers if k == b"content-length"]
    elif response.status in (204, 304):
        pass  # no Content-Length on these (RFC 9110 §8.6)
    else:
        out.append((b"content-length", str(len(response.body)).encode()))
    return UpstreamResponse(response.status, out, response.body)


def _timed_out(timeout_s: float) -> GatewayTimeout:
    return GatewayTimeout(f"model server did not answer within {timeout_s:g}s")


def _bad_answer(exc: BaseException) -> BadGateway:
    return BadGateway(f"model server sent an invalid answer: {exc}")


def _failed_mid_response(exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(f"model server failed mid-response: {exc}")
