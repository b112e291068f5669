"""Shared test support: real server processes, small models trained once per session.

Servers here run as real subprocesses (`python -m serving.cli ...`) on 127.0.0.1 — for tests about processes
(kill -9, workers, signals); the rest use tests.inprocess. free_port / wait_until / stop_process live once,
in loadtests.servers, and are re-exported. Readiness is polled, never slept for.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from loadtests.servers import REPO, free_port, started, stop_process, wait_until

if TYPE_CHECKING:
    import uvicorn

__all__ = ["REPO", "ServerProcess", "free_port", "serving_process", "stop_process", "wait_until"]


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
    """Run `serving <args> --port P` as a process (P free unless given) and yield once `ready_path` answers."""
    folder = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    log_path = Path(tempfile.mkstemp(prefix="serving-", suffix=".log", dir=folder)[1])
    argv = [sys.executable, "-m", "serving.cli", *args]
    with started(
        argv, ready_path, log_path, timeout_s, ready_status=ready_status, env=env, port=port
    ) as target:
        yield ServerProcess(target.process, target.url, log_path)


_TRAINED = Path(tempfile.mkdtemp(prefix="serving-trained-"))
atexit.register(shutil.rmtree, _TRAINED, ignore_errors=True)


def _trained_copy(kind: str, target: Path, train: Callable[[Path], Path]) -> Path:
    """Train each model once per test session and give every caller its own copy (same files, no refit)."""
    source = _TRAINED / kind
    if not source.exists():
        train(_TRAINED / f"{kind}.partial")
        (_TRAINED / f"{kind}.partial").rename(source)
    shutil.copytree(source, target, dirs_exist_ok=True)
    (artifact,) = list(source.iterdir())
    return target / artifact.name


def train_iris_sklearn(target: Path, c: float = 1.0) -> Path:
    from serving.demo_models import train_sklearn_iris

    return _trained_copy(f"sklearn-c{c}", target, lambda t: train_sklearn_iris(t, c=c))


def train_iris_xgboost(target: Path) -> Path:
    from serving.demo_models import train_xgboost_iris

    return _trained_copy("xgboost", target, train_xgboost_iris)


def train_iris_onnx(target: Path) -> Path:
    from serving.demo_models import train_onnx_iris

    return _trained_copy("onnx", target, train_onnx_iris)


@contextmanager
def uvicorn_in_thread(config: uvicorn.Config) -> Iterator[uvicorn.Server]:
    """`config` served by uvicorn in a thread of this process until the block ends (for tests of our protocol
    class itself, which `tests/observability_support.served` does not select)."""
    import threading

    import uvicorn

    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, what="uvicorn to start")
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(10)
