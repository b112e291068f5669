"""In-process servers for the observability tests: any ASGI app under uvicorn on 127.0.0.1 port 0, on the
test's own event loop, so a router, a transformer and a predictor can call each other in one process."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import uvicorn


async def until(predicate: Callable[[], bool], timeout_s: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def served(app: Any, ready_path: str | None = None) -> AsyncIterator[str]:
    """The base URL of `app` served by uvicorn; with `ready_path`, once that answers 200."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), what="uvicorn to start")
    if task.done():
        task.result()
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        if ready_path:
            async with httpx.AsyncClient(base_url=url) as client:
                deadline = time.monotonic() + 30
                while (await client.get(ready_path)).status_code != 200:
                    assert time.monotonic() < deadline, f"{url}{ready_path} never became ready"
                    await asyncio.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        await task
