"""Request ids: the client's `x-request-id` when it is sane, else a fresh one; carried in a context variable.

The id travels router -> transformer -> predictor in the same header, is echoed to the client, appears in
every access log line and is the CloudEvents `ce-id` of the payload logger (request and response share it).
"""

from __future__ import annotations

import itertools
import re
import uuid
from contextvars import ContextVar

HEADER = b"x-request-id"
MAX_LENGTH = 128

current: ContextVar[str] = ContextVar("serving_request_id", default="")


_VALID = re.compile(rb"[\x21-\x7e]{1,%d}" % MAX_LENGTH)


def is_valid(value: bytes) -> bool:
    """At most 128 printable ASCII characters (no spaces or controls): safe in headers, logs and file names."""
    return _VALID.fullmatch(value) is not None


# A UUID-shaped id: random per process, then a counter (uuid4() per request costs ~5 us on the hot path).
_PREFIX = str(uuid.uuid4())[:24]
_counter = itertools.count(1)


def new_id() -> str:
    return f"{_PREFIX}{next(_counter):012x}"


def choose(client_value: bytes | None) -> tuple[str, bool]:
    """(the request's id, whether it is the client's own)."""
    if client_value is not None and is_valid(client_value):
        return client_value.decode("ascii"), True
    return new_id(), False
