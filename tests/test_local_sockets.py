"""The Unix sockets of one `serving up` (serving/http/local_sockets.py): our client reaches a loopback endpoint
through `<dir>/<port>.sock` when one accepts and over TCP otherwise, and a server started with the directory
set listens there too, answering the same as on its port, and removes its socket when it stops."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
from pathlib import Path

import httpx
import pytest

from serving.http import local_sockets
from serving.http_client import HTTPClient, UpstreamConnectError
from tests.support import free_port, serving_process, train_iris_sklearn, wait_until

_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s"


async def _answer_with(name: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A one-request HTTP server saying which listener answered."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(_ANSWER % (len(name), name))
    await writer.drain()
    writer.close()


def test_private_directory_is_the_users_alone_and_goes_away() -> None:
    with local_sockets.private_directory() as directory:
        assert directory is not None
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        path = local_sockets.path_for(directory, 8080)
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(
            path
        )  # a process killed with -9 leaves its file behind: the next one on that port replaces it
        stale.close()
        sock = local_sockets.listen(path, 8)
        assert Path(path).exists() and sock.getsockname() == path
        sock.close()
        local_sockets.remove(path)
        assert not Path(path).exists()
        local_sockets.remove(path)  # gone already: nothing to do
    assert not os.path.exists(directory)


def test_a_directory_left_by_a_killed_serving_up_is_removed_by_the_next(tmp_path: Path) -> None:
    record = tmp_path / "state" / local_sockets.RECORD
    killed = local_sockets.private_directory(record)
    left = killed.__enter__()  # never exited: as if `serving up` had been killed with -9
    assert left is not None and record.read_text() == left
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(local_sockets.path_for(left, 9000))  # its replica's socket, nobody listening any more
    dead.close()
    with local_sockets.private_directory(record) as fresh:
        assert fresh != left and not os.path.exists(left)
        assert record.read_text() == fresh
    assert not record.exists()


def test_a_directory_still_listened_in_is_left_alone(tmp_path: Path) -> None:
    record = tmp_path / local_sockets.RECORD
    with local_sockets.private_directory(record) as first:
        assert first is not None
        live = local_sockets.listen(local_sockets.path_for(first, 9001), 8)  # another `serving up`'s replica
        try:
            with local_sockets.private_directory(record) as second:
                assert second != first and os.path.exists(first)
        finally:
            live.close()
    assert not os.path.exists(first)


def test_only_loopback_endpoints_have_a_socket() -> None:
    assert local_sockets.client_path("/d", "127.0.0.1", 81) == "/d/81.sock"
    assert local_sockets.client_path("/d", "localhost", 81) == "/d/81.sock"
    assert local_sockets.client_path("/d", "10.0.0.5", 81) is None
    assert local_sockets.client_path(None, "127.0.0.1", 81) is None


@pytest.mark.asyncio
async def test_client_prefers_the_socket_and_falls_back_to_tcp(tmp_path: Path) -> None:
    directory = str(tmp_path)
    port = free_port()  # nothing listens on it over TCP: only the Unix socket can answer
    unix = await asyncio.start_unix_server(
        lambda r, w: _answer_with(b"unix", r, w), local_sockets.path_for(directory, port)
    )
    tcp = await asyncio.start_server(lambda r, w: _answer_with(b"tcp", r, w), "127.0.0.1", 0)
    tcp_port = tcp.sockets[0].getsockname()[1]
    client = HTTPClient(unix_socket_dir=directory)
    plain = HTTPClient()
    try:
        assert (await client.get(f"http://127.0.0.1:{port}/", 5)).body == b"unix"
        with pytest.raises(UpstreamConnectError):  # without the directory: TCP, where nothing listens
            await plain.get(f"http://127.0.0.1:{port}/", 5)
        # no socket for that port in the directory: its TCP port, as ever
        assert (await client.get(f"http://127.0.0.1:{tcp_port}/", 5)).body == b"tcp"
        # a socket file nobody listens on any more (a process killed with -9): TCP again
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(local_sockets.path_for(directory, tcp_port))
        stale.close()
        assert (await client.get(f"http://127.0.0.1:{tcp_port}/", 5)).body == b"tcp"
    finally:
        client.close()
        plain.close()
        unix.close()
        tcp.close()


def test_client_takes_the_directory_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(local_sockets.ENV, "/somewhere")
    assert HTTPClient().unix_socket_dir == "/somewhere"
    assert HTTPClient(unix_socket_dir="/else").unix_socket_dir == "/else"
    monkeypatch.delenv(local_sockets.ENV)
    assert HTTPClient().unix_socket_dir is None


@pytest.mark.e2e  # a real `serving serve` started as `serving up` starts its replicas
def test_server_listens_on_its_port_and_its_socket(tmp_path: Path) -> None:
    model = tmp_path / "m"
    train_iris_sklearn(model)
    sockets = tmp_path / "s"
    sockets.mkdir(mode=0o700)
    port = free_port()
    args = ["serve", "--model-dir", str(model), "--name", "iris"]
    with serving_process(args, port=port, env={local_sockets.ENV: str(sockets)}) as server:
        path = local_sockets.path_for(str(sockets), port)
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
        with httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://127.0.0.1") as over_unix:
            by_unix = over_unix.post("/v2/models/iris/infer", json=body)
        by_tcp = httpx.post(f"{server.url}/v2/models/iris/infer", json=body)
        assert by_unix.status_code == by_tcp.status_code == 200
        assert by_unix.json()["outputs"] == by_tcp.json()["outputs"]
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(30)
        wait_until(lambda: not os.path.exists(path), 10, what="the socket to be removed")


@pytest.mark.e2e  # the launcher of a real process: no usable directory, TCP only, said once in its log
def test_server_without_a_usable_directory_serves_over_tcp_and_says_why(tmp_path: Path) -> None:
    model = tmp_path / "m"
    train_iris_sklearn(model)
    gone = tmp_path / "gone"  # never made: as if `serving up` had removed it
    args = ["serve", "--model-dir", str(model), "--name", "iris"]
    with serving_process(args, env={local_sockets.ENV: str(gone)}, log_dir=tmp_path) as server:
        answer = httpx.post(
            f"{server.url}/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
        )
        assert answer.status_code == 200
        assert not gone.exists()
        wait_until(lambda: "no Unix socket at" in server.log(), 10, what="the warning")
