"""Supervised model-server processes on loopback: start, health-check, restart, drain, stop.

Each child binds port 0 itself (no free-port race); the supervisor reads the port the child listens on from
the kernel (`listening_port`). A restarted child gets a new port, and the replica's `port` is 0 until it
listens again (never a stale one): the runner re-points what depended on it. The child asks for SIGTERM when
its parent dies (`parent_watch`, requested through the environment; no `preexec_fn`). With a `spawner`
(`serving up`'s default), a replica is forked from a process that already imported the model server
(`warm_spawn`), else exec'd as `python -m serving.cli`; either way it is supervised the same.

A replica is one OS process. It is `ready` while its `/v2/health/ready` answers 200. A crashed replica is
restarted with exponential backoff; one that keeps crashing on start is reported `failed` with the tail of
its log, and so is a predictor whose model failed to load (its own error text).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
import psutil

from serving.control import events
from serving.control.local.parent_watch import PARENT_PID_ENV
from serving.control.local.spawn import Child, spawn
from serving.control.local.warm_spawn import WarmChild, WarmSpawner, forkable
from serving.http import local_sockets
from serving.http_client import HTTPClient
from serving.repository import NOT_LOADED

log = logging.getLogger("serving.processes")

HEALTH_INTERVAL_S = 0.25
STARTING_INTERVAL_S = 0.02  # port and readiness checks before the first ready answer
HEALTH_TIMEOUT_S = 1.0
UNHEALTHY_AFTER = 3  # consecutive failed health checks of an idle ready replica before it is replaced
# A replica that misses checks while it burns CPU is working (a long decode of a large body holds the GIL),
# not hung: it is given this long before it is replaced (Kubernetes' default liveness probe: 3 x 10 s).
BUSY_GRACE_S = 30.0
BUSY_CPU_SHARE = 0.25  # of a core, since the previous check: working, not stopped or deadlocked
MAX_BACKOFF_S = 30.0
CRASH_LOOP_LIMIT = 4  # crashes before first ready that mark the replica failed
TAIL_ROOM = 600  # characters of a failed replica's own log quoted in its revision's reason


@dataclass(frozen=True)
class Liveness:
    """When a ready replica that stops answering is replaced: after `failures` missed checks in a row (each
    `timeout_s`, every `period_s`) while it is idle (stopped, deadlocked), or after `busy_grace_s` of missed
    checks while it burns CPU (a long call holds its event loop: it is working, not hung). A container's
    `livenessProbe` gives the first three (Kubernetes' defaults for what it leaves out)."""

    timeout_s: float = HEALTH_TIMEOUT_S
    period_s: float = HEALTH_INTERVAL_S
    failures: int = UNHEALTHY_AFTER
    busy_grace_s: float = BUSY_GRACE_S

    @classmethod
    def of_probe(cls, probe: Mapping[str, Any] | None) -> Liveness:
        if not probe:
            return cls()

        def number(key: str, default: float) -> float:
            value = probe.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                return default
            return float(value)

        return cls(
            timeout_s=number("timeoutSeconds", 1),
            period_s=number("periodSeconds", 10),
            failures=int(number("failureThreshold", 3)),
        )


class Silence:
    """A ready replica's run of missed health checks, judged by its `Liveness`."""

    def __init__(self, liveness: Liveness) -> None:
        self.liveness = liveness
        self.missed = 0
        self.since: float | None = None

    def answered(self) -> None:
        self.missed, self.since = 0, None

    def replace(self, working: bool, now: float) -> bool:
        """One more missed check (`working`: it used CPU meanwhile): whether to replace the replica now."""
        self.since = now if self.since is None else self.since
        self.missed += 0 if working else 1
        return self.missed >= self.liveness.failures or now - self.since >= self.liveness.busy_grace_s


class CpuWatch:
    """Whether a process used CPU since the previous look: a replica that misses health checks while it does
    is busy (its event loop held by a long call), one that does not is stopped or deadlocked."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._last = self._sample()

    def _sample(self) -> tuple[float, float] | None:
        try:
            times = psutil.Process(self._pid).cpu_times()
        except psutil.Error:
            return None
        return time.monotonic(), times.user + times.system

    def working(self) -> bool:
        now, before = self._sample(), self._last
        self._last = now
        if now is None or before is None or now[0] <= before[0]:
            return False
        return (now[1] - before[1]) / (now[0] - before[0]) >= BUSY_CPU_SHARE


class ReplicaState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


def listening_ports(pid: int) -> list[int]:
    """The TCP ports process `pid` listens on, in the order it opened them; [] if none yet or it is gone."""
    try:
        process = psutil.Process(pid)
        connections = getattr(process, "net_connections", process.connections)(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []
    return [
        port
        for _, port in sorted((c.fd, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN)
    ]


def listening_port(pid: int) -> int:
    """The TCP port process `pid` listens on (its first listening socket), 0 if none yet or it is gone."""
    ports = listening_ports(pid)
    return ports[0] if ports else 0


@dataclass
class ProcessSpec:
    """What to run: `serving` CLI arguments (without host/port) plus environment."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/v2/health/ready"
    model_name: str | None = None  # set: a failure of its models (repository index) marks the replica failed
    liveness: Liveness = field(default_factory=Liveness)


INDEX_PATH = "/v2/repository/index"


async def _answering_http(http: HTTPClient, ports: list[int]) -> int:
    """The first of `ports` that answers HTTP/1.1 (any status), 0 if none does yet: a model server with a gRPC
    listener has two, and which one it opens first is not fixed. gRPC answers an HTTP/1.1 request with
    HTTP/2 frames, which the client refuses at once."""
    for port in ports:
        try:
            await http.get(f"http://127.0.0.1:{port}/v2/health/live", HEALTH_TIMEOUT_S)
            return port
        except (ConnectionError, TimeoutError, ValueError):
            continue
    return 0


def load_failure(index: Any, model: str | None) -> str:
    """Why a replica will not serve however long it is given, from its `POST /v2/repository/index`: a model
    UNAVAILABLE with a reason (its load failed; a transformer's predictor has no such model), `model`'s first.
    "" while its models load or wait for something that may yet come (LOADING), are ready, or were unloaded."""
    if not isinstance(index, list):
        return ""
    failed = [
        m
        for m in index
        if isinstance(m, dict)
        and m.get("state") == "UNAVAILABLE"
        and m.get("reason")
        and m.get("reason") not in ("unloaded", NOT_LOADED)
    ]
    named = [m for m in failed if m.get("name") == model]
    return str((named or failed)[0]["reason"]) if failed else ""


@dataclass
class Replica:
    name: str
    spec: ProcessSpec
    log_dir: Path
    state: ReplicaState = ReplicaState.STARTING
    error: str = ""
    port: int = 0
    restarts: int = 0
    process: Child | WarmChild | None = None
    spawner: WarmSpawner | None = field(default=None, repr=False)  # forks it warm when it can
    # Where it listens on a Unix socket too, for the router and its siblings (serving/http/local_sockets.py)
    unix_socket_dir: str | None = None
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False
    _log_start: int = 0  # where this instance's lines begin in the log it shares with those before it
    _on_change: Callable[[], None] = field(default_factory=lambda: lambda: None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def _speaks_grpc(self) -> bool:
        """It opens a gRPC listener beside HTTP: `--grpc-port N` or `--grpc-port=N` in its args."""
        return any(a == "--grpc-port" or a.startswith("--grpc-port=") for a in self.spec.args)

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._task = asyncio.create_task(self._supervise(), name=f"replica-{self.name}")

    def _set(self, state: ReplicaState, error: str = "") -> None:
        if (state, error) != (self.state, self.error):
            if state is not self.state and state in (ReplicaState.READY, ReplicaState.FAILED):
                events.replica(self.name, state.value, error)
            self.state, self.error = state, error
            self._on_change()

    async def _supervise(self) -> None:
        crashes_before_ready = 0
        backoff = 0.5
        http = HTTPClient(connect_timeout_s=HEALTH_TIMEOUT_S, max_per_endpoint=2)
        try:
            while not self._stopping:
                await self._spawn()
                was_ready = await self._watch(http)
                if self._stopping or self.state is ReplicaState.FAILED:  # its model cannot load: not again
                    break
                code = self.process.returncode if self.process else None
                if not was_ready:
                    crashes_before_ready += 1
                    if crashes_before_ready >= CRASH_LOOP_LIMIT:
                        self._set(
                            ReplicaState.FAILED,
                            f"exited with {code} before becoming ready: {self._log_tail()}",
                        )
                        return
                else:
                    crashes_before_ready, backoff = 0, 0.5
                self.restarts += 1
                events.replica(self.name, "crashed", f"exited with {code}; restarting in {backoff:.1f}s")
                self._set(ReplicaState.STARTING)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        finally:
            http.close()

    async def _spawn(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._mark_log_start()
        argv = [*self.spec.args, "--host", "127.0.0.1", "--port", "0"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.spec.env, PARENT_PID_ENV: str(os.getpid())}
        if self.unix_socket_dir is not None:
            env[local_sockets.ENV] = self.unix_socket_dir
        warm = None
        if self.spawner is not None and forkable(self.spec.env):
            warm = await self.spawner.spawn(argv, env, self.log_path)
        self.process = warm or await self._exec(argv, env)
        how = ", forked warm" if warm else ""
        events.replica(self.name, "restarted" if self.restarts else "started", f"pid {self.process.pid}{how}")

    async def _exec(self, argv: list[str], env: dict[str, str]) -> Child:
        """A fresh interpreter, spawned without the event loop's fork (serving/control/local/spawn.py)."""
        with open(self.log_path, "ab") as out:
            return spawn(
                [sys.executable, "-m", "serving.cli", *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )

    async def _watch(self, http: HTTPClient) -> bool:
        """Health-check until the process exits (or is replaced); True if it was ever ready."""
        assert self.process is not None
        ever_ready = False
        silence = Silence(self.spec.liveness)
        clock = asyncio.get_running_loop().time
        cpu = CpuWatch(self.process.pid)
        while self.process.returncode is None and not self._stopping:
            probed = clock()
            ok = await self._found_port(http) and await self._probe(http)
            working = ever_ready and cpu.working()  # once ready, sampled at each check: CPU since the last
            if (
                self.state is ReplicaState.FAILED
            ):  # its model failed to load: free the process, keep the reason
                await self._end_failed()
                break
            if ok:
                ever_ready = True
                silence.answered()
                self._set(ReplicaState.READY)
            elif ever_ready:
                if silence.replace(working, clock()):
                    events.replica(self.name, "unhealthy", "health checks failing; replacing it")
                    self._set(ReplicaState.STARTING, "health checks failing")
                    await self._kill()
                    break
            try:
                # Until first ready, look often: readiness seen 250 ms late is cold start added for nothing.
                await asyncio.wait_for(
                    self.process.wait(),
                    # a check every period_s, its own time included (Kubernetes' periodSeconds)
                    max(self.spec.liveness.period_s - (clock() - probed), 0.0)
                    if ever_ready
                    else STARTING_INTERVAL_S,
                )
            except TimeoutError:
                pass
        if self.port:  # gone: its next incarnation listens elsewhere
            self.port = 0
            self._on_change()
        return ever_ready

    async def _end_failed(self) -> None:
        """A process whose model failed to load would idle on (~70 MB) for nothing: stopped, its FAILED state
        and reason kept for the revision's status."""
        assert self.process is not None
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            await self._kill()

    async def _found_port(self, http: HTTPClient) -> bool:
        """Whether the child listens yet; learning its port is a change the runner hears about."""
        if not self.port and self.process is not None:
            ports = await asyncio.to_thread(listening_ports, self.process.pid)
            if self._speaks_grpc:  # two listeners, opened in either order: HTTP is the one answering HTTP
                self.port = await _answering_http(http, ports)
            else:
                self.port = ports[0] if ports else 0
            if self.port:
                self._on_change()
        return bool(self.port)

    async def _probe(self, http: HTTPClient) -> bool:
        try:
            timeout_s = self.spec.liveness.timeout_s if self.state is ReplicaState.READY else HEALTH_TIMEOUT_S
            response = await http.get(self.url + self.spec.ready_path, timeout_s)
            if response.status == 200:
                return True
            if self.spec.model_name and self.state is not ReplicaState.FAILED:
                response = await http.request(self.url, "POST", INDEX_PATH, timeout_s=HEALTH_TIMEOUT_S)
                if why := load_failure(orjson.loads(response.body), self.spec.model_name):
                    self._set(ReplicaState.FAILED, why)
        except (ConnectionError, TimeoutError, ValueError):
            pass
        return False

    def _mark_log_start(self) -> None:
        try:
            self._log_start = self.log_path.stat().st_size
        except OSError:
            self._log_start = 0

    def _log_tail(self, room: int = TAIL_ROOM) -> str:
        """The last lines the instance that just ended wrote (not those of the instances before it), whole
        lines where they fit in `room`: the reason a failed revision shows in `serving get` and in errors."""
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(self._log_start)
                text = log_file.read().decode(errors="replace")
        except OSError:
            text = ""
        lines = [line for line in text.strip().splitlines() if line.strip()][-3:]
        if not lines:
            return f"it wrote nothing (log {self.log_path})"
        kept: list[str] = []
        for line in reversed(lines):
            if kept and sum(map(len, kept)) + len(line) > room:
                break
            kept.insert(0, line if len(line) <= room else "..." + line[-room:])
        return " | ".join(kept)

    async def stop(self, timeout_s: float = 20.0) -> None:
        """Graceful: SIGTERM (uvicorn finishes in-flight requests), SIGKILL after `timeout_s`."""
        self._stopping = True
        if self.process is not None and self.process.returncode is None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout_s)
            except TimeoutError:
                await self._kill()
        if self._task is not None:
            self._task.cancel()
        self.state = ReplicaState.STOPPED

    async def _kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self._signal(signal.SIGKILL)
            await self.process.wait()

    def _signal(self, sig: int) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass
