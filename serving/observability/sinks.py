"""Where payload events go: an HTTP CloudEvents receiver (binary mode) or a JSON Lines file rotated by size.

`send` raises `RetryableSinkError` for what may succeed later (connection refused, timeout, 5xx, 429) and
`SinkError` for what will not (another 4xx); the payload logger retries the first kind with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from serving.http_client import HTTPClient, split_url
from serving.observability.cloudevent import InferenceEvent

FILE_MAX_BYTES = 100 * 1024 * 1024
FILE_BACKUPS = 5


class SinkError(Exception):
    """The sink refused the event for good."""


class RetryableSinkError(SinkError):
    """The sink could not take the event now; it may later."""


class Sink(Protocol):
    async def send(self, event: InferenceEvent) -> None: ...

    async def aclose(self) -> None: ...


class HttpSink:
    """POSTs each event in CloudEvents binary mode over the shared pooled HTTP/1.1 client (plain http://)."""

    def __init__(self, url: str, connections: int = 4, timeout_s: float = 5.0) -> None:
        self.url, self.timeout_s = url, timeout_s
        self._endpoint, self._target = split_url(url)
        self._client = HTTPClient(max_per_endpoint=connections, connect_timeout_s=min(timeout_s, 2.0))

    async def send(self, event: InferenceEvent) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in event.binary_headers().items()]
        try:
            response = await self._client.request(
                self._endpoint, "POST", self._target, headers, event.body, self.timeout_s
            )
        except (ConnectionError, TimeoutError) as exc:  # refused, dropped, slow: the sink may come back
            raise RetryableSinkError(f"{type(exc).__name__}: {exc}") from exc
        _check_status(response.status)

    async def aclose(self) -> None:
        await self._client.aclose()


class HttpsSink:
    """The same over TLS, with httpx (the shared client speaks plain http:// only)."""

    def __init__(self, url: str, connections: int = 4, timeout_s: float = 5.0) -> None:
        import httpx  # only for https:// sinks: every server imports this module, few log over TLS

        self.url = url
        self._http_error = httpx.HTTPError
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._client = httpx.AsyncClient(timeout=timeout_s, limits=limits)

    async def send(self, event: InferenceEvent) -> None:
        try:
            response = await self._client.post(self.url, content=event.body, headers=event.binary_headers())
        except self._http_error as exc:
            raise RetryableSinkError(f"{type(exc).__name__}: {exc}") from exc
        _check_status(response.status_code)

    async def aclose(self) -> None:
        await self._client.aclose()


def _check_status(status: int) -> None:
    if status >= 500 or status == 429:
        raise RetryableSinkError(f"sink answered {status}")
    if status >= 400:
        raise SinkError(f"sink answered {status}")


class FileSink:
    """One structured-mode CloudEvent per line; the file rotates at `max_bytes` keeping `backups` old files.

    Writes run in a thread: a slow disk must not stall the event loop that serves inferences."""

    def __init__(self, path: Path, max_bytes: int = FILE_MAX_BYTES, backups: int = FILE_BACKUPS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handler = _RaisingRotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, delay=True)
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._lock = asyncio.Lock()

    async def send(self, event: InferenceEvent) -> None:
        line = event.json_line().decode("utf-8")
        record = logging.LogRecord("serving.payload", logging.INFO, "", 0, line, None, None)
        async with self._lock:  # one writer at a time keeps lines whole across rotation
            await asyncio.to_thread(self._handler.emit, record)

    async def aclose(self) -> None:
        self._handler.close()


class _RaisingRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A full disk or a removed directory fails the event (counted), instead of a traceback on stderr."""

    def handleError(self, record: logging.LogRecord) -> None:
        raise  # noqa: PLE0704 - called from emit's except block: re-raises what the write raised


def sink_for(url: str, connections: int = 4) -> Sink:
    """`http(s)://...` -> HttpSink; `file:///path` -> FileSink. Anything else is refused with the URL."""
    parts = urlsplit(url)
    if parts.scheme == "http":
        return HttpSink(url, connections)
    if parts.scheme == "https":
        return HttpsSink(url, connections)
    if parts.scheme == "file" and parts.path:
        return FileSink(Path(unquote(parts.path)))
    raise ValueError(f"logger url {url!r}: use http(s)://host/path or file:///path/events.jsonl")
