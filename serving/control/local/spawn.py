"""Child processes of `serving up` started by `subprocess.Popen` (vfork, then exec), waited on from the event loop.

The event loop's own subprocess support (uvloop's, libuv's) forks a copy of `serving up`, threads' state and
at-fork handlers included, which runs until its exec; `serving up` with `--grpc-port` and tracing holds grpc's
threads and OpenTelemetry's. A replica restarted under gRPC load with tracing on was seen to die of a segfault
in a grpc `event_engine` thread a millisecond after its spawn (audit /tmp/newuser7 H1; four in a row mark a
healthy revision failed). `Popen` without `preexec_fn` uses vfork and execs at once: nothing of the parent runs
in the child. Counted beside a busy grpc server under uvloop: 26 of 1,200 children forked by the loop died of
SIGSEGV before their exec, none of 1,200 spawned here (tests/test_spawn.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from typing import Any

POLL_S = 0.1  # without a pidfd (not Linux >= 5.3): how often an exit is looked for


class Child:
    """A spawned process as the supervisor sees it: `pid`, `returncode` (None while it runs; minus the signal
    that ended it), `wait()`, `kill()`."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.returncode: int | None = None
        self._exited = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._fd: int | None = None
        try:
            self._fd = os.pidfd_open(self.pid)
            self._loop.add_reader(self._fd, self._reap)
        except (AttributeError, OSError):
            self._fd = None
            self._loop.create_task(self._poll())

    def _reap(self) -> None:
        code = self._popen.poll()
        if code is None:
            return
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        self.returncode = code
        self._exited.set()

    async def _poll(self) -> None:
        while self.returncode is None:
            self._reap()
            if self.returncode is None:
                await asyncio.sleep(POLL_S)

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def spawn(argv: list[str], **popen: Any) -> Child:
    """Start `argv` (Popen's keyword arguments; never `preexec_fn`, which would fork instead of vfork)."""
    assert "preexec_fn" not in popen, "a preexec_fn makes Popen fork and run the parent's at-fork handlers"
    return Child(subprocess.Popen(argv, **popen))
