"""The access log's direct path (a JSON line queued on our console handler without a LogRecord) writes what
the logging path writes, keeps the order of other lines, and steps aside for any other logging set-up."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator

import orjson
import pytest

from serving.observability import log_format, request_id
from serving.observability.access_log import AccessLog, AccessRecord

RECORD = AccessRecord(
    "rid-1", "POST", "/v2/models/iris/infer", 200, 0.0012, 120, 64, "iris", "iris-00001", "stable",
    "predictor", "ab" * 16,
)  # fmt: skip


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Root logging as `serving` commands set it up: our console handler alone, JSON lines."""
    stream = io.StringIO()
    handler = log_format.ConsoleHandler(stream)
    handler.setFormatter(log_format.JsonFormatter())
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])  # pytest adds its capture handlers to this list...
    monkeypatch.setattr(root, "addHandler", lambda extra: None)  # ... unless refused during the test
    level = root.level
    root.setLevel(logging.INFO)  # (setLevel, not an attribute: loggers cache isEnabledFor)
    yield stream
    root.setLevel(level)


async def _write_on_the_loop(log: AccessLog) -> None:
    token = request_id.current.set("rid-1")
    try:
        logging.getLogger("serving.other").info("before")
        log.write(RECORD)
        logging.getLogger("serving.other").info("after")
    finally:
        request_id.current.reset(token)
    await asyncio.sleep(0)  # the end of the turn writes the queued lines


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_direct_line_equals_the_logging_line_and_keeps_order(console: io.StringIO) -> None:
    assert log_format.direct_json_handler(logging.getLogger("serving.access")) is not None
    asyncio.run(_write_on_the_loop(AccessLog(1.0)))
    direct = _lines(console)
    assert [d["message"] for d in direct][::2] == ["before", "after"]

    access = logging.getLogger("serving.access")
    access.addFilter(lambda record: True)  # any filter: the line must go through logging
    try:
        assert log_format.direct_json_handler(access) is None
        console.truncate(0), console.seek(0)
        asyncio.run(_write_on_the_loop(AccessLog(1.0)))
    finally:
        access.filters.clear()
    through_logging = _lines(console)

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(direct[1]["time"]))
    for line in (direct[1], through_logging[1]):
        line.pop("time")
    assert direct[1] == through_logging[1]
    assert list(direct[1]) == list(through_logging[1])  # same keys in the same order
    assert (
        direct[1]["message"]
        == "POST /v2/models/iris/infer 200 1.2ms id=rid-1 isvc=iris revision=iris-00001 arm=stable in=120B out=64B"
    )
    assert direct[1]["trace_id"] == "ab" * 16 and direct[1]["request_id"] == "rid-1"


def test_text_format_or_extra_handlers_take_the_logging_path(console: io.StringIO) -> None:
    access = logging.getLogger("serving.access")
    handler = logging.getLogger().handlers[0]
    handler.setFormatter(log_format.TextFormatter())
    assert log_format.direct_json_handler(access) is None
    handler.setFormatter(log_format.JsonFormatter())
    logging.getLogger().handlers.append(logging.NullHandler())
    assert log_format.direct_json_handler(access) is None


def test_time_text_is_cached_per_millisecond_and_still_right() -> None:
    from datetime import UTC, datetime

    formatter = log_format.JsonFormatter()
    start = 1_795_000_000.1234
    # the same millisecond twice, the next one, the next second, and back (a line from another thread)
    for created in (start, start + 0.0003, start + 0.0011, start + 1.5, start):
        expected = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert formatter.utc_time(created) == expected
