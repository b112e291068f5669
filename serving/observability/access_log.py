"""One access log line per inference request, sampled so heavy traffic does not drown the disk.

Errors (status >= 400) are always logged; successes with probability `sample_2xx` (`--access-log-sample`).

When the process logs JSON through its own console handler (what every `serving` command sets up), the line
is built here and queued on that handler directly: the same bytes the logging machinery would produce,
without a LogRecord, its handler walk and its lock (a third of the line's cost at thousands of lines per
second). Any other set-up (text format, extra handlers or filters, a test's capture) goes through logging.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
import zlib
from dataclasses import dataclass

import orjson

from serving.observability import log_format

_LOGGER = "serving.access"
log = logging.getLogger(_LOGGER)
_MESSAGE = "%s %s %d %.1fms id=%s isvc=%s revision=%s arm=%s in=%dB out=%dB"


@dataclass(slots=True)  # not frozen: one per request, and a frozen one's __init__ costs ~1 µs more
class AccessRecord:
    request_id: str
    method: str
    path: str
    status: int
    latency_s: float
    bytes_in: int
    bytes_out: int
    isvc: str
    revision: str
    arm: str
    component: str
    trace_id: str = ""


class AccessLog:
    def __init__(self, sample_2xx: float = 1.0) -> None:
        if not 0.0 <= sample_2xx <= 1.0:
            raise ValueError(f"access log sample must be between 0 and 1, not {sample_2xx}")
        self.sample_2xx = sample_2xx

    def wants(self, status: int, request_id: str = "") -> bool:
        """Whether this request gets a line (decided once per request, before any field is gathered). A
        sampled success is chosen by its request id, so the router, the transformer and the predictor all log
        the same requests (their lines join on the id); without an id, at random."""
        if not log.isEnabledFor(logging.INFO):  # `--log-level warning`: no line at all, nothing to gather
            return False
        if status >= 400:
            return True
        rate = self.sample_2xx
        if rate >= 1.0 or rate <= 0.0:
            return rate >= 1.0
        if request_id:
            return zlib.crc32(request_id.encode("utf-8", "replace")) < rate * 4294967296.0
        return random.random() < rate

    def write(self, r: AccessRecord) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        handler = log_format.direct_json_handler(log)
        if handler is not None:
            handler.queue(orjson.dumps(_document(r, handler.utc_time(time.time()))).decode("utf-8"))
            return
        # Through logging: the formatter writes time, level, logger and message itself; the rest are the fields.
        fields = dict(itertools.islice(_document(r, "").items(), _HEAD_KEYS, None))
        # log.info() would walk the stack for the caller's file and line, which this line never shows
        log.handle(
            log.makeRecord(
                log.name, logging.INFO, __file__, 0, _MESSAGE, _args(r), None, extra={"fields": fields}
            )
        )


_HEAD_KEYS = 4  # time, level, logger, message


def _document(r: AccessRecord, when: str) -> dict[str, object]:
    """The JSON line `JsonFormatter.line` writes for this record, as one dict (same keys, same order: the
    record's request id is the one being served)."""
    doc: dict[str, object] = {
        "time": when,
        "level": "info",
        "logger": _LOGGER,
        "message": _MESSAGE % _args(r),
        "request_id": r.request_id,
        "method": r.method,
        "path": r.path,
        "status": r.status,
        "latency_ms": round(r.latency_s * 1000, 3),
        "bytes_in": r.bytes_in,
        "bytes_out": r.bytes_out,
        "isvc": r.isvc,
        "revision": r.revision,
        "arm": r.arm,
        "component": r.component,
    }
    if r.trace_id:
        doc["trace_id"] = r.trace_id
    return doc


def _args(r: AccessRecord) -> tuple[object, ...]:
    return (
        r.method,
        r.path,
        r.status,
        r.latency_s * 1000,
        r.request_id,
        r.isvc or "-",
        r.revision or "-",
        r.arm or "-",
        r.bytes_in,
        r.bytes_out,
    )
