"""`serving up`'s children are spawned by Popen (vfork, exec) and waited on from the event loop: the exit code
of a process that ends normally, by a signal or killed, seen without polling the process table."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from serving.control.local.spawn import spawn

pytestmark = pytest.mark.asyncio


async def test_exit_codes_and_signals_reach_the_waiter() -> None:
    done = spawn([sys.executable, "-c", "raise SystemExit(3)"])
    segv = spawn([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    sleeper = spawn([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    assert await asyncio.wait_for(done.wait(), 30) == 3 and done.returncode == 3
    assert await asyncio.wait_for(segv.wait(), 30) == -signal.SIGSEGV
    assert sleeper.returncode is None
    sleeper.kill()
    assert await asyncio.wait_for(sleeper.wait(), 30) == -signal.SIGKILL


async def test_a_preexec_fn_is_refused_since_it_would_fork() -> None:
    with pytest.raises(AssertionError, match="preexec_fn"):
        spawn([sys.executable, "-c", "pass"], preexec_fn=lambda: None)
