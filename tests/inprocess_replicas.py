"""Replicas of `serving up` as threads of the test process instead of OS processes (the control plane's
`replica_factory` seam).

Each replica runs the same `serving serve` / `serving transform` arguments the local backend would give a
process, through the CLI's own code path (tests.inprocess.ThreadedCommand), on port 0. Readiness and load
failures are read the way `processes.Replica` reads them: `ready_path`, then `load_failure` of the index.
What a thread cannot show — crashes, kill -9, restarts, hung processes — stays with the e2e tests that run
real processes. A spec with its own environment runs as a real process (the environment is per process).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import httpx

from serving.control.local.processes import INDEX_PATH, ProcessSpec, Replica, ReplicaState, load_failure
from serving.control.local.runner import ReplicaHandle
from tests.inprocess import LOG_FORMAT, ThreadedCommand

PROBE_INTERVAL_S = 0.05


class InProcessReplica:
    def __init__(self, name: str, spec: ProcessSpec, log_dir: Path) -> None:
        self.name, self.spec, self.log_dir = name, spec, log_dir
        self.state = ReplicaState.STARTING
        self.error = ""
        self.port = 0
        self._command = ThreadedCommand([*spec.args, "--host", "127.0.0.1", "--port", "0"])
        self._task: asyncio.Task[None] | None = None
        self._log: logging.Handler | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:  # in this process: the port tells one incarnation from the next
        return self.port

    def start(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log = logging.FileHandler(self.log_dir / f"{self.name}.log")
        self._log.setFormatter(logging.Formatter(LOG_FORMAT))
        logging.getLogger().addHandler(self._log)
        self._command.start()
        self._task = asyncio.create_task(self._watch(), name=f"replica-{self.name}")

    def _set(self, state: ReplicaState, error: str = "") -> None:
        if (state, error) != (self.state, self.error):
            self.state, self.error = state, error
            self._on_change()

    async def _watch(self) -> None:
        while self._command.port is None:
            if self._command.error is not None:
                self._set(ReplicaState.FAILED, f"exited before becoming ready: {self._command.error}")
                return
            await asyncio.sleep(PROBE_INTERVAL_S / 5)
        self.port = self._command.port
        self._on_change()
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while self.state is not ReplicaState.STOPPED:
                await self._probe(client)
                await asyncio.sleep(PROBE_INTERVAL_S)

    async def _probe(self, client: httpx.AsyncClient) -> None:
        try:
            if (await client.get(self.spec.ready_path)).status_code == 200:
                self._set(ReplicaState.READY)
            elif self.spec.model_name and self.state is not ReplicaState.FAILED:
                index = (await client.post(INDEX_PATH)).json()
                if why := load_failure(index, self.spec.model_name):
                    self._set(ReplicaState.FAILED, why)
        except (httpx.HTTPError, ValueError):
            pass

    async def stop(self) -> None:
        self.state = ReplicaState.STOPPED
        await asyncio.to_thread(self._command.stop, 30.0)
        if self._task is not None:
            self._task.cancel()
        if self._log is not None:
            logging.getLogger().removeHandler(self._log)
            self._log.close()


def in_process_replica(name: str, spec: ProcessSpec, log_dir: Path) -> ReplicaHandle:
    """The `replica_factory` for in-process `serving up`: threads, except where a process is the point."""
    if spec.env or spec.args[:1] not in (["serve"], ["transform"]):
        return Replica(name, spec, log_dir)
    return InProcessReplica(name, spec, log_dir)
