"""The warm spawner's own process (a "zygote"): imports the model server and the common runtimes once, then
forks one replica per request from `serving up`, so a new replica skips the ~1.3 s of imports.

`serving up` starts it at boot with one end of a socket pair (`python -m serving.control.local.warm_spawn_zygote
FD PADDING`; the padding is room for the replicas' command lines). Newline-delimited JSON both ways:
request `{"id", "argv", "env", "log"}` -> `{"id", "pid"}` or `{"id", "error"}`; when a child ends,
`{"exited": pid, "code": returncode}` (negative: killed by that signal, as `asyncio.subprocess` reports it).

Single-threaded by design (fork copies only the calling thread): a `select` loop over the socket and a SIGCHLD
wake-up pipe. It preloads `PRELOAD` (the server, ~0.3 s) before it forks the first replica: a request that arrives
earlier waits, since a child forked mid-preload would import the same modules again, competing with the
spawner for the CPU. `PRELOAD_LATER` (scikit-learn first) is imported one module at a time once no request
came for a second and the machine's CPUs were mostly idle over it (not beside a replica that is starting or
serving, on a machine with few cores).
It leaves when the socket closes or `serving up` dies (parent-death signal). Its replicas outlive it: each
watches `serving up` itself (`parent_watch`), so a spawner killed takes no replica with it.
"""

from __future__ import annotations

import importlib
import os
import select
import signal
import socket
import sys
import time
from collections import deque
from typing import Any

import orjson

from serving.control.local.parent_watch import die_with_parent_if_asked
from serving.control.local.warm_spawn_child import become_replica

# What a replica imports before it answers, most common first. Not onnxruntime or xgboost: cheap to import in
# the child (~30 ms), and onnxruntime starts a thread at import, which a fork must not copy.
PRELOAD = (
    "serving.cli",
    "serving.commands.serve",
    "serving.server",
    "uvicorn",
    "uvicorn.loops.auto",
    "uvicorn.protocols.http.auto",
    "uvicorn.lifespan.on",
    "uvicorn.protocols.websockets.auto",
    "uvloop",
    "encodings.idna",
    "serving.port_check",
    "serving.runtimes.sklearn",
)
LATER_AFTER_IDLE_S = 1.0
# ...and only while the machine's CPUs were at least this idle over that second: not while replicas serve.
# Under `serving up`'s SCHED_BATCH (serving/sched.py) a replica or the router woken on this core waits for the
# running import's time slice (a few ms) instead of preempting it; at 0.5, one connection of load left the
# machine idle enough to import, and its p99 went from 0.5 to 2.5-3.5 ms while the imports ran.
LATER_WHEN_CPU_IDLE = 0.9
# scikit-learn itself comes later: a linear model served from its compiled form (runtimes/linear_cache.py)
# never imports it, and its ~1 s import must not delay the first replica of a fresh `serving up`. In steps of
# at most ~0.2 s (scipy's parts first, then scikit-learn's): a fork request that arrives during an import
# waits for that step only.
PRELOAD_LATER = (
    "joblib",
    "scipy.sparse",
    "scipy.optimize",
    "scipy.interpolate",
    "scipy.special",
    "scipy.stats._continuous_distns",
    "scipy.stats",
    "sklearn.base",
    "sklearn.metrics",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "serving.commands.transform",
)


def _noop(signum: int, frame: Any) -> None:
    """SIGCHLD needs a Python handler for the wake-up pipe to be written; the loop does the reaping."""


class Zygote:
    def __init__(self, sock: socket.socket, supervisor_pid: int) -> None:
        self.sock = sock
        self.supervisor_pid = supervisor_pid  # `serving up`: what the replicas die with
        self.buffer = b""
        self.later = deque(PRELOAD_LATER)
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_write, False)
        signal.set_wakeup_fd(self.wake_write)
        signal.signal(signal.SIGCHLD, _noop)

    def serve(self) -> list[str] | None:
        """Until `serving up` hangs up (None). In a forked child, returns that child's CLI argv instead."""
        started = time.monotonic()
        for module in PRELOAD:
            self.warm(module)
        print(f"warm spawner: preloaded in {time.monotonic() - started:.2f}s", file=sys.stderr, flush=True)
        while True:
            timeout = LATER_AFTER_IDLE_S if self.later else None
            readable, _, _ = select.select([self.sock.fileno(), self.wake_read], [], [], timeout)
            if self.wake_read in readable:
                os.read(self.wake_read, 4096)
            if not self.reap():
                return None
            if self.sock.fileno() in readable:
                try:
                    data = self.sock.recv(1 << 16)
                except OSError:
                    data = b""
                if not data:
                    return None
                self.buffer += data
                while b"\n" in self.buffer:
                    line, self.buffer = self.buffer.split(b"\n", 1)
                    argv = self.handle(line)
                    if argv is not None:
                        return argv
            elif self.later and not readable and self.machine_idle():
                self.warm(self.later.popleft())

    def machine_idle(self) -> bool:
        """Whether the CPUs were mostly idle since the last look: the later imports (~1 s of CPU) must not
        take a core from replicas that are serving."""
        import psutil  # after the fork-critical preload; cheap

        return bool(psutil.cpu_times_percent(interval=None).idle >= 100 * LATER_WHEN_CPU_IDLE)

    def warm(self, module: str) -> None:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - an optional runtime missing or broken: the child reports it
            print(f"warm spawner: not preloaded {module}: {exc}", file=sys.stderr, flush=True)

    def handle(self, line: bytes) -> list[str] | None:
        try:
            request = orjson.loads(line)
            ident, argv, env, log = request["id"], request["argv"], request["env"], request["log"]
            if not (isinstance(argv, list) and isinstance(env, dict) and isinstance(log, str)):
                raise TypeError("argv must be a list, env an object, log a string")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            self.send({"id": None, "error": f"bad request: {exc}"})
            return None
        try:
            log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            self.send({"id": ident, "error": f"cannot open {log}: {exc.strerror}"})
            return None
        return self.fork(ident, [str(a) for a in argv], {str(k): str(v) for k, v in env.items()}, log_fd)

    def fork(self, ident: Any, argv: list[str], env: dict[str, str], log_fd: int) -> list[str] | None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            self.sock.close()
            os.close(self.wake_read)
            os.close(self.wake_write)
            become_replica(argv, env, log_fd, self.supervisor_pid)
            return argv
        os.close(log_fd)
        self.send({"id": ident, "pid": pid})
        return None

    def reap(self) -> bool:
        """Report every child that ended; False if `serving up` is no longer listening."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return True
            if not self.send({"exited": pid, "code": os.waitstatus_to_exitcode(status)}):
                return False

    def send(self, message: dict[str, Any]) -> bool:
        try:
            self.sock.sendall(orjson.dumps(message) + b"\n")
        except OSError:
            return False
        return True


def main(argv: list[str]) -> int:
    supervisor_pid = os.getppid()
    die_with_parent_if_asked()
    sock = socket.socket(fileno=int(argv[0]))
    child_argv = Zygote(sock, supervisor_pid).serve()
    if child_argv is None:
        return 0
    from serving.cli import main as cli_main

    return cli_main(child_argv)  # in the forked replica: `serving ARGS`, exiting like an exec'd one


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
