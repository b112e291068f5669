"""Where a server listens, said once and plainly: `serving serve` prints `serving NAME (runtime) on URL` once its
models are ready, and every listening command refuses a taken port with one line and exit code 2."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.cli import main
from tests.inprocess import serving_inprocess


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def listening_commands(model_repo: Path, state: Path) -> dict[str, list[str]]:
    return {
        "serve": ["serve", "--model-dir", str(model_repo / "sklearn-iris")],
        # --no-warm-start: the warm spawner (a process preloading the model server, ~3 s here) is not what the
        # listen messages are about; tests/test_warm_spawn.py covers it.
        "up": ["up", "--state-dir", str(state), "--no-warm-start"],
        "transform": ["transform", "--model-name", "t", "--predictor-url", "http://127.0.0.1:9"],
    }


@pytest.mark.parametrize("command", ["serve", "up", "transform"])
def test_a_taken_port_is_one_line_and_exit_2(
    command: str, taken_port: int, model_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = listening_commands(model_repo, tmp_path)[command]
    assert main([*argv, "--host", "127.0.0.1", "--port", str(taken_port)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: port {taken_port} is in use; pick another with --port\n"
    assert captured.out == ""


def test_serve_says_what_it_serves_and_where_once_ready(
    model_repo: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with serving_inprocess(["serve", "--model-dir", str(model_repo)]):
        out = capfd.readouterr().out  # the process's stdout (file descriptor 1)
    lines = [line for line in out.splitlines() if line.startswith("serving ")]
    assert lines == [
        "serving onnx-iris (onnx), sklearn-iris (sklearn), xgboost-iris (xgboost) on http://127.0.0.1:0"
    ], out  # the port asked for (the harness asks for 0)


@pytest.mark.e2e  # the port a process binds is what it says: a real `serving serve` process
def test_port_0_is_announced_as_the_port_bound(model_repo: Path, tmp_path: Path) -> None:
    """As `serving up` starts its replicas (port 0, a Unix socket beside it): their log says the real port.
    And uvicorn's own lines (here a malformed request's warning) are in the process's JSON log format."""
    import os
    import socket
    import subprocess
    import sys

    import httpx
    import orjson

    from serving.http import local_sockets

    command = [sys.executable, "-m", "serving.cli", "serve", "--model-dir", str(model_repo / "sklearn-iris")]
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, local_sockets.ENV: str(tmp_path)},
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline()  # blocks until the banner (or EOF if it died)
        assert line.startswith("serving sklearn-iris (sklearn) on http://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].strip()
        assert not url.endswith(":0")
        assert httpx.get(url + "/v2/health/ready", timeout=10).status_code == 200
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as sock:
            sock.sendall(b"GARBAGE\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
        for line in process.stderr:  # the JSON lines before it (model ready), then uvicorn's warning
            doc = orjson.loads(line)
            if doc["logger"] == "uvicorn.error":
                assert doc["message"] == "Invalid HTTP request received." and doc["level"] == "warning"
                break
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_banner_is_a_json_line_where_it_shares_a_json_log_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serving up` writes each replica's stdout and stderr to one log file, of JSON lines: the plain banner was
    the one line a log pipeline rejected. Where stdout is that same file it is a JSON line (its message the
    banner); on a stdout of its own (a pipe, a terminal) it stays the plain line scripts read."""
    import logging

    import orjson

    from serving.observability import log_format
    from serving.ready_banner import say

    shared, apart = tmp_path / "replica.log", tmp_path / "stdout.txt"
    with shared.open("a") as log_file, apart.open("a") as own_stdout:
        monkeypatch.setattr("sys.stderr", log_file)
        root = logging.getLogger()
        saved = root.handlers[:]
        try:
            handler = log_format.ConsoleHandler(log_file)  # what configure("json") installs on stderr
            handler.setFormatter(log_format.JsonFormatter())
            root.handlers[:] = [handler]
            assert log_format.one_json_stream(log_file) and not log_format.one_json_stream(own_stdout)
            for stdout in (log_file, own_stdout):
                say("serving iris (sklearn) on http://127.0.0.1:8080", stdout)
        finally:
            root.handlers[:] = saved
    (line,) = shared.read_text().splitlines()
    assert orjson.loads(line)["message"] == "serving iris (sklearn) on http://127.0.0.1:8080"
    assert apart.read_text() == "serving iris (sklearn) on http://127.0.0.1:8080\n"
