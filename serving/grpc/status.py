"""The error family's HTTP statuses as gRPC status codes, the way Triton and KServe map them."""

from __future__ import annotations

import grpc

from serving.errors import ServingError

GRPC_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.UNAVAILABLE,  # overload: retry soon (Triton answers UNAVAILABLE for a full queue)
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def grpc_code(http_status: int) -> grpc.StatusCode:
    """The gRPC code of an HTTP status; unlisted 4xx are the caller's (INVALID_ARGUMENT), the rest INTERNAL."""
    code = GRPC_CODES.get(http_status)
    if code is not None:
        return code
    return grpc.StatusCode.INVALID_ARGUMENT if 400 <= http_status < 500 else grpc.StatusCode.INTERNAL


MAX_MESSAGE_CHARS = 2048  # grpc-message travels in trailers, whose size is capped (8 KiB by default)


def bounded(message: str) -> str:
    """A status message that fits the trailers: one that quotes a huge name from the request (an unknown model
    of 100 kB) would otherwise turn NOT_FOUND into RESOURCE_EXHAUSTED at the client."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}... ({len(message) - MAX_MESSAGE_CHARS} more characters)"


def trailing_metadata(error: ServingError) -> tuple[tuple[str, str], ...]:
    """`Retry-After` and friends as lower-case trailing metadata (gRPC keys must be lower case)."""
    return tuple((key.lower(), value) for key, value in error.headers.items())


_HTTP_OF = {code: status for status, code in GRPC_CODES.items() if status not in (415, 429, 501, 502)}
_HTTP_OF[grpc.StatusCode.OK] = 200
_HTTP_OF[grpc.StatusCode.UNAVAILABLE] = 503


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status a gRPC code stands for (the router's metrics count both protocols in one label)."""
    return _HTTP_OF.get(code, 500)
