"""Shared test support: free loopback ports, real server processes, readiness polling, small models.

Servers run as real subprocesses (`python -m serving.cli ...`) on 127.0.0.1; readiness is polled,
never slept for.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout_s: float = 60.0, interval_s: float = 0.05, what: str = "") -> None:
    """Poll `predicate` until it is true; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.TransportError, OSError):
            pass
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what or predicate}")


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30), **kwargs)


@contextmanager
def serving_process(
    args: list[str],
    *,
    port: int | None = None,
    ready_path: str = "/v2/health/ready",
    ready_status: int = 200,
    timeout_s: float = 90.0,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
) -> Iterator[ServerProcess]:
    """Run `serving <args> --port P` (P free unless given) and yield once `ready_path` answers."""
    port = port or free_port()
    log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    log_path = log_dir / f"serving-{port}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving.cli", *args, "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO, start_new_session=True,
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
            return httpx.get(server.url + ready_path, timeout=2).status_code == ready_status

        wait_until(ready, timeout_s, what=f"{server.url}{ready_path}")
        yield server
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen, timeout_s: float = 15.0) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout_s)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(5)


def train_iris_sklearn(target: Path, c: float = 1.0) -> Path:
    from serving.demo_models import train_sklearn_iris

    return train_sklearn_iris(target, c=c)


def train_iris_xgboost(target: Path) -> Path:
    from serving.demo_models import train_xgboost_iris

    return train_xgboost_iris(target)


def train_iris_onnx(target: Path) -> Path:
    from serving.demo_models import train_onnx_iris

    return train_onnx_iris(target)
