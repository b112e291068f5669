"""Structured logs: `--log-format json|text` for every command (default: text on a terminal, JSON otherwise).

JSON lines carry time, level, logger and message, plus the fields a record was given under `extra={"fields":
{...}}` (the access log puts its request id, isvc, revision, status... there), and the request id of the
request being served when there is one (text lines end with it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import orjson

from serving.observability import request_id

FORMATS = ("json", "text")
LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# `serving up --log-level` passed down to the model servers and transformers it starts.
LEVEL_ENV = "SERVING_LOG_LEVEL"
_NUMERIC = {"trace": 5}  # uvicorn's TRACE; the others are logging's own names
SERVER_LEVEL_HELP = (
    "our lines (access log, events) and uvicorn's; default: access lines on and uvicorn at warning, or the "
    "level `serving up --log-level` passed down"
)


def apply_server_level(level: str | None) -> str:
    """A server's `--log-level`: our lines' (access log, events) and uvicorn's. Not given: the level `serving
    up` passed down, else INFO for ours and WARNING for uvicorn's start-up chatter (so access lines are on by
    default). Returns the level for uvicorn. An unknown level in the environment is named in a warning and
    ignored (the flag's own values are checked by the CLI)."""
    chosen = level or os.environ.get(LEVEL_ENV)
    if not chosen:
        return "warning"
    chosen = chosen.lower()
    if level is None and chosen not in LEVELS:
        logging.getLogger(__name__).warning(
            "%s=%r is not one of %s: using the default levels", LEVEL_ENV, chosen, ", ".join(LEVELS)
        )
        return "warning"
    logging.getLogger().setLevel(numeric_level(chosen))
    return chosen


def numeric_level(name: str) -> int:
    chosen = name.lower()
    if chosen not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {name!r}")
    return _NUMERIC.get(chosen) or logging.getLevelNamesMapping()[chosen.upper()]


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    # The last whole second formatted, and the last millisecond: an access log writes many lines per millisecond.
    _second, _second_text = -1, ""
    _milli, _milli_text = -1, ""

    def utc_time(self, created: float) -> str:
        """`2026-01-02T03:04:05.678Z` (milliseconds truncated, as isoformat does), date part cached per second,
        the whole text per millisecond."""
        milli = int(created * 1000)
        if milli == self._milli:
            return self._milli_text
        self._milli, self._milli_text = milli, self._format_time(created)
        return self._milli_text

    def _format_time(self, created: float) -> str:
        fraction, whole = math.modf(created)
        micros = round(fraction * 1e6)  # as datetime.fromtimestamp rounds
        second = int(whole) + micros // 1_000_000
        if second != self._second:
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._second_text}.{micros % 1_000_000 // 1000:03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        exception = self.formatException(record.exc_info) if record.exc_info else ""
        return self.line(
            record.created,
            record.levelname.lower(),
            record.name,
            record.getMessage(),
            getattr(record, "fields", None),
            exception,
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        fields: dict[str, Any] | None,
        exception: str = "",
    ) -> str:
        """One JSON line: what `format` writes for a record, callable without one (the access log's path)."""
        doc = {"time": self.utc_time(created), "level": level, "logger": logger, "message": message}
        rid = request_id.current.get()
        if rid:
            doc["request_id"] = rid
        if fields:
            doc.update(fields)
        if exception:
            doc["exception"] = exception
        return orjson.dumps(doc).decode("utf-8")


class TextFormatter(logging.Formatter):
    """The classic line, plus the id of the request being served (access lines already name it)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = request_id.current.get()
        return f"{line} [request_id={rid}]" if rid and record.name != "serving.access" else line


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes the lines of one event-loop turn in one write.

    Each line is formatted at once (its request id, its time), but on the event loop's thread it is queued
    and written, with the other lines of the same turn, by a callback at the end of the turn: an access log
    line per request otherwise costs a write system call per request. Off the loop (start-up, worker
    threads, shutdown) lines are written at once, after anything queued, so the order is kept."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._flush_loop: Any = None  # the loop a write is scheduled on (a stopped loop's never runs)
        self._flush_thread = 0  # the thread that scheduled it

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging's contract: report and carry on
            self.handleError(record)
            return
        self.queue(line)

    def utc_time(self, created: float) -> str:
        """The JSON formatter's time text, for a caller building its own line (the access log)."""
        formatter = self.formatter
        assert isinstance(formatter, JsonFormatter)  # direct_json_handler checked it
        return formatter.utc_time(created)

    def queue(self, line: str) -> None:
        """A line formatted by the caller (see direct_json_handler), written as `emit` writes one."""
        scheduled = self._flush_loop
        if scheduled is not None and self._flush_thread == threading.get_ident() and scheduled.is_running():
            # This turn's write is already scheduled on this thread's loop: join it. (Looking the running loop
            # up costs a getpid() system call per line on Python 3.11.)
            with self.lock:  # type: ignore[union-attr]
                if self._flush_loop is scheduled:
                    self._pending.append(line + self.terminator)
                    return
        loop = asyncio_loop()
        if loop is None:
            with self.lock:  # type: ignore[union-attr]
                self._pending.append(line + self.terminator)
                self._write_pending()
            return
        with self.lock:  # type: ignore[union-attr]  # a worker thread may be writing the pending lines out
            if self._flush_loop is not loop:
                self._flush_loop = loop
                self._flush_thread = threading.get_ident()
                loop.call_soon(self._end_of_turn)
            self._pending.append(line + self.terminator)

    def _end_of_turn(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._flush_loop = None
            self._write_pending()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()

    def _write_pending(self) -> None:
        if self._pending:
            text, self._pending = "".join(self._pending), []
            try:
                self.stream.write(text)
            except Exception:  # noqa: BLE001 - a closed or broken stream must not break the server
                return
        if self.stream and hasattr(self.stream, "flush"):
            try:
                self.stream.flush()
            except (OSError, ValueError):
                pass


def direct_json_handler(logger: logging.Logger) -> ConsoleHandler | None:
    """The console handler `logger`'s INFO lines end in, when nothing else sees them on the way: no handler
    or filter on the loggers up to the root, the root's one handler ours with the JSON format. Then a hot
    caller may format a line itself and queue it there; otherwise it must go through logging (None)."""
    if not logger.isEnabledFor(logging.INFO):
        return None
    root = logging.root
    node: Any = logger
    while node is not root:
        if node.handlers or node.filters or not node.propagate:
            return None
        node = node.parent
    if len(root.handlers) != 1 or root.filters:
        return None
    handler = root.handlers[0]
    if type(handler) is not ConsoleHandler or handler.filters or logging.INFO < handler.level:
        return None
    return handler if type(handler.formatter) is JsonFormatter else None


def asyncio_loop() -> Any:
    """The event loop running in this thread, or None (asyncio's own check, without raising)."""
    return asyncio._get_running_loop()


def default_format() -> str:
    return "text" if sys.stderr.isatty() else "json"


def configure(log_format: str | None, level: int = logging.INFO) -> None:
    """The root handler of a CLI process: one stream handler on stderr in the chosen format."""
    chosen = log_format or default_format()
    if chosen not in FORMATS:
        raise ValueError(f"log format must be json or text, not {chosen!r}")
    handler = ConsoleHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    root.setLevel(level)
    if any(not _is_console(h) for h in root.handlers):
        return  # someone else owns the output (a test harness, an embedding app): as logging.basicConfig does
    for old in [
        h for h in root.handlers if _is_console(h)
    ]:  # basicConfig's or ours; others (files, tests) stay
        root.removeHandler(old)
    root.addHandler(handler)


def one_json_stream(stdout: Any) -> bool:
    """Whether logs are JSON lines and `stdout` is the very file they go to (`serving up`'s replica log files,
    `serve > log 2>&1`): a line printed there must be JSON too, or a log pipeline rejects the file."""
    handlers = [h for h in logging.getLogger().handlers if _is_console(h)]
    if not handlers or not isinstance(handlers[0].formatter, JsonFormatter):
        return False
    try:
        out, err = os.fstat(stdout.fileno()), os.fstat(handlers[0].stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False
    return (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino)


def _is_console(handler: logging.Handler) -> bool:
    return type(handler) in (logging.StreamHandler, ConsoleHandler) and getattr(handler, "stream", None) in (
        sys.stderr,
        sys.stdout,
    )
