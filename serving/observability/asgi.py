"""`Observed`: the one hook per process (model server, transformer server, router), as a pure ASGI wrapper.

For each inference request (POST under /v1/models/ or /v2/models/) it settles the request id (and puts it
into the request headers, so a router forwards it), echoes it on the response, opens the request's span
(continuing the caller's trace), counts bytes in and out, writes the access log line and offers the request
and response bodies to the payload logger — after the response is sent, never in its way. Every other
request passes straight through.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.observability import request_id, tracing
from serving.observability.access_log import AccessLog, AccessRecord
from serving.observability.cloudevent import REQUEST_TYPE, RESPONSE_TYPE, InferenceEvent, Source
from serving.observability.payload_logger import PayloadLogger

# (scope, model name, revision the response names) -> (isvc, namespace, revision, arm): the router's view
Describe = Callable[[Scope, str, str], tuple[str, str, str, str]]
_REVISION = b"x-serving-revision"
_CONTENT_TYPE = b"content-type"
_CONTENT_LENGTH = b"content-length"
_JSON_LENGTH = b"inference-header-content-length"
_CONTENT_ENCODING = b"content-encoding"
_INFERENCE_PREFIXES = ("/v1/models/", "/v2/models/")


@dataclass(slots=True)
class _Exchange:
    """What one request brought and got, collected while it runs."""

    request_id: str
    started: float
    keep_request: bool
    keep_response: bool
    status: int = 0  # 0 until the response starts
    bytes_in: int = 0
    bytes_out: int = 0
    request_type: bytes = b"application/json"
    response_type: bytes = b"application/json"
    request_json_length: bytes = b""  # binary tensor extension: bytes of JSON before the raw tensors
    request_encoding: bytes = b""  # Content-Encoding as sent: the event carries the body inflated
    response_json_length: bytes = b""
    revision: str = ""
    metadata: str = ""  # the payload logger's `metadata` extension, from the request's headers
    trace_id: str = ""  # its span's trace, when tracing (taken while the span is current)
    request_offered: bool = False  # its request event is with the payload logger
    count_in: bool = True  # read the body's size from its chunks (no Content-Length, or capturing it)
    request_chunks: list[bytes] = field(default_factory=list)
    response_chunks: list[bytes] = field(default_factory=list)


class Observed:
    def __init__(
        self,
        app: ASGIApp,
        source: Source,
        access: AccessLog | None = None,
        payloads: PayloadLogger | None = None,
        describe: Describe | None = None,
        forwards_headers: bool = False,
    ) -> None:
        self.app, self.source, self.access, self.payloads, self.describe = (
            app,
            source,
            access,
            payloads,
            describe,
        )
        # The app sends the request's own headers on (the router): a new id must be among them. Other apps
        # reach the next hop through `propagation.outgoing`, which reads the id from `request_id.current`.
        self.forwards_headers = forwards_headers
        self.on_shutdown: list[Callable[[], None]] = []  # run when the server's lifespan ends
        self.direct_lane: Any = None  # what answers requests without calling the app (the router's: lane.py)

    def __getattr__(self, name: str) -> Any:  # the wrapped app's attributes (a router's table, upstreams...)
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].startswith(_INFERENCE_PREFIXES)
        ):
            await self._observe(scope, receive, send)
        elif scope["type"] == "lifespan" and (self.payloads is not None or self.on_shutdown):
            await self.app(scope, self._flush_on_shutdown(receive), send)
        else:
            await self.app(scope, receive, send)

    def _flush_on_shutdown(self, receive: Receive) -> Receive:
        async def receive_then_flush() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                if self.payloads is not None:
                    await self.payloads.aclose()
                for callback in self.on_shutdown:
                    callback()
            return message

        return receive_then_flush

    async def _observe(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope, ex = self._begin(scope)
        token = request_id.current.set(ex.request_id)
        failed = True
        try:
            if tracing.enabled():
                route = http_route(scope["path"])
                attributes = {
                    "http.request.method": "POST",
                    "url.path": scope["path"],
                    "url.scheme": scope.get("scheme", "http"),
                    "http.route": route,
                    "serving.component": self.source.component,
                    "serving.request_id": ex.request_id,
                }
                # OpenTelemetry's HTTP server convention: `{method} {http.route}`
                with tracing.server_span(f"POST {route}", scope["headers"], attributes):
                    scope["headers"] = _replace_trace_headers(scope["headers"])
                    try:
                        await self._run(scope, receive, send, ex)
                        failed = False
                    finally:  # within the span: its attributes, its status, and the trace id for the log
                        _settle(ex, failed)
                        tracing.set_attributes(self._span_attributes(scope, ex))
                        tracing.set_http_status(ex.status)
                        ex.trace_id = tracing.trace_id()
            else:
                await self._run(scope, receive, send, ex)
                failed = False
        finally:
            _settle(ex, failed)
            self._finish(scope, ex)
            request_id.current.reset(token)

    def _begin(self, scope: Scope) -> tuple[Scope, _Exchange]:
        """The request's id (put into its headers when new and the app forwards them) and what to collect."""
        client_id, content_type, length, json_length, encoding = None, b"application/json", -1, b"", b""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        ids = 0
        for key, value in headers:
            if key == request_id.HEADER:
                ids += 1
                client_id = value  # the last, as the router's lane reads it
            elif key == _CONTENT_TYPE:
                content_type = value
            elif key == _CONTENT_LENGTH:
                length = int(value) if value.isdigit() else -1
            elif key == _JSON_LENGTH:
                json_length = value
            elif key == _CONTENT_ENCODING:
                encoding = value
        rid, own = request_id.choose(client_id)
        if (
            not own or ids > 1
        ) and self.forwards_headers:  # a copy of the scope with the one id, for the next hop
            headers = [(k, v) for k, v in headers if k != request_id.HEADER]
            headers.append((request_id.HEADER, rid.encode("ascii")))
            scope = {**scope, "headers": headers}
        payloads = self.payloads
        keep_request = keep_response = False
        if payloads is not None and not payloads.full:  # a full queue would drop them: do not copy the bodies
            keep_request, keep_response = payloads.logs_requests, payloads.logs_responses
        ex = _Exchange(
            rid,
            time.monotonic(),
            keep_request,
            keep_response,
            request_type=content_type,
            bytes_in=max(length, 0),
            count_in=keep_request or length < 0,
            request_json_length=json_length,
            request_encoding=encoding,
        )
        if (keep_request or keep_response) and payloads is not None and payloads.metadata_headers:
            ex.metadata = payloads.metadata(headers)
        return scope, ex

    async def _run(self, scope: Scope, receive: Receive, send: Send, ex: _Exchange) -> None:
        rid_header = (request_id.HEADER, ex.request_id.encode("ascii"))

        early = self.describe is None  # who answers is known before the answer: log the request as it comes

        async def receive_counted() -> Message:  # only when capturing the body or it has no Content-Length
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                ex.bytes_in += len(chunk)
                if ex.keep_request:
                    ex.request_chunks.append(chunk)
                    if early and not message.get("more_body", False) and not ex.request_offered:
                        # As KServe's agent does: the request event goes when the request has come, so one
                        # still running (or whose replica dies) is logged, and its time is its arrival's.
                        model = _model_name(scope["path"])
                        source = self.source if self.source.isvc else replace(self.source, isvc=model)
                        self._offer_request(ex, source, model)
            return message

        async def send_tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = _tag_response(message, rid_header, ex)
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                ex.bytes_out += len(chunk)
                if ex.keep_response:
                    ex.response_chunks.append(chunk)
            await send(message)

        if ex.count_in and ex.bytes_in:
            ex.bytes_in = 0  # counted from the chunks instead
        await self.app(scope, receive_counted if ex.count_in else receive, send_tagged)

    def _identity(self, scope: Scope, ex: _Exchange) -> tuple[str, str, str, str, str]:
        """(model, isvc, namespace, revision, arm) of this request."""
        model = _model_name(scope["path"])
        if self.describe is not None:
            return (model, *self.describe(scope, model, ex.revision))
        s = self.source
        return model, s.isvc or model, s.namespace, s.endpoint, ""

    def _span_attributes(self, scope: Scope, ex: _Exchange) -> dict[str, Any]:
        model, isvc, namespace, revision, arm = self._identity(scope, ex)
        return {
            "serving.isvc": isvc,
            "serving.namespace": namespace,
            "serving.revision": revision,
            "serving.arm": arm,
            "serving.model": model,
        }

    def _finish(self, scope: Scope, ex: _Exchange) -> None:
        access = (
            self.access if self.access is not None and self.access.wants(ex.status, ex.request_id) else None
        )
        if access is None and self.payloads is None:
            return
        model, isvc, namespace, revision, arm = self._identity(scope, ex)
        if access is not None:
            access.write(
                AccessRecord(
                    ex.request_id,
                    "POST",
                    scope["path"],
                    ex.status,
                    time.monotonic() - ex.started,
                    ex.bytes_in,
                    ex.bytes_out,
                    isvc,
                    revision,
                    arm,
                    self.source.component,
                    ex.trace_id,
                )
            )
        if self.payloads is not None:
            source = self.source
            if self.describe is not None:  # the router: who answered is known per request
                source = replace(source, isvc=isvc, namespace=namespace, endpoint=revision)
            elif (
                not source.isvc
            ):  # a server of its own (`serving serve`): the model's name, as its access line
                source = replace(source, isvc=isvc)
            self._offer_payloads(ex, source, model)

    def _offer_payloads(self, ex: _Exchange, source: Source, model: str) -> None:
        payloads = self.payloads
        assert payloads is not None
        if not (ex.keep_request or ex.keep_response):
            wanted = int(payloads.logs_requests) + int(payloads.logs_responses)
            payloads.count_dropped(wanted)  # the queue was full when the request came
            return
        if ex.keep_request and not ex.request_offered:  # not as it came (the router's, or a body never read)
            self._offer_request(ex, source, model)
        if ex.keep_response:
            payloads.offer(
                InferenceEvent(
                    ex.request_id,
                    RESPONSE_TYPE,
                    b"".join(ex.response_chunks),
                    ex.response_type.decode("latin-1"),
                    source,
                    model,
                    time.time(),
                    ex.status,
                    ex.response_json_length.decode("latin-1"),
                    ex.metadata,
                )
            )

    def _offer_request(self, ex: _Exchange, source: Source, model: str) -> None:
        """The request's event, stamped now (once: `request_offered`)."""
        payloads = self.payloads
        assert payloads is not None
        ex.request_offered = True
        payloads.offer(
            InferenceEvent(
                ex.request_id,
                REQUEST_TYPE,
                b"".join(ex.request_chunks),
                ex.request_type.decode("latin-1"),
                source,
                model,
                time.time(),
                json_length=ex.request_json_length.decode("latin-1"),
                metadata=ex.metadata,
                encoding=ex.request_encoding.decode("latin-1"),
            )
        )
        ex.request_chunks = []


