"""One way for the operator tests to run kopf in a thread (kopf.testing.KopfRunner) and stop it quickly.

Two kopf waits that only cost test time are cut here, for tests only (the operator's settings in production are
untouched):
- kopf's patch of its own progress annotations retries on kmock's emulator (which bumps no resourceVersion);
  `queueing.exit_timeout` 0.1 s instead of the default 2 s before the runner gives those retries up;
- kopf 1.45 race on exit: an event processed after the stop flag can respawn a timer (our resync) after kopf's
  daemon killer has stopped the timers; kopf then waits a fixed 5 s for that "hung" task before cancelling it.
  A cleanup activity (it runs after all other root tasks are gone) cancels the leftover timer runners at once,
  which is what kopf itself does after those 5 s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from kopf.testing import KopfRunner


def quick_exit(registry: kopf.OperatorRegistry) -> None:
    """Register the two test-only shortcuts above on `registry`."""

    @kopf.on.startup(registry=registry)
    def short_exit_timeout(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.queueing.exit_timeout = 0.1

    @kopf.on.cleanup(registry=registry)
    async def cancel_leftover_timers(**_: Any) -> None:
        for task in asyncio.all_tasks():
            if task.get_name().startswith("runner of "):  # kopf's name for a daemon/timer task
                task.cancel()


def operator_runner(registry: kopf.OperatorRegistry) -> KopfRunner:
    """`kopf run -A --standalone` with `registry` in a thread; leaving the `with` stops it in well under 1 s."""
    quick_exit(registry)
    return KopfRunner(["run", "-A", "--standalone"], registry=registry, timeout=30)
