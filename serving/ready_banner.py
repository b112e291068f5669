"""The line `serving serve` prints once its models are ready: `serving NAME (runtime) on http://HOST:PORT`,
like uvicorn's "running on" line, but only when requests will succeed (models load after the port opens)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from serving.http.launcher import bound_port
from serving.observability import log_format
from serving.repository import Model, ModelRepository
from serving.runtimes import RUNTIMES

SHORT_NAMES = {target: name for name, target in RUNTIMES.items()}


def runtime_name(model: Model) -> str:
    runtime = model.runtime
    if runtime is None:
        return model.settings.runtime or "?"
    target = f"{type(runtime).__module__}:{type(runtime).__qualname__}"
    return SHORT_NAMES.get(target, target)


def banner(repository: ModelRepository, host: str, port: int) -> str:
    served = ", ".join(f"{m.name} ({runtime_name(m)})" for m in repository.models())
    shown_host = f"[{host}]" if ":" in host else host
    return (
        f"serving {served} on http://{shown_host}:{port or bound_port() or 0}"  # serving up's: the port bound
    )


def announce_when_ready(repository: ModelRepository, host: str, port: int) -> Callable[[Model], None]:
    """A repository `on_change` callback printing the banner the first time every model is ready."""
    said = False

    def on_change(model: Model) -> None:
        nonlocal said
        if not said and repository.all_ready():
            said = True
            # The process's own stdout: a caller redirecting sys.stdout for its own output (a CLI call made in a
            # test while servers run as threads of the same process) must not receive a server's banner.
            say(banner(repository, host, port), sys.__stdout__ or sys.stdout)

    return on_change


def say(text: str, stdout: TextIO) -> None:
    """The banner as a line of its own, or as a JSON log line where stdout is the JSON log's own file."""
    if log_format.one_json_stream(stdout):
        text = log_format.JsonFormatter().line(time.time(), "info", "serving", text, None)
    print(text, file=stdout, flush=True)
