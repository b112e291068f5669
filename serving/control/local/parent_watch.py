"""A supervised child dies with its supervisor: it asks the kernel for SIGTERM when its parent goes (even by
SIGKILL), so no model server is orphaned.

The child does this itself, first thing in `serving.cli.main`, when the supervisor sets `SERVING_PARENT_PID`:
no `preexec_fn` (unsafe in a threaded parent). If the parent is already gone by then, the child leaves at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

PARENT_PID_ENV = "SERVING_PARENT_PID"
PR_SET_PDEATHSIG = 1


def die_with_parent_if_asked() -> None:
    expected = os.environ.pop(PARENT_PID_ENV, "")  # not inherited by this process's own children
    if not expected.isdigit():
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return  # not Linux: children outlive a killed parent
    if os.getppid() != int(expected):  # the parent died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)
