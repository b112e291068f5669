"""`serving <command>` run inside the test process: the real CLI code path, real uvicorn on 127.0.0.1 port 0.

Why: a `python -m serving.cli` process costs seconds of imports (numpy, sklearn, xgboost, onnxruntime) before
it answers; here the command's own `main(args)` runs in a thread with its own event loop, builds the same app
and starts uvicorn with the same options (protocol class, header limit, loop) — only the port is 0 and the
server is stopped by the test instead of a signal. Tests that need a process (kill -9, several workers, pids,
signals) keep `tests.support.serving_process`.

Every command starts its server through `serving.http.launcher.run_http_server`, which ends in `uvicorn.run`.
That call is the seam: inside a harness thread it builds the same `uvicorn.Config` (port 0, logs to the root
logger the harness captures) and records the server, so the test learns the port and can stop it; in any
other thread it is uvicorn's own function.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from loadtests.servers import wait_until
from serving.cli import main

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
    command: ThreadedCommand | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return os.getpid()

    @property
    def loop(self) -> Any:
        """The server's event loop (running in its own thread: reach it with `call_soon_threadsafe`)."""
        assert self.command is not None and self.command.slot.server is not None
        return self.command.slot.server.servers[0].get_loop()

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


class ThreadedCommand:
    """`serving <argv>` running in a thread of this process; `port` once uvicorn listens, `stop()` ends it."""

    def __init__(self, argv: list[str], target: Callable[[list[str]], object] | None = None) -> None:
        self.argv = argv
        self.slot = _Slot()
        self.target = target or main  # `serving.cli.main`, or a variant of it (still ending in uvicorn.run)
        self.thread = threading.Thread(target=self._run, name=f"serving-{argv[0]}", daemon=True)

    def _run(self) -> None:
        _slots.slot = self.slot
        try:
            code = self.target(self.argv)
            if code and self.slot.server is None:
                self.slot.error = RuntimeError(f"serving {' '.join(self.argv)} exited with {code}")
        except BaseException as exc:  # noqa: BLE001 - reported to whoever waits for the server
            self.slot.error = exc

    def start(self) -> None:
        self.thread.start()

    @property
    def error(self) -> BaseException | None:
        if self.slot.error is None and not self.thread.is_alive() and self.port is None:
            return RuntimeError(f"serving {' '.join(self.argv)} ended before listening")
        return self.slot.error

    @property
    def port(self) -> int | None:
        server = self.slot.server
        if server is None or not server.started:
            return None
        return int(server.servers[0].sockets[0].getsockname()[1])

    def stop(self, timeout_s: float = 60.0) -> None:
        if self.slot.server is not None:
            self.slot.server.should_exit = True
        self.thread.join(timeout_s)


@contextmanager
def serving_inprocess(
    args: list[str],
    *,
    ready_path: str = "/v2/health/ready",
    ready_status: int = 200,
    timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
    target: Callable[[list[str]], object] | None = None,
) -> Iterator[InProcessServer]:
    """Run `serving <args> --host 127.0.0.1 --port 0` in this process; yield once `ready_path` answers."""
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    levels = _logger_levels()
    command = ThreadedCommand([*args, "--host", "127.0.0.1", "--port", "0"], target)
    with _environment(env):
        command.start()
        try:
            server = _started(command, capture, timeout_s)
            wait_until(
                lambda: _answers(server.url + ready_path, ready_status, command),
                timeout_s,
                what=f"{server.url}{ready_path}",
            )
            yield server
        finally:
            command.stop()
            root.removeHandler(capture)
            for logger, level in levels.items():
                logger.setLevel(level)


def _logger_levels() -> dict[logging.Logger, int]:
    """The level of the root logger and of the loggers a command sets (`serving up --quiet` quiets
    serving.events and serving.access for the process): restored when the command ends, as its process would
    end, so the next test's server logs as its own flags say."""
    loggers = [logging.getLogger(), logging.getLogger("serving.events"), logging.getLogger("serving.access")]
    return {logger: logger.level for logger in loggers}


def _started(command: ThreadedCommand, capture: _Capture, timeout_s: float) -> InProcessServer:
    def started() -> bool:
        if command.error is not None:
            raise RuntimeError(
                f"server did not start: {command.error!r}\n{capture.text.getvalue()}"
            ) from command.error
        return command.port is not None

    wait_until(started, timeout_s, what="uvicorn to start", interval_s=0.01)
    return InProcessServer(f"http://127.0.0.1:{command.port}", capture, command)


def _answers(url: str, status: int, command: ThreadedCommand) -> bool:
    if command.error is not None:
        raise RuntimeError(f"server failed: {command.error!r}") from command.error
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
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse errors
            code = exc.code if isinstance(exc.code, int) else 2
    return CliResult(list(args), code, out.getvalue(), err.getvalue())
