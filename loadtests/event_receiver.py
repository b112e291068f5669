"""A CloudEvents receiver on loopback for payload-logger tests and measurements.

Every POST is parsed by the CloudEvents SDK (binary or structured mode) and kept; `delay_s` makes it a slow
sink, `status` a failing one. Runs uvicorn in a thread on 127.0.0.1 port 0.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from loadtests.servers import wait_until

try:  # cloudevents 1.x
    from cloudevents.http import from_http
except ImportError:  # cloudevents 2.x keeps the 1.x API under v1
    from cloudevents.v1.http import from_http


class EventReceiver:
    def __init__(self, delay_s: float = 0.0, status: int = 200) -> None:
        self.delay_s, self.status = delay_s, status
        self.events: list[Any] = []  # cloudevents.http.CloudEvent, in arrival order
        self.arrivals = 0
        self.spans_posts = 0  # OTLP export requests (POST /v1/traces)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        self.arrivals += 1
        if scope["path"] == "/v1/traces":  # an OTLP/HTTP collector stand-in: take the spans, keep nothing
            self.spans_posts += 1
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.status < 300:
            self.events.append(from_http(headers, b"".join(chunks), data_unmarshaller=lambda data: data))
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def by_type(self, suffix: str) -> list[Any]:
        return [e for e in self.events if e["type"].endswith(suffix)]


@contextmanager
def receiving(delay_s: float = 0.0, status: int = 200) -> Iterator[tuple[str, EventReceiver]]:
    """(url, receiver) of a running receiver; stopped on exit."""
    receiver = EventReceiver(delay_s, status)
    config = uvicorn.Config(receiver, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="event-receiver", daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, what="event receiver", interval_s=0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/", receiver
    finally:
        server.should_exit = True
        thread.join(10)