def _settle(ex: _Exchange, failed: bool) -> None:
    """No response: the server answers 500 for an exception; else the client left (499)."""
    if not ex.status:
        ex.status = 500 if failed else 499


def _tag_response(message: Message, rid_header: tuple[bytes, bytes], ex: _Exchange) -> Message:
    """Note status, content type and revision; echo the request id unless the next hop already did."""
    ex.status = message["status"]
    headers = list(message.get("headers", ()))
    echoed = False
    for key, value in headers:
        if key == request_id.HEADER:
            echoed = True
        elif key == _CONTENT_TYPE:
            ex.response_type = value
        elif key == _JSON_LENGTH:
            ex.response_json_length = value
        elif key == _REVISION:
            ex.revision = value.decode("latin-1")
    if not echoed:
        headers.append(rid_header)
    return {**message, "headers": headers}


def _replace_trace_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request's headers with `traceparent` naming this process's span: what a forwarding router sends on."""
    kept = [(k, v) for k, v in headers if k not in (b"traceparent", b"tracestate")]
    return kept + tracing.outgoing_headers()


def http_route(path: str) -> str:
    """The route template of an inference path (OpenTelemetry's `http.route`: low cardinality, no names)."""
    if path.startswith("/v1/"):
        verb = path.rsplit(":", 1)[1] if ":" in path.rsplit("/", 1)[-1] else ""
        return f"/v1/models/{{name}}:{verb}" if verb else "/v1/models/{name}"
    if "/versions/" in path:
        return "/v2/models/{name}/versions/{version}/" + path.rsplit("/", 1)[-1]
    return "/v2/models/{name}/" + path.rsplit("/", 1)[-1]


def _model_name(path: str) -> str:
    rest = path[len("/v1/models/") :]  # the same length as "/v2/models/"
    return rest.split("/", 1)[0].split(":", 1)[0]
