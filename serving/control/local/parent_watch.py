"""A supervised child dies with its supervisor: it asks the kernel for SIGTERM when its supervisor goes (even by
SIGKILL), so no model server is orphaned.

The child does this itself, first thing in `serving.cli.main`, when the supervisor sets `SERVING_PARENT_PID`:
no `preexec_fn` (unsafe in a threaded parent). An exec'd child's parent is its supervisor: the kernel's
parent-death signal does it. A replica forked by the warm spawner has the spawner as its parent, and must not
die with it (a spawner killed would take every replica with it): it watches the supervisor's pid instead
(a pidfd, readable when that process ends). If the supervisor is already gone, the child leaves at once.
SIGTERM is a graceful exit; a child still there `ORPHAN_GRACE_S` later (a model call that never ends, a hung
shutdown) is killed: with its supervisor gone, no client is waiting for it any more. A child that is itself
stopped (SIGSTOP) runs no thread to do that: only the exec'd ones, whose kernel signal arrives anyway, leave then.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import threading
import time

PARENT_PID_ENV = "SERVING_PARENT_PID"
PR_SET_PDEATHSIG = 1
ORPHAN_GRACE_S = 10.0  # from the supervisor's death to SIGKILL when the graceful exit has not ended


def die_with_parent_if_asked() -> None:
    expected = os.environ.pop(PARENT_PID_ENV, "")  # not inherited by this process's own children
    if not expected.isdigit():
        return
    supervisor = int(expected)
    forked = os.getppid() != supervisor
    # The watcher ends a graceful exit that hangs; for a forked child it also starts it (no kernel signal).
    if _watch(supervisor, terminate=forked) and forked:
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return  # not Linux: children outlive a killed parent
    if os.getppid() != supervisor:  # the parent died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def _watch(pid: int, terminate: bool = True) -> bool:
    """When `pid` ends (a daemon thread waiting on its pidfd): SIGTERM to this process if `terminate`, then
    SIGKILL after `ORPHAN_GRACE_S` if it is still running. False if pidfds are not available here (the caller
    falls back to the parent-death signal)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGTERM)
        return True
    except (AttributeError, OSError):
        return False

    def wait_then_leave() -> None:
        select.select([fd], [], [])
        if terminate:
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE_S)  # the graceful exit's bound, not a synchronisation
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait_then_leave, name="supervisor-watch", daemon=True).start()
    return True
