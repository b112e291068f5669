"""`serving up`'s end of the warm spawner: replicas forked from a process that already imported the model
server and the common runtimes (`warm_spawn_zygote`), instead of a fresh `python -m serving.cli` each.

A fresh replica spends ~1.3 s importing (scikit-learn alone ~1 s) before it loads its model; a forked one
starts at the model load. The spawner is an optimisation only: when it is off, gone, slow to answer or the
replica's environment must act at interpreter start (`START_ONLY_ENV`), `spawn` returns None and the caller
execs the replica as before. Off with `serving up --no-warm-start` or `SERVING_WARM_START=0`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from serving.control.local.parent_watch import PARENT_PID_ENV

log = logging.getLogger("serving.processes")

WARM_START_ENV = "SERVING_WARM_START"
ZYGOTE_MODULE = "serving.control.local.warm_spawn_zygote"
TITLE_ROOM = 2048  # bytes of argv padding: room for a forked replica's command line in `ps`
RELAUNCH_FIRST_S, RELAUNCH_MAX_S = 1.0, 60.0  # pause before starting an ended spawner again (doubling)
SPAWN_TIMEOUT_S = 30.0  # the spawner may still be importing scikit-learn on a loaded machine
# Read by the interpreter, a native library or a Python library at import when the process starts (the
# spawner may have imported scikit-learn, SciPy or joblib already; the C library read TZ): a fork would not
# honour them.
START_ONLY_ENV = re.compile(
    r"^(PYTHON|LD_|MALLOC_|OMP_|KMP_|MKL_|OPENBLAS_|GOTOBLAS|BLIS_|VECLIB_|NUMEXPR_|SKLEARN_|SCIPY_|JOBLIB_"
    r"|LOKY_|XGBOOST_|ORT_|TZ$|PROMETHEUS_MULTIPROC_DIR$)",
    re.IGNORECASE,  # prometheus-client also reads prometheus_multiproc_dir
)


def warm_start_enabled(flag_off: bool) -> bool:
    return not flag_off and os.environ.get(WARM_START_ENV, "1").lower() not in ("0", "false", "no", "off")


def forkable(env: dict[str, str]) -> bool:
    """Whether a forked replica would see `env` (the spec's variables) as an exec'd one does."""
    return not any(START_ONLY_ENV.match(name) for name in env)


class WarmChild:
    """A forked replica as the supervisor sees it: `pid`, `returncode` (None while it runs), `wait()`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = asyncio.Event()

    def exited(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


class WarmSpawner:
    def __init__(
        self, process: subprocess.Popen[bytes], sock: socket.socket, log_dir: Path | None = None
    ) -> None:
        self.process = process
        self.sock = sock
        self.log_dir = log_dir  # where a relaunched spawner logs; None: never relaunched
        self.usable = True
        self._closed = False
        self._relaunch_after_s = RELAUNCH_FIRST_S
        self._relaunch_task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._children: dict[int, WarmChild] = {}
        self._connected: asyncio.Future[asyncio.StreamWriter] | None = None
        self._reader_task: asyncio.Task[None] | None = None

    @classmethod
    def launch(cls, log_dir: Path) -> WarmSpawner | None:
        """Start the spawner process now (it imports while `serving up` boots); None if it cannot start."""
        started = _start(log_dir)
        return None if started is None else cls(*started, log_dir)

    async def _relaunch(self) -> None:
        """A spawner that ended while `serving up` runs is started again after a pause (doubling up to a
        minute: one that keeps dying costs little); until then, and if it cannot start, replicas are exec'd."""
        await asyncio.sleep(self._relaunch_after_s)
        self._relaunch_after_s = min(self._relaunch_after_s * 2, RELAUNCH_MAX_S)
        if self._closed or self.log_dir is None:
            return
        started = _start(self.log_dir)
        if started is None:
            return
        with contextlib.suppress(OSError):
            self.sock.close()  # the ended one's
        self.process.poll()  # reaped now, not left a zombie until the next Popen
        self.process, self.sock = started
        self._connected, self._reader_task = None, None
        self.usable = True
        log.warning("warm spawner restarted (pid %d)", self.process.pid)

    async def spawn(self, argv: list[str], env: dict[str, str], log_path: Path) -> WarmChild | None:
        """A replica forked from the spawner, or None: the caller then starts it the ordinary way."""
        if not self.usable:
            return None
        try:
            writer = await self._connect()
            if not self.usable:  # it ended while this spawn waited for the connection
                return None
            ident = next(self._ids)
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._pending[ident] = future
            writer.write(orjson.dumps({"id": ident, "argv": argv, "env": env, "log": str(log_path)}) + b"\n")
            pid = await asyncio.wait_for(future, SPAWN_TIMEOUT_S)  # timed out: cancelled, see `_dispatch`
        except (OSError, TimeoutError, RuntimeError) as exc:
            log.warning("warm spawner did not start a replica (%s): starting it as a fresh process", exc)
            return None
        return self._children.setdefault(pid, WarmChild(pid))

    async def _connect(self) -> asyncio.StreamWriter:
        """One stream over the socket, opened by the first spawn; concurrent spawns wait for that one."""
        if self._connected is None:
            self._connected = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._connected)

    async def _open(self) -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_unix_connection(sock=self.sock)
        self._reader_task = asyncio.create_task(self._read(reader), name="warm-spawner")
        return writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                self._dispatch(orjson.loads(line))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("warm spawner channel broken: %s", exc)
        await self._lost()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "exited" in message:
            child = self._children.pop(message["exited"], None)
            if child is not None:
                child.exited(int(message["code"]))
            return
        future = self._pending.pop(message.get("id") or 0, None)
        if "pid" in message:
            pid = int(message["pid"])
            if future is not None and not future.cancelled():
                self._children.setdefault(pid, WarmChild(pid))
                future.set_result(pid)
            else:  # the caller gave up waiting and started a fresh process instead
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # not killpg: it may not lead its own session yet
                self._children.setdefault(pid, WarmChild(pid))
        elif future is not None and not future.done():
            future.set_exception(RuntimeError(str(message.get("error"))))

    async def _lost(self) -> None:
        """The spawner ended: no more forks. Its replicas keep serving (they watch `serving up`, not it);
        each is reported exited once its pid is gone (the exit status went to whoever reaped it)."""
        if self.usable:
            log.warning("warm spawner exited: new replicas start as fresh processes until it is back")
        self.usable = False
        if not self._closed and self.log_dir is not None:
            self._relaunch_task = asyncio.create_task(self._relaunch(), name="warm-spawner-relaunch")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RuntimeError("the warm spawner exited"))
        self._pending.clear()
        children, self._children = list(self._children.values()), {}
        await asyncio.gather(*(_until_gone(child) for child in children))

    def close(self, timeout_s: float = 5.0) -> None:
        """At `serving up` exit (its replicas already stopped): hang up, the spawner leaves."""
        self.usable, self._closed = False, True
        if self._relaunch_task is not None:
            self._relaunch_task.cancel()
        if self._reader_task is not None:
            self._reader_task.cancel()
        self.sock.close()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _start(log_dir: Path) -> tuple[subprocess.Popen[bytes], socket.socket] | None:
    """The spawner process and our end of its socket; None (logged) if it cannot start."""
    ours, theirs = socket.socketpair()
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "warm-spawner.log", "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", ZYGOTE_MODULE, str(theirs.fileno()), " " * TITLE_ROOM],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=[theirs.fileno()],
                env={**os.environ, PARENT_PID_ENV: str(os.getpid())},
                start_new_session=True,
            )
    except OSError as exc:
        log.warning("warm spawner not started (%s): replicas start as fresh processes", exc)
        ours.close()
        return None
    finally:
        theirs.close()
    return process, ours


async def _until_gone(child: WarmChild) -> None:
    while _alive(child.pid):
        await asyncio.sleep(0.05)
    child.exited(-signal.SIGTERM)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False
