"""Log lines: JSON or text, each naming the request being served; access lines carry their fields."""

from __future__ import annotations

import logging

import orjson

from serving.observability import request_id
from serving.observability.access_log import AccessLog, AccessRecord
from serving.observability.log_format import JsonFormatter, TextFormatter


def record(name: str, message: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.WARNING, __file__, 1, message, None, None)
    rec.__dict__.update(extra)
    return rec


def test_json_and_text_lines_name_the_request_being_served() -> None:
    token = request_id.current.set("rid-7")
    try:
        doc = orjson.loads(JsonFormatter().format(record("serving.http", "model failure")))
        text = TextFormatter().format(record("serving.http", "model failure"))
    finally:
        request_id.current.reset(token)
    assert doc["request_id"] == "rid-7" and doc["level"] == "warning" and doc["message"] == "model failure"
    assert doc["time"].endswith("Z") and text.endswith("model failure [request_id=rid-7]")
    assert "request_id" not in orjson.loads(JsonFormatter().format(record("x", "outside a request")))


def test_access_lines_sample_successes_and_keep_every_error(caplog) -> None:  # noqa: ANN001
    caplog.set_level(logging.INFO, logger="serving.access")
    sampled = AccessLog(0.0)
    for status in (200, 200, 404, 503):
        if sampled.wants(status):
            sampled.write(
                AccessRecord(
                    "r", "POST", "/v1/models/m:predict", status, 0.002, 10, 20, "m", "m-1", "", "predictor"
                )
            )
    fields = [r.fields for r in caplog.records]
    assert [f["status"] for f in fields] == [404, 503]
    doc = orjson.loads(JsonFormatter().format(caplog.records[0]))
    assert (
        doc["latency_ms"] == 2.0 and doc["bytes_in"] == 10 and doc["isvc"] == "m" and doc["revision"] == "m-1"
    )
    assert AccessLog(1.0).wants(200) and not AccessLog(0.0).wants(204)
    # a sample is chosen by request id: every process (router, transformer, predictor) logs the same requests
    ids = [f"id-{n}" for n in range(2000)]
    one, other = AccessLog(0.1), AccessLog(0.1)
    chosen = [i for i in ids if one.wants(200, i)]
    assert chosen == [i for i in ids if other.wants(200, i)]
    assert 120 < len(chosen) < 280, len(chosen)  # about a tenth
    caplog.set_level(logging.WARNING, logger="serving.access")  # `--log-level warning`
    assert not AccessLog(1.0).wants(500)  # no line at this level: nothing is gathered for one


def test_a_request_without_an_answer_is_logged_499_or_500(caplog) -> None:  # noqa: ANN001
    import asyncio

    from serving.observability.asgi import Observed
    from serving.observability.cloudevent import Source

    async def client_left(scope, receive, send) -> None:  # noqa: ANN001 - the front door returns on disconnect
        return None

    async def crashed(scope, receive, send) -> None:  # noqa: ANN001
        raise RuntimeError("boom")

    async def call(app) -> None:  # noqa: ANN001
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v2/models/m/infer",
            "headers": [],
            "server": None,
        }

        async def receive() -> dict:
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            raise AssertionError("nothing is sent")

        await Observed(app, Source(isvc="m"), AccessLog(1.0))(scope, receive, send)

    caplog.set_level(logging.INFO, logger="serving.access")
    asyncio.run(call(client_left))
    try:
        asyncio.run(call(crashed))
    except RuntimeError:
        pass
    assert [r.fields["status"] for r in caplog.records] == [499, 500]


def test_console_handler_writes_one_loop_turn_in_one_write_and_keeps_the_order() -> None:
    """Access lines of one event-loop turn go out in one write (a write per line cost a system call per
    request); lines off the loop are written at once, after anything queued."""
    import asyncio
    import io

    from serving.observability.log_format import ConsoleHandler

    class CountingStream(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            CountingStream.writes += 1
            return super().write(text)

    stream = CountingStream()
    handler = ConsoleHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test.console_handler")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("before")

        async def one_turn() -> None:
            for i in range(5):
                log.warning("turn %d", i)
            assert stream.getvalue().count("\n") == 1  # queued until the turn ends
            await asyncio.sleep(0)
            assert stream.getvalue().count("\n") == 6

        asyncio.run(one_turn())
        log.warning("after")
    finally:
        log.removeHandler(handler)
    messages = [line.split('"message":"')[1].split('"')[0] for line in stream.getvalue().splitlines()]
    assert messages == ["before", *[f"turn {i}" for i in range(5)], "after"]
    assert CountingStream.writes == 3


def test_a_write_scheduled_on_a_loop_that_no_longer_runs_is_not_joined() -> None:
    """Lines join the turn's scheduled write only while that loop runs in this thread: a loop that stopped
    before its write ran must not swallow the lines of the next one."""
    import asyncio
    import io
    import threading

    from serving.observability.log_format import ConsoleHandler

    stream = io.StringIO()
    handler = ConsoleHandler(stream)
    handler.setFormatter(JsonFormatter())
    stopped = asyncio.new_event_loop()
    handler._flush_loop, handler._flush_thread = stopped, threading.get_ident()  # its write never ran
    log = logging.getLogger("test.console_handler_stale")
    log.addHandler(handler)
    log.propagate = False
    try:

        async def next_loop() -> None:
            log.warning("on the next loop")
            await asyncio.sleep(0)
            assert "on the next loop" in stream.getvalue()

        asyncio.run(next_loop())
    finally:
        log.removeHandler(handler)
        stopped.close()
