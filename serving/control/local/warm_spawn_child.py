"""What a replica forked by the warm spawner does first: become the process `serving up` would have exec'd.

Own session (the supervisor signals the process group, as for an exec'd child), stdout and stderr into its log
file, stdin from /dev/null, the environment the supervisor sent (with `serving up` as the process to die with),
default SIGCHLD, coverage restarted when the spawner was measured, and a command line `ps` and psutil read as
`python -m serving.cli ARGS` (written over the spawner's own argv area, which was padded for it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence

from serving.control.local.parent_watch import PARENT_PID_ENV


def become_replica(argv: Sequence[str], env: dict[str, str], log_fd: int, supervisor_pid: int) -> None:
    """Called in the child right after fork, before anything else runs in it."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null)
    os.close(log_fd)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True, write_through=True)  # type: ignore[union-attr]
    os.environ.clear()
    os.environ.update({**env, PARENT_PID_ENV: str(supervisor_pid)})  # dies with `serving up`, not the spawner
    sys.argv = ["serving", *argv]
    set_command_line([sys.executable, "-m", "serving.cli", *argv])
    restart_coverage()


def restart_coverage() -> None:
    """A spawner measured by coverage (`patch = ["subprocess"]`) forks children that must save their own data
    under their own pid, not the spawner's pre-fork data: coverage's own after-fork hook does exactly that."""
    if "coverage" not in sys.modules:
        return
    try:
        from coverage import control
    except ImportError:  # pragma: no cover - coverage half-installed
        return
    hook = getattr(control, "_after_fork_in_child", None)
    if hook is not None and control.Coverage.current() is not None:
        hook()


def _argv_area() -> tuple[int, int] | None:
    """Start and end address of this process's original argv strings (fields 48-49 of /proc/self/stat)."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is field 3 (state): field N is fields[N - 3]
    if len(fields) < 47:
        return None
    return int(fields[45]), int(fields[46])


def set_command_line(argv: Sequence[str]) -> None:
    """Show `argv` as this process's command line, space-separated like setproctitle(3) does.

    Python copied its argv at start, so the original strings are free to overwrite. The title ends with a NUL
    and the area's last byte is not one, which tells the kernel to read the title up to that NUL."""
    area = _argv_area()
    if area is None:
        return
    start, end = area
    room = end - start
    if start <= 0 or room < 2:  # hidden or too small: keep the spawner's
        return
    title = " ".join(argv).encode(errors="replace")[: room - 2]
    text = title + b"\0" + b" " * (room - len(title) - 1)
    import ctypes

    with contextlib.suppress(OSError, ValueError):
        ctypes.memmove(start, text, room)
