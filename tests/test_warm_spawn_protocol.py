"""Both ends of the warm spawner's line protocol, each against a real socket with the test playing the other
end: `serving up`'s side turns errors into a fresh process (None), follows exits and falls back once the spawner
is gone; the spawner answers a malformed request or an unwritable log with an error, and forks nothing."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from serving.control.local.warm_spawn import WarmSpawner
from serving.control.local.warm_spawn_zygote import Zygote


def _read_request(sock: socket.socket) -> dict[str, object]:
    line = b""
    while not line.endswith(b"\n"):
        line += sock.recv(65536)
    return orjson.loads(line)


@pytest.mark.asyncio
async def test_the_supervisor_side_follows_answers_exits_and_the_spawner_going(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()
    stand_in = subprocess.Popen(["sleep", "30"])  # in place of the spawner's process
    child = subprocess.Popen(["sleep", "30"])  # a pid the "spawner" reports as forked
    spawner = WarmSpawner(stand_in, ours)
    loop = asyncio.get_running_loop()
    try:
        spawn = asyncio.ensure_future(spawner.spawn(["serve"], {}, tmp_path / "r.log"))
        request = await loop.run_in_executor(None, _read_request, theirs)
        assert request["argv"] == ["serve"] and request["log"] == str(tmp_path / "r.log")
        theirs.sendall(orjson.dumps({"id": request["id"], "error": "cannot open r.log"}) + b"\n")
        assert await spawn is None  # the caller starts a fresh process instead

        spawn = asyncio.ensure_future(spawner.spawn(["serve"], {}, tmp_path / "r.log"))
        request = await loop.run_in_executor(None, _read_request, theirs)
        theirs.sendall(orjson.dumps({"id": request["id"], "pid": child.pid}) + b"\n")
        forked = await spawn
        assert forked is not None and forked.pid == child.pid and forked.returncode is None
        theirs.sendall(orjson.dumps({"exited": child.pid, "code": -9}) + b"\n")
        assert await asyncio.wait_for(forked.wait(), 10) == -9

        theirs.close()  # the spawner is gone: no more forks
        while spawner.usable:
            await asyncio.sleep(0.01)
        assert await spawner.spawn(["serve"], {}, tmp_path / "r.log") is None
    finally:
        stand_in.kill()
        spawner.close()
        child.kill()
        child.wait()


@pytest.fixture
def zygote() -> Iterator[tuple[Zygote, socket.socket]]:
    ours, theirs = socket.socketpair()
    made = Zygote(
        ours, supervisor_pid=0
    )  # sets this process's SIGCHLD handler and wake-up fd: restored below
    try:
        yield made, theirs
    finally:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        ours.close()
        theirs.close()


def test_the_spawner_answers_bad_requests_with_an_error_and_forks_nothing(
    zygote: tuple[Zygote, socket.socket], tmp_path: Path
) -> None:
    spawner, supervisor = zygote
    assert spawner.handle(b"not json") is None
    assert "bad request" in str(_read_request(supervisor)["error"])
    assert spawner.handle(orjson.dumps({"id": 1, "argv": "serve", "env": {}, "log": "x"})) is None
    assert "argv must be a list" in str(_read_request(supervisor)["error"])
    missing = tmp_path / "no" / "such" / "dir" / "r.log"
    assert spawner.handle(orjson.dumps({"id": 7, "argv": [], "env": {}, "log": str(missing)})) is None
    answer = _read_request(supervisor)
    assert answer["id"] == 7 and "cannot open" in str(answer["error"])
