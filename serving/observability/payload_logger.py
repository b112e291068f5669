"""The payload logger: a bounded in-memory queue per process and a few async senders with retries.

`offer()` is all the request path does: a non-blocking put, or a counted drop when the queue is full (by
events or by bytes). Senders run on the same event loop, started lazily by the first event; a slow or dead
sink only fills the queue, it never delays or fails an inference.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import deque
from dataclasses import replace

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from serving.errors import ServingError
from serving.http.content_encoding import inflate
from serving.observability.cloudevent import InferenceEvent
from serving.observability.sinks import RetryableSinkError, Sink, SinkError

log = logging.getLogger("serving.payload_logger")

MODES = ("all", "request", "response")
LOSS_REPORT_S = 10.0  # at most one warning line about lost events per this many seconds


class LoggerMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry or CollectorRegistry()
        events = Counter(
            "serving_logger_events", "Payload logger events by outcome.", ["outcome"], registry=r
        )
        self.sent, self.dropped, self.failed = (events.labels(o) for o in ("sent", "dropped", "failed"))
        self.depth = Gauge(
            "serving_logger_queue_depth",
            "Payload events waiting to be sent.",
            multiprocess_mode="livesum",
            registry=r,
        )


def inflated(event: InferenceEvent, limit: int) -> InferenceEvent:
    """`event` with its body as sent before compression (at most `limit` bytes, the queue's own budget); a body
    that does not inflate (its request was refused for it) goes as it came, typed as opaque bytes."""
    try:
        body = inflate(event.body, event.encoding.encode("latin-1"), limit)
    except ServingError:
        return replace(event, encoding="", content_type="application/octet-stream")
    return replace(event, body=body, encoding="")


class PayloadLogger:
    def __init__(
        self,
        sink: Sink,
        mode: str = "all",
        *,
        registry: CollectorRegistry | None = None,
        max_events: int = 1000,
        max_bytes: int = 64 * 1024 * 1024,
        senders: int = 4,
        attempts: int = 3,
        backoff_s: float = 0.2,
        metadata_headers: tuple[str, ...] = (),
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"logger mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.sink, self.mode = sink, mode
        self.logs_requests, self.logs_responses = mode in ("all", "request"), mode in ("all", "response")
        self.metrics = LoggerMetrics(registry)
        # ASGI header name (lower case) -> the name as the spec lists it, the key in `metadata`
        self.metadata_headers = {n.lower().encode("latin-1"): n for n in metadata_headers}
        self.max_events, self.max_bytes = max_events, max_bytes
        self.senders, self.attempts, self.backoff_s = senders, attempts, backoff_s
        self._queue: deque[InferenceEvent] = deque()
        self._queued_bytes = 0
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = 0
        # Losses said at most once per LOSS_REPORT_S (the first at once): a failing sink or a full queue is
        # one line with counts, not one warning per event (two per request) or, for drops, none at all.
        self._lost_failed = self._lost_dropped = 0
        self._lost_reason = ""
        self._report_at = 0.0

    def offer(self, event: InferenceEvent) -> None:
        """Queue the event for sending, or drop it (counted) when the queue is full. Never blocks."""
        if len(self._queue) >= self.max_events or self._queued_bytes + len(event.body) > self.max_bytes:
            self.metrics.dropped.inc()
            self._lost(dropped=1)
            return
        self._queue.append(event)
        self._queued_bytes += len(event.body)
        self.metrics.depth.set(len(self._queue))
        if self._wakeup is None:
            self._start()
        assert self._wakeup is not None
        self._wakeup.set()

    @property
    def full(self) -> bool:
        return len(self._queue) >= self.max_events or self._queued_bytes >= self.max_bytes

    def count_dropped(self, events: int) -> None:
        """Events never captured because the queue was already full."""
        self.metrics.dropped.inc(events)
        self._lost(dropped=events)

    def metadata(self, headers: list[tuple[bytes, bytes]]) -> str:
        """KServe's `metadata` extension: the listed request headers it has, as JSON `{name: [values]}` ('' when
        it has none of them: no extension, rather than `{}`). Values are read as UTF-8 (latin-1 when they are
        not), as clients send them."""
        found: dict[str, list[str]] = {}
        for key, value in headers:
            name = self.metadata_headers.get(key)
            if name is not None:
                try:
                    text = value.decode("utf-8")
                except UnicodeDecodeError:
                    text = value.decode("latin-1")
                found.setdefault(name, []).append(text)
        return orjson.dumps(found).decode() if found else ""

    def _start(self) -> None:
        self._wakeup = asyncio.Event()
        self._tasks = [  # in a context of their own: not the request's that happened to start them (its id)
            asyncio.create_task(
                self._send_forever(), name=f"payload-sender-{i}", context=contextvars.Context()
            )
            for i in range(self.senders)
        ]

    async def _send_forever(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            event = self._queue.popleft()
            self._queued_bytes -= len(event.body)
            self.metrics.depth.set(len(self._queue))
            self._busy += 1
            try:
                await self._deliver(event)
            finally:
                self._busy -= 1

    async def _deliver(self, event: InferenceEvent) -> None:
        if event.encoding:  # a compressed request: its receiver gets the JSON (or tensors) it stands for
            event = await asyncio.to_thread(inflated, event, self.max_bytes)
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                await self.sink.send(event)
                self.metrics.sent.inc()
                return
            except RetryableSinkError as exc:
                if attempt == self.attempts:
                    return self._failed(event, exc)
            except SinkError as exc:
                return self._failed(event, exc)
            except Exception as exc:  # noqa: BLE001 - a sender must survive anything a sink does
                return self._failed(event, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _failed(self, event: InferenceEvent, exc: BaseException) -> None:
        self.metrics.failed.inc()
        self._lost(failed=1, reason=f"event {event.request_id} ({event.type.rsplit('.', 1)[-1]}): {exc}")

    def _lost(self, failed: int = 0, dropped: int = 0, reason: str = "") -> None:
        self._lost_failed += failed
        self._lost_dropped += dropped
        if reason:
            self._lost_reason = reason
        now = time.monotonic()
        if now < self._report_at:
            return
        said = []
        if self._lost_failed:
            said.append(f"{self._lost_failed} not delivered (the last: {self._lost_reason})")
        if self._lost_dropped:
            said.append(
                f"{self._lost_dropped} dropped: the queue was full ({self.max_events} events or "
                f"{self.max_bytes} bytes; the sink is slower than the requests)"
            )
        log.warning("payload logger: events lost: %s; said at most every %gs", "; ".join(said), LOSS_REPORT_S)
        self._lost_failed = self._lost_dropped = 0
        self._report_at = now + LOSS_REPORT_S

    @property
    def pending(self) -> int:
        """Events queued or being sent."""
        return len(self._queue) + self._busy

    async def aclose(self, flush_s: float = 2.0) -> None:
        """Shutdown: give queued events a bounded time to go out, then stop the senders and the sink."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + flush_s
        while self.pending and loop.time() < deadline:
            await asyncio.sleep(0.02)
        left = self.pending  # queued, and in flight when cancelled: none of them reaches the sink
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks, self._wakeup = [], None
        if left:  # counted and said, as every other event that is not delivered
            self.metrics.dropped.inc(left)
            self._queue.clear()
            self._queued_bytes = 0
            self.metrics.depth.set(0)
            log.warning(
                "payload logger: %d events not delivered at shutdown (the sink did not take them within %gs)",
                left,
                flush_s,
            )
        if self._lost_failed or self._lost_dropped:  # losses since the last line: said before leaving
            self._report_at = 0.0
            self._lost()
        await self.sink.aclose()
