"""Structured logs: `--log-format json|text` for every command (default: text on a terminal, JSON otherwise).

JSON lines carry time, level, logger and message, plus the fields a record was given under `extra={"fields":
{...}}` (the access log puts its request id, isvc, revision, status... there), and the request id of the
request being served when there is one (text lines end with it).
"""

from __future__ import annotations

import logging
import math
import sys
from datetime import UTC, datetime

import orjson

from serving.observability import request_id

FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    _second, _second_text = -1, ""  # the last whole second formatted: an access log writes many lines per second

    def utc_time(self, created: float) -> str:
        """`2026-01-02T03:04:05.678Z` (milliseconds truncated, as isoformat does), date part cached per second."""
        fraction, whole = math.modf(created)
        micros = round(fraction * 1e6)  # as datetime.fromtimestamp rounds
        second = int(whole) + micros // 1_000_000
        if second != self._second:
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._second_text}.{micros % 1_000_000 // 1000:03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.utc_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.current.get()
        if rid:
            doc["request_id"] = rid
        fields = getattr(record, "fields", None)
        if fields:
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode("utf-8")


class TextFormatter(logging.Formatter):
    """The classic line, plus the id of the request being served (access lines already name it)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = request_id.current.get()
        return f"{line} [request_id={rid}]" if rid and record.name != "serving.access" else line


def default_format() -> str:
    return "text" if sys.stderr.isatty() else "json"


def configure(log_format: str | None, level: int = logging.INFO) -> None:
    """The root handler of a CLI process: one stream handler on stderr in the chosen format."""
    chosen = log_format or default_format()
    if chosen not in FORMATS:
        raise ValueError(f"log format must be json or text, not {chosen!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    root.setLevel(level)
    if any(not _is_console(h) for h in root.handlers):
        return  # someone else owns the output (a test harness, an embedding app): as logging.basicConfig does
    for old in [h for h in root.handlers if _is_console(h)]:  # basicConfig's or ours; others (files, tests) stay
        root.removeHandler(old)
    root.addHandler(handler)


def _is_console(handler: logging.Handler) -> bool:
    return type(handler) is logging.StreamHandler and getattr(handler, "stream", None) in (sys.stderr, sys.stdout)
