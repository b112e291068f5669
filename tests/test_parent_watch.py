"""A child asked to die with its supervisor does, also when the supervisor is not its parent (a replica forked
by the warm spawner watches `serving up`, not the spawner): real processes, the supervisor killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from serving.control.local.parent_watch import PARENT_PID_ENV

CHILD = (
    "from serving.control.local.parent_watch import die_with_parent_if_asked\n"
    "die_with_parent_if_asked()\n"
    "import time\n"
    "print('watching', flush=True)\n"
    "time.sleep(60)\n"
)


def _child(supervisor_pid: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env={**os.environ, PARENT_PID_ENV: str(supervisor_pid)},  # (coverage measures the child too)
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_child_whose_supervisor_is_not_its_parent_leaves_when_the_supervisor_dies() -> None:
    supervisor = subprocess.Popen(["sleep", "60"])
    child = _child(supervisor.pid)
    try:
        assert child.stdout is not None and child.stdout.readline() == "watching\n"
        assert child.poll() is None  # alive while the supervisor is
        supervisor.kill()
        supervisor.wait()
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        for process in (supervisor, child):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_a_child_whose_supervisor_is_already_gone_leaves_at_once() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    child = _child(gone.pid)
    try:
        assert child.wait(timeout=30) == -signal.SIGTERM
        assert child.stdout is not None and child.stdout.read() == ""  # it never got to run
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_child_that_does_not_leave_on_sigterm_is_killed_after_the_grace() -> None:
    """A model call that never ends (here: SIGTERM ignored) must not keep an orphan alive: SIGKILL follows."""
    script = (
        "from serving.control.local import parent_watch\n"
        "parent_watch.ORPHAN_GRACE_S = 0.3\n"
        "parent_watch.die_with_parent_if_asked()\n"
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('watching', flush=True)\n"
        "time.sleep(60)\n"
    )
    supervisor = subprocess.Popen(["sleep", "60"])
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, PARENT_PID_ENV: str(supervisor.pid)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "watching\n"
        supervisor.kill()
        supervisor.wait()
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        for process in (supervisor, child):
            if process.poll() is None:
                process.kill()
                process.wait()
