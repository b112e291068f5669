"""Starting what the load is aimed at: `serving serve`, `serving up`, or the bare HTTP-ceiling app.

Each is a real subprocess on a free loopback port, in its own process group (so stopping it stops
its children too), logging to a file; readiness is polled, never slept for.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from serving.errors import ServingError

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
RESULTS = REPO / "loadtests" / "results"
# `python -m loadtests.bench --pin`: the CPU list every started server (and its children) is confined to.
SERVER_CPUS: str | None = None


def pinned(argv: list[str]) -> list[str]:
    """`argv` under `taskset -c SERVER_CPUS` when pinning (taskset execs, so the pid stays the server's)."""
    return ["taskset", "-c", SERVER_CPUS, *argv] if SERVER_CPUS else argv


_PORTS = random.SystemRandom()  # its own source: a test that seeds `random` must not make workers pick alike


def free_port() -> int:
    """A loopback port free now, for a process that binds it later. Drawn below the kernel's ephemeral range:
    a port from `bind(0)` could be handed to another server binding port 0 (an in-process server, another
    xdist worker) before the process binds it, and its readiness probe would be answered by that server."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = _PORTS.randrange(max(1024, low - 16384), max(1025, low))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool],
    timeout_s: float = 60.0,
    what: str = "",
    process: subprocess.Popen | None = None,
    log: Path | None = None,
    interval_s: float = 0.05,
) -> None:
    """Call `predicate` every `interval_s` until true (connection errors count as not yet); fail early if
    `process` exits, with the tail of its `log`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what}: process exited with {process.returncode}\n{tail}")
        try:
            if predicate():
                return
        except (httpx.TransportError, OSError):
            pass
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what or predicate}")


@dataclass
class Target:
    url: str
    process: subprocess.Popen
    log: Path
    state_dir: Path | None = None  # `serving up` only


def stop_process(process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """SIGTERM the process group (graceful drain), SIGKILL it if it does not exit in time."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(5)
    except ProcessLookupError:
        pass


@contextmanager
def started(
    argv: list[str],
    ready_path: str,
    log: Path,
    timeout_s: float = 90.0,
    ready: Callable[[str], bool] | None = None,
    state_dir: Path | None = None,
    *,
    ready_status: int = 200,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[Target]:
    """Run `argv + --host 127.0.0.1 --port P` (P free unless given) and yield once GET `ready_path` answers
    `ready_status` (and `ready(url)` holds). Also what tests/support.py starts real processes with. A free port
    another process took before ours bound it (parallel test workers) is drawn again."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    for attempt in range(3):
        chosen = port or free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*pinned(argv), "--host", "127.0.0.1", "--port", str(chosen)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=full_env,
                start_new_session=True,
            )
        target = Target(f"http://127.0.0.1:{chosen}", process, log, state_dir)
        try:
            wait_until(
                lambda url=target.url: httpx.get(url + ready_path, timeout=2).status_code == ready_status,
                timeout_s,
                f"{target.url}{ready_path}",
                process,
                log,
            )
        except RuntimeError as exc:
            stop_process(process)
            if port is None and attempt < 2 and "is in use" in str(exc):
                continue  # another process bound the free port between its draw and our bind: draw again
            raise
        except BaseException:
            stop_process(process)
            raise
        break
    try:
        if ready is not None:
            wait_until(
                lambda: ready(target.url), timeout_s, "the InferenceServices to be Ready", process, log
            )
        yield target
    finally:
        stop_process(process)


def serving_serve(model_dir: Path, log: Path, *extra: str) -> AbstractContextManager[Target]:
    """`serving serve --model-dir DIR` (one worker, the defaults a user gets)."""
    argv = [sys.executable, "-m", "serving.cli", "serve", "--model-dir", str(model_dir), *extra]
    return started(argv, "/v2/health/ready", log)


def ceiling_app(log: Path) -> AbstractContextManager[Target]:
    """The bare Starlette+uvicorn app (same uvicorn settings as the model server)."""
    return started([sys.executable, "-m", "loadtests.ceiling_app"], "/v2/health/ready", log)


def example_names() -> list[str]:
    """What `example_yaml` finds: the names of examples/*.yaml and examples/*/*.yaml."""
    return sorted({p.stem for p in [*EXAMPLES.glob("*.yaml"), *EXAMPLES.glob("*/*.yaml")]})


def example_yaml(name: str) -> Path:
    """examples/NAME.yaml, or examples/*/NAME.yaml (e.g. examples/transformer/iris-transformer.yaml)."""
    found = [EXAMPLES / f"{name}.yaml", *sorted(EXAMPLES.glob(f"*/{name}.yaml"))]
    existing = [p for p in found if p.exists()]
    if not existing:
        raise ServingError(
            f"no InferenceService YAML for example {name!r} (examples/{name}.yaml or examples/*/{name}.yaml)"
        )
    return existing[0]


def isvc_ready(url: str, state_dir: Path, name: str, revisions: int = 1) -> bool:
    """True once InferenceService `name` is Ready with `revisions` revisions taking traffic."""
    from serving.control.local.client import ControlClient

    item = ControlClient(url, state_dir).get(name)
    status = item.get("status", {})
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
    traffic = status.get("components", {}).get("predictor", {}).get("traffic", [])
    return ready and len([t for t in traffic if t.get("percent")]) >= revisions


def serving_up(
    yaml_files: list[Path], names: list[str], state_dir: Path, log: Path
) -> AbstractContextManager[Target]:
    """`serving up -f ...`: yields once the router is live and every named InferenceService is Ready."""
    argv = [
        sys.executable,
        "-m",
        "serving.cli",
        "up",
        *[a for f in yaml_files for a in ("-f", str(f))],
        "--state-dir",
        str(state_dir),
        "--log-level",
        "warning",
    ]
    return started(
        argv,
        "/v2/health/live",
        log,
        ready=lambda url: all(isvc_ready(url, state_dir, n) for n in names),
        state_dir=state_dir,
    )


def apply_canary(target: Target, yaml_file: Path, name: str, timeout_s: float = 90.0) -> None:
    """Apply a canary YAML to a running `serving up` and wait until two revisions take traffic."""
    from serving.control.documents import read_documents
    from serving.control.local.client import ControlClient

    assert target.state_dir is not None
    ControlClient(target.url, target.state_dir).apply(read_documents(yaml_file))
    wait_until(
        lambda: isvc_ready(target.url, target.state_dir, name, revisions=2),
        timeout_s,  # type: ignore[arg-type]
        f"canary of {name} ready",
        target.process,
        target.log,
    )
