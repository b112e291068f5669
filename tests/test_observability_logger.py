"""The payload logger alone: a real CloudEvents receiver on loopback parses what we send; full queues,
dead and slow sinks only cost events (counted); the file sink writes rotated JSON Lines."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from loadtests.event_receiver import receiving
from loadtests.servers import free_port
from serving.observability import request_id
from serving.observability.cloudevent import REQUEST_TYPE, RESPONSE_TYPE, InferenceEvent, Source
from serving.observability.payload_logger import PayloadLogger
from serving.observability.sinks import FileSink, HttpSink, sink_for

pytestmark = pytest.mark.asyncio
SOURCE = Source(
    isvc="iris", namespace="ml", component="predictor", endpoint="iris-abc12345", uri="http://127.0.0.1:1/"
)


def event(
    rid: str,
    kind: str = REQUEST_TYPE,
    body: bytes = b'{"instances": [[1, 2]]}',
    status: int | None = None,
    content_type: str = "application/json",
) -> InferenceEvent:
    return InferenceEvent(rid, kind, body, content_type, SOURCE, "iris", time.time(), status)


async def until(predicate, timeout_s: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def sample(registry: CollectorRegistry, outcome: str) -> float:
    return registry.get_sample_value("serving_logger_events_total", {"outcome": outcome}) or 0.0


async def test_events_arrive_in_binary_mode_with_kserve_attributes() -> None:
    registry = CollectorRegistry()
    with receiving() as (url, receiver):
        logger = PayloadLogger(HttpSink(url), registry=registry)
        logger.offer(event("r-1"))
        logger.offer(event("r-1", RESPONSE_TYPE, b"\x00\x01binary", 200, "application/octet-stream"))
        await until(lambda: len(receiver.events) == 2)
        await logger.aclose()
    request, response = receiver.by_type("request")[0], receiver.by_type("response")[0]
    assert request["id"] == response["id"] == "r-1"
    assert request["type"] == REQUEST_TYPE and response["type"] == RESPONSE_TYPE
    assert request["specversion"] == "1.0" and request["source"] == SOURCE.uri and request["time"]
    for attr, value in (
        ("inferenceservicename", "iris"),
        ("namespace", "ml"),
        ("component", "predictor"),
        ("endpoint", "iris-abc12345"),
        ("modelid", "iris"),
    ):
        assert request[attr] == value == response[attr], attr
    assert request.data == b'{"instances": [[1, 2]]}' and request["datacontenttype"] == "application/json"
    assert response.data == b"\x00\x01binary" and response["datacontenttype"] == "application/octet-stream"
    assert response["statuscode"] == "200"
    assert sample(registry, "sent") == 2 and sample(registry, "dropped") == 0


async def test_full_queue_drops_and_counts_without_blocking() -> None:
    registry = CollectorRegistry()
    with receiving(delay_s=5.0) as (url, receiver):
        logger = PayloadLogger(HttpSink(url), registry=registry, max_events=3, senders=1)
        started = time.monotonic()
        for i in range(10):
            logger.offer(event(f"r-{i}"))
        assert time.monotonic() - started < 1.0  # offering never waits for the sink (5 s a send)
        assert sample(registry, "dropped") == 7
        assert registry.get_sample_value("serving_logger_queue_depth") == 3
        await logger.aclose(flush_s=0.0)
    # what was queued or in flight at shutdown is dropped, counted and said: every event accounted for
    assert sample(registry, "dropped") == 10 and sample(registry, "sent") == 0
    assert registry.get_sample_value("serving_logger_queue_depth") == 0


async def test_events_not_delivered_at_shutdown_are_counted_and_logged(caplog) -> None:  # noqa: ANN001
    registry = CollectorRegistry()
    caplog.set_level(logging.WARNING, logger="serving.payload_logger")
    with receiving(delay_s=1.0) as (url, _):
        logger = PayloadLogger(HttpSink(url), registry=registry, senders=2)
        for i in range(6):
            logger.offer(event(f"r-{i}"))
        await logger.aclose(flush_s=0.1)
    assert sample(registry, "dropped") == 6
    assert any("6 events not delivered at shutdown" in r.getMessage() for r in caplog.records), caplog.text


async def test_dead_sink_fails_events_after_retries_and_counts_them() -> None:
    registry = CollectorRegistry()
    logger = PayloadLogger(HttpSink(f"http://127.0.0.1:{free_port()}/"), registry=registry, backoff_s=0.01)
    for i in range(4):
        logger.offer(event(f"r-{i}"))
    await until(lambda: sample(registry, "failed") == 4)
    assert sample(registry, "sent") == 0
    await logger.aclose()


async def test_a_senders_warnings_do_not_carry_the_id_of_the_request_that_started_it() -> None:
    """The senders start lazily inside the first request's context: its request id (which our log formats
    read when a line is written) must not follow them."""
    seen: list[tuple[str, str | None]] = []

    class IdAtEmit(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), request_id.current.get()))

    handler = IdAtEmit()
    logging.getLogger("serving.payload_logger").addHandler(handler)
    registry = CollectorRegistry()
    logger = PayloadLogger(HttpSink(f"http://127.0.0.1:{free_port()}/"), registry=registry, attempts=1)
    try:
        token = request_id.current.set("first-request")
        try:
            logger.offer(event("r-1"))
        finally:
            request_id.current.reset(token)
        logger.offer(event("r-2"))
        await until(lambda: sample(registry, "failed") == 2)
        await logger.aclose()
    finally:
        logging.getLogger("serving.payload_logger").removeHandler(handler)
    # one line at the first loss, the rest counted and said before leaving (at most one line per 10 s)
    assert [rid for _, rid in seen] == ["", ""], seen
    assert "1 not delivered (the last: event r-1 (request)" in seen[0][0], seen
    assert "1 not delivered (the last: event r-2 (request)" in seen[1][0], seen


async def test_losses_are_said_in_one_line_with_counts_not_one_warning_per_event() -> None:
    """A sink answering 500 under load wrote two warnings per request, and a full queue none at all (audit
    /tmp/audit-obs3 L4): now one line with the counts of both, at most every 10 s."""
    registry = CollectorRegistry()
    lines: list[str] = []

    class Lines(logging.Handler):  # on the logger itself: caplog's root handler misses it under xdist
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Lines(logging.WARNING)
    said = logging.getLogger("serving.payload_logger")
    said.addHandler(handler)
    level, said.level = said.level, logging.WARNING  # another test's server may have set its level higher
    try:
        with receiving(status=500) as (url, receiver):
            logger = PayloadLogger(HttpSink(url), registry=registry, attempts=1, max_events=5)
            for i in range(20):  # 5 queued (then failed), 15 dropped: the queue holds 5
                logger.offer(event(f"r-{i}"))
            await until(lambda: sample(registry, "failed") == 5)
            await logger.aclose()
    finally:
        said.removeHandler(handler)
        said.level = level
    assert len(lines) == 2, lines  # the first loss at once, the rest before leaving
    assert "1 dropped: the queue was full (5 events" in lines[0], lines
    assert "5 not delivered (the last: event r-4 (request): " in lines[1] and "14 dropped" in lines[1], lines


async def test_sink_answering_500_is_retried_then_failed() -> None:
    registry = CollectorRegistry()
    with receiving(status=500) as (url, receiver):
        logger = PayloadLogger(HttpSink(url), registry=registry, attempts=3, backoff_s=0.01)
        logger.offer(event("r-1"))
        await until(lambda: sample(registry, "failed") == 1)
        assert receiver.arrivals == 3
        await logger.aclose()


async def test_file_sink_writes_json_lines_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "events" / "payloads.jsonl"
    sink = FileSink(path, max_bytes=2000, backups=2)
    logger = PayloadLogger(sink, registry=CollectorRegistry())
    for i in range(30):
        logger.offer(event(f"r-{i}"))
    logger.offer(event("bin", RESPONSE_TYPE, b"\xff\x00", 500, "application/octet-stream"))
    await until(lambda: logger.pending == 0)
    await logger.aclose()
    files = sorted(tmp_path.glob("events/payloads.jsonl*"))
    assert len(files) == 3 and all(f.stat().st_size <= 2000 for f in files)  # rotated, two backups kept
    lines = [orjson.loads(line) for line in path.read_text().splitlines()]
    last = lines[-1]
    assert last["id"] == "bin" and last["statuscode"] == "500" and last["data_base64"] == "/wA="
    first = orjson.loads(files[1].read_text().splitlines()[0])  # payloads.jsonl.1: an older file
    assert first["type"] == REQUEST_TYPE and first["data"] == {"instances": [[1, 2]]}


async def test_sink_for_refuses_unknown_schemes() -> None:
    assert isinstance(sink_for("file:///tmp/x.jsonl"), FileSink)
    with pytest.raises(ValueError, match="s3://bucket"):
        sink_for("s3://bucket/logs")
    with pytest.raises(ValueError, match="mode"):
        PayloadLogger(FileSink(Path("/tmp/unused.jsonl")), "everything")


async def test_file_sink_that_cannot_write_counts_failures(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    path = tmp_path / "gone" / "payloads.jsonl"
    logger = PayloadLogger(FileSink(path), registry=registry, backoff_s=0.01)
    path.parent.rmdir()
    path.parent.write_text("a file where the directory was")  # the file cannot be opened
    logger.offer(event("r-1"))
    await until(lambda: sample(registry, "failed") == 1)
    assert sample(registry, "sent") == 0
    await logger.aclose()


async def test_ce_header_values_are_percent_encoded_where_a_decoding_receiver_would_change_them() -> None:
    """CloudEvents' HTTP binding: receivers percent-decode `ce-` values. A `%` in a client's request id is sent
    as `%25` (decoded, `%41` had become `A`: the id no longer matched the echoed one) and non-ASCII as UTF-8
    escapes (raw, it arrived garbled); plain values, and the quotes of `ce-metadata`'s JSON, go as they are."""
    from urllib.parse import unquote

    odd = InferenceEvent(
        'pct%41"quote', REQUEST_TYPE, b"{}", "application/json", SOURCE, "iris", time.time(),
        metadata='{"x-user-id": "café"}',
    )  # fmt: skip
    headers = odd.binary_headers()
    assert all(value.isascii() for value in headers.values())
    assert unquote(headers["ce-id"]) == 'pct%41"quote' and headers["ce-id"] == 'pct%2541"quote'
    assert orjson.loads(unquote(headers["ce-metadata"])) == {"x-user-id": "café"}
    plain = event("r-1").binary_headers()
    assert plain["ce-id"] == "r-1" and plain["ce-endpoint"] == "iris-abc12345"


async def test_an_event_of_a_server_with_no_revision_leaves_the_endpoint_out() -> None:
    """`serving serve` without --revision has no endpoint: the extension is left out, not sent as ''
    (audit /tmp/audit-obs3 L5)."""
    import dataclasses

    bare = dataclasses.replace(SOURCE, endpoint="")
    headers = InferenceEvent(
        "r-2", REQUEST_TYPE, b"{}", "application/json", bare, "iris", time.time()
    ).binary_headers()
    assert "ce-endpoint" not in headers and headers["ce-inferenceservicename"] == bare.isvc
