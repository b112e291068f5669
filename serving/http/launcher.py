"""The one way our HTTP servers start: uvicorn with the same protocol class and limits everywhere.

`serving serve`, `serving transform`, `serving up`'s router and the in-cluster `serving router` all go
through `run_http_server`; code that runs the server inside its own event loop (next to a gRPC server,
or in a test) builds the same settings with `http_config` and awaits `uvicorn.Server(config).serve()`.

What every server gets (see serving/http/header_limit.py): a 431 JSON answer for a request line + headers
over `max_header_bytes`, JSON 400s for malformed HTTP, 408s for a head slower than `header_timeout_s` or a
body stalled for `body_timeout_s`, idle keep-alive connections closed after KEEP_ALIVE_S, one write per
response (coalesced head and body), uvloop, no access log, no proxy-headers rewriting, and 30 s of graceful
shutdown for requests in flight.
Started by `serving up` (one worker), a server also listens on a Unix socket for its siblings
(serving/http/local_sockets.py).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp

from serving.http import local_sockets
from serving.settings import Limits

if TYPE_CHECKING:
    import uvicorn

HTTP_PROTOCOL = "serving.http.header_limit:HeaderLimitedProtocol"  # with its default timeouts
GRACEFUL_SHUTDOWN_S = 30
KEEP_ALIVE_S = 5  # an idle kept-alive connection is closed after this (uvicorn's default)
# With --workers, uvicorn kills and replaces a worker that does not answer its ping within this (its default
# is 5 s): a worker unpickling a large model holds the GIL for longer than that, and on a loaded machine even an
# iris worker's start can; killing it means starting the same load again.
WORKER_HEALTHCHECK_S = 30
_LIMITS = Limits()


def http_options(
    host: str,
    port: int,
    *,
    max_header_bytes: int = _LIMITS.max_header_bytes,
    header_timeout_s: float = _LIMITS.header_timeout_s,
    body_timeout_s: float = _LIMITS.body_timeout_s,
    log_level: str = "warning",
    lifespan: str = "auto",
) -> dict[str, Any]:
    """uvicorn settings shared by every server of ours."""
    from serving.http.header_limit import HeaderLimitedProtocol  # imported when a server starts

    return dict(
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        loop="uvloop",
        # The class and its timeouts: a partial of a module-level class pickles by reference, so worker
        # processes (spawned, the config pickled) import it themselves.
        http=functools.partial(
            HeaderLimitedProtocol, header_timeout_s=header_timeout_s, body_timeout_s=body_timeout_s
        ),
        h11_max_incomplete_event_size=max_header_bytes,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        limit_concurrency=None,
        lifespan=lifespan,
        # uvicorn's own lines (a malformed request's warning, start-up errors) go to the process's handler,
        # in its --log-format (JSON by default), not to uvicorn's plain-text handlers beside it
        log_config=None,
        # No X-Forwarded-For rewriting of the client address: nothing of ours reads it (the access log names
        # the request id, not the peer), and the wrapper cost every request a layer.
        proxy_headers=False,
    )


def http_config(app: ASGIApp, host: str, port: int, **options: Any) -> uvicorn.Config:
    """The same settings as a `uvicorn.Config`, for a server run inside an existing event loop."""
    import uvicorn  # imported when a server starts: `serving --help` stays fast

    return uvicorn.Config(app, **http_options(host, port, **options))


def run_http_server(
    app: ASGIApp | str, host: str, port: int, *, workers: int = 1, factory: bool = False, **options: Any
) -> None:
    """Serve `app` until stopped. With `workers` > 1, `app` is an import string (`factory`: of a factory).
    A port already taken is refused first, in one line, before anything starts (every listening command)."""
    import uvicorn

    from serving.port_check import ensure_port_free

    ensure_port_free(host, port)
    directory = os.environ.get(local_sockets.ENV)
    if workers == 1 and directory and not factory:
        _run_with_unix_socket(app, directory, http_options(host, port, **options))
        return
    uvicorn.run(app, workers=workers, factory=factory, **http_options(host, port, **options))


_bound_port: list[int] = []  # this process's TCP port once bound here: serving up's replicas ask for port 0


def bound_port() -> int | None:
    """The TCP port this process listens on, when bound here (`_run_with_unix_socket`); else None."""
    return _bound_port[0] if _bound_port else None


def _run_with_unix_socket(app: ASGIApp | str, directory: str, options: dict[str, Any]) -> None:
    """`uvicorn.run` for one worker, listening on its TCP port and on `<directory>/<port>.sock`."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            """Remove the socket's file once the server stopped: here, because on SIGTERM uvicorn ends the
            process with the signal itself once `run` is over, and nothing after it runs."""
            try:
                await super().shutdown(sockets)
            finally:
                local_sockets.remove(path)

    config = uvicorn.Config(app, **options)
    config.load_app()
    server = Server(config)
    tcp = config.bind_socket()
    # uvicorn binds it inheritable (for its workers); a process of ours must not pass it on to its children
    tcp.set_inheritable(False)
    _bound_port[:] = [tcp.getsockname()[1]]
    path = local_sockets.path_for(directory, _bound_port[0])
    sockets = [tcp]
    try:
        sockets.append(local_sockets.listen(path, config.backlog))
    except OSError as exc:  # the directory is gone or unusable: TCP only, as without it
        logging.getLogger("uvicorn.error").warning("no Unix socket at %s: %s", path, exc)
    try:
        server.run(sockets=sockets)
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)
