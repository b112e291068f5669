"""Shadow traffic: a copy of each stable request sent to a canary that gets no user traffic yet.

Fire-and-forget and bounded: the user's answer never waits for the copy, and when `limit` copies are already
in flight a new one is dropped and counted rather than queued. The canary's answers are counted under its
revision (arm "mirror") so the Canary analysis judges it before it takes a single user request.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from serving.errors import ServingError
from serving.router.table import Arm, ServiceRoute
from serving.router.upstream import Upstreams

DEFAULT_LIMIT = 64


class Mirror:
    def __init__(self, upstreams: Upstreams, metrics: Any = None, limit: int = DEFAULT_LIMIT) -> None:
        self.upstreams = upstreams
        self.metrics = metrics
        self.limit = limit
        self.dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def send(
        self, route: ServiceRoute, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        arm = route.mirror
        if arm is None or not arm.endpoints:
            return
        if len(self._tasks) >= self.limit:
            self.dropped += 1
            return
        task = asyncio.create_task(self._send(route, arm, method, target, headers, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(
        self,
        route: ServiceRoute,
        arm: Arm,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        started, code = time.monotonic(), 500
        try:
            _, response = await self.upstreams.forward(
                arm.endpoints, method, target, headers, body, route.timeout_s
            )
            code = response.status
        except ServingError as exc:
            code = exc.status_code
        except Exception:  # a shadow copy must never surface anywhere but its own count
            code = 500
        finally:
            if self.metrics is not None:
                self.metrics.observe_route(
                    route.name, route.namespace, arm.revision, "mirror", code, time.monotonic() - started
                )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
