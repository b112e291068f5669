"""The supervisor with a real child process: the child binds port 0 itself and the supervisor learns the port
from the kernel; after a crash the replica reports no port until the new incarnation listens (never a stale
one); the child is asked to die with its parent through the environment, not a preexec_fn."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest

from serving.control.local.parent_watch import PARENT_PID_ENV
from serving.control.local.processes import ProcessSpec, Replica, listening_port

pytestmark = pytest.mark.asyncio


async def _until(check, timeout_s: float = 30.0) -> None:  # noqa: ANN001 - a predicate
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.e2e  # a real child process, killed and restarted
async def test_port_is_learned_from_the_child_and_renewed_after_a_crash(tmp_path: Path) -> None:
    # A transformer whose predictor is absent: it listens (never ready), which is all this test needs.
    spec = ProcessSpec(["transform", "--predictor-url", "http://127.0.0.1:9", "--model-name", "x"])
    replica = Replica("t-0", spec, tmp_path)
    changes: list[int] = []
    replica.start(lambda: changes.append(replica.port))
    try:
        await _until(lambda: replica.port != 0)
        first = replica.process
        assert first is not None and listening_port(first.pid) == replica.port
        child = psutil.Process(first.pid)
        assert child.cmdline()[-2:] == ["--port", "0"]
        assert child.environ()[PARENT_PID_ENV] == str(os.getpid())  # asked through the environment
        assert replica.port in changes  # learning the port is a change the runner hears about
        old_port = replica.port
        os.kill(first.pid, signal.SIGKILL)
        await _until(lambda: replica.process is not first and replica.port != 0)
        assert replica.restarts == 1 and listening_port(replica.process.pid) == replica.port
        assert 0 in changes[changes.index(old_port) :]  # no stale port in between
    finally:
        await replica.stop()
    assert replica.process is not None and replica.process.returncode is not None


async def test_the_http_port_is_the_one_answering_http_whichever_listener_opened_first() -> None:
    """A model server with `--grpc-port 0` listens twice, and may open its gRPC listener first: the port the
    supervisor hands the router and the transformer must be the HTTP one, never gRPC's."""
    import grpc

    from serving.control.local.processes import _answering_http
    from serving.http_client import HTTPClient

    async def http_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    grpc_server = grpc.aio.server()
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    http_server = await asyncio.start_server(http_answer, "127.0.0.1", 0)
    http_port = http_server.sockets[0].getsockname()[1]
    client = HTTPClient()
    try:
        assert await _answering_http(client, [grpc_port, http_port]) == http_port
        assert await _answering_http(client, [http_port, grpc_port]) == http_port
        assert await _answering_http(client, [grpc_port]) == 0  # HTTP not listening yet: no port yet
    finally:
        client.close()
        http_server.close()
        await grpc_server.stop(None)


async def test_a_failure_reason_quotes_the_last_instance_in_whole_lines(tmp_path: Path) -> None:
    """A replica's log is shared by its instances: the reason a crash loop gives (`serving get`, errors) is what
    the instance that just ended wrote, not the torn tail of the one before's access lines (audit newuser7 L5)."""
    replica = Replica("r-0", ProcessSpec(["serve"]), tmp_path)
    access = '{"logger":"serving.access","status":200,"bytes_in":26,"bytes_out":31,"isvc":"slow"}\n'
    replica.log_path.write_text(access * 40)
    replica._mark_log_start()  # a new instance starts here
    assert replica._log_tail() == f"it wrote nothing (log {replica.log_path})"
    with replica.log_path.open("a") as log:
        log.write(
            "Traceback (most recent call last):\n" + "x" * 560 + "\nValueError: no model in /models\n\n"
        )
    assert replica._log_tail() == "x" * 560 + " | ValueError: no model in /models"  # whole lines that fit
    with replica.log_path.open("a") as log:
        log.write("E" * 700 + "\n")
    assert replica._log_tail() == "..." + "E" * 600  # one line longer than the room: its end
