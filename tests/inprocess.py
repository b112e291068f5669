"""`serving <command>` run inside the test process: the real CLI code path, real uvicorn on 127.0.0.1 port 0.

Why: a `python -m serving.cli` process costs seconds of imports (numpy, sklearn, xgboost, onnxruntime) before
it answers; here the command's own `main(args)` runs in a thread with its own event loop, builds the same app
and starts uvicorn with the same options (protocol class, header limit, loop) — only the port is 0 and the
server is stopped by the test instead of a signal. Tests that need a process (kill -9, several workers, pids,
signals) keep `tests.support.serving_process`.

The seam is `uvicorn.run`: inside a harness thread it serves on the bound socket and records the server, so
the test learns the port and can stop it; everywhere else it is uvicorn's own function.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from loadtests.servers import wait_until

_uvicorn_run = uvicorn.run
_slots = threading.local()
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _run_in_harness(app: Any, **options: Any) -> None:
    slot: _Slot | None = getattr(_slots, "slot", None)
    if slot is None:
        return _uvicorn_run(app, **options)
    if options.get("workers", 1) > 1:
        raise RuntimeError("several uvicorn workers need processes: use tests.support.serving_process")
    options.update(port=0, log_config=None)  # records go to the root logger the harness captures
    slot.server = uvicorn.Server(uvicorn.Config(app, **options))
    slot.server.run()


uvicorn.run = _run_in_harness


@dataclass
class _Slot:
    server: uvicorn.Server | None = None
    error: BaseException | None = None


class _Capture(logging.Handler):
    """Every log record while the server lives, formatted as the CLI formats them (what a log file holds)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text = io.StringIO()
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        self.text.write(self.format(record) + "\n")


@dataclass
class InProcessServer:
    """What `tests.support.ServerProcess` offers, minus the process: `url`, `client()`, `log()`."""

    url: str
    capture: _Capture = field(repr=False)

    @property
    def pid(self) -> int:
        return os.getpid()

    def log(self) -> str:
        return self.capture.text.getvalue()

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30), **kwargs)


@contextmanager
def _environment(env: dict[str, str] | None) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _serve(argv: list[str], slot: _Slot) -> None:
    from serving.cli import main

    _slots.slot = slot
    try:
        code = main(argv)
        if code and slot.server is None:
            slot.error = RuntimeError(f"serving {' '.join(argv)} exited with {code}")
    except BaseException as exc:  # noqa: BLE001 - reported to the waiting test
        slot.error = exc


@contextmanager
def serving_inprocess(
    args: list[str], *, ready_path: str = "/v2/health/ready", ready_status: int = 200, timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
) -> Iterator[InProcessServer]:
    """Run `serving <args> --host 127.0.0.1 --port 0` in this process; yield once `ready_path` answers."""
    capture, slot = _Capture(), _Slot()
    root = logging.getLogger()
    root.addHandler(capture)
    with _environment(env):
        thread = threading.Thread(target=_serve, args=([*args, "--host", "127.0.0.1", "--port", "0"], slot),
                                  name=f"serving-{args[0]}", daemon=True)
        thread.start()
        try:
            server = _started(slot, thread, capture, timeout_s)
            wait_until(lambda: _answers(server.url + ready_path, ready_status, slot), timeout_s,
                       what=f"{server.url}{ready_path}")
            yield server
        finally:
            if slot.server is not None:
                slot.server.should_exit = True
            thread.join(60)
            root.removeHandler(capture)


def _started(slot: _Slot, thread: threading.Thread, capture: _Capture, timeout_s: float) -> InProcessServer:
    def started() -> bool:
        if slot.error is not None or not thread.is_alive():
            raise RuntimeError(f"server did not start: {slot.error!r}\n{capture.text.getvalue()}") from slot.error
        return slot.server is not None and slot.server.started

    wait_until(started, timeout_s, what="uvicorn to start", interval_s=0.01)
    assert slot.server is not None
    port = slot.server.servers[0].sockets[0].getsockname()[1]
    return InProcessServer(f"http://127.0.0.1:{port}", capture)


def _answers(url: str, status: int, slot: _Slot) -> bool:
    if slot.error is not None:
        raise RuntimeError(f"server failed: {slot.error!r}") from slot.error
    return httpx.get(url, timeout=2).status_code == status


@dataclass
class CliResult:
    """`subprocess.CompletedProcess`'s fields for a CLI call made in this process."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> CliResult:
    """`serving ARGS` in this process (argv parsed by the real parser), stdout/stderr captured."""
    from serving.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse errors
            code = exc.code if isinstance(exc.code, int) else 2
    return CliResult(list(args), code, out.getvalue(), err.getvalue())
