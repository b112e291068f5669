"""Is the port free? Asked before a server starts, so a taken port is one clear line and exit code 2
(`port 8080 is in use; pick another with --port`), not a log line claiming the port followed by errno 98."""

from __future__ import annotations

import errno
import socket

from serving.errors import ServingError


class CannotListen(ServingError):
    """Taken, privileged or unresolvable: the CLI prints `error: <message>` and exits with 2 (a ServingError)."""


def ensure_port_free(host: str, port: int, flag: str = "--port") -> None:
    """Bind and release `host:port` the way uvicorn will bind it (SO_REUSEADDR: a port in TIME_WAIT is free);
    port 0 (any free port) is never taken."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CannotListen(f"port {port} is in use; pick another with {flag}") from exc
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise CannotListen(
                    f"port {port} needs privileges to listen on; pick another with {flag}"
                ) from exc
            raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
