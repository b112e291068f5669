"""A supervised child dies with its supervisor: it asks the kernel for SIGTERM when its supervisor goes (even by
SIGKILL), so no model server is orphaned.

The child does this itself, first thing in `serving.cli.main`, when the supervisor sets `SERVING_PARENT_PID`:
no `preexec_fn` (unsafe in a threaded parent). An exec'd child's parent is its supervisor: the kernel's
parent-death signal does it. A replica forked by the warm spawner has the spawner as its parent, and must not
die with it (a spawner killed would take every replica with it): it watches the supervisor's pid instead
(a pidfd, readable when that process ends). If the supervisor is already gone, the child leaves at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import threading

PARENT_PID_ENV = "SERVING_PARENT_PID"
PR_SET_PDEATHSIG = 1


def die_with_parent_if_asked() -> None:
    expected = os.environ.pop(PARENT_PID_ENV, "")  # not inherited by this process's own children
    if not expected.isdigit():
        return
    supervisor = int(expected)
    if os.getppid() != supervisor and _watch(supervisor):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return  # not Linux: children outlive a killed parent
    if os.getppid() != supervisor:  # the parent died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def _watch(pid: int) -> bool:
    """SIGTERM to this process when `pid` ends, from a daemon thread waiting on its pidfd; False if pidfds are
    not available here (the caller falls back to the parent-death signal)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGTERM)
        return True
    except (AttributeError, OSError):
        return False

    def wait_then_leave() -> None:
        select.select([fd], [], [])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait_then_leave, name="supervisor-watch", daemon=True).start()
    return True
