"""Headers a process adds to its call to the next hop: the request id and the W3C trace context."""

from __future__ import annotations

from serving.observability import request_id, tracing

Headers = list[tuple[bytes, bytes]]


def outgoing(headers: Headers) -> Headers:
    """`headers` plus `x-request-id` of the request being served and `traceparent` of the current span."""
    rid = request_id.current.get()
    extra = tracing.outgoing_headers()
    if rid:
        extra.append((request_id.HEADER, rid.encode("ascii")))
    return headers + extra if extra else headers
