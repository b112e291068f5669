"""`serving apply --state-dir DIR` reaches the `serving up` that uses DIR, on whatever port it listens: that
`serving up` writes its control URL into DIR while it runs (the client went to the default port, sending DIR's
token to whatever listened there). `--server` and SERVING_SERVER still win."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.commands.up import control_url
from serving.control.local.client import ControlClient
from serving.control.local.state import read_server, write_server
from serving.errors import ServingError
from tests.support import free_port
from tests.up_support import serving_up


def test_the_client_goes_where_the_state_directorys_serving_up_listens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SERVING_SERVER", raising=False)
    with pytest.raises(ServingError, match=f"no `serving up` is running with the state directory {tmp_path}"):
        ControlClient(state_dir=tmp_path)  # no guess at a port: the token would go to whatever listens there
    write_server(tmp_path, "http://127.0.0.1:35515")
    assert ControlClient(state_dir=tmp_path).server == "http://127.0.0.1:35515"
    (tmp_path / "server").write_text(json.dumps({"url": "http://127.0.0.1:35515", "pid": _dead_pid()}))
    with pytest.raises(ServingError, match="no `serving up` is running"):
        ControlClient(state_dir=tmp_path)  # a kill -9 left the file: its process is gone
    write_server(tmp_path, "http://127.0.0.1:35515")
    assert ControlClient("http://127.0.0.1:1", tmp_path).server == "http://127.0.0.1:1", "--server wins"
    monkeypatch.setenv("SERVING_SERVER", "http://127.0.0.1:2")
    assert ControlClient(state_dir=tmp_path).server == "http://127.0.0.1:2", "SERVING_SERVER wins"
    assert (
        control_url("0.0.0.0", 8081) == "http://127.0.0.1:8081" and control_url("::1", 9) == "http://[::1]:9"
    )
    assert control_url("127.0.0.1", 0) is None, "port 0: not known before it binds"


@pytest.mark.e2e
def test_serving_up_writes_its_url_while_it_runs_and_removes_it(tmp_path: Path) -> None:
    """A real `serving up` process on a port of its own (the in-process harness listens on port 0)."""
    port = free_port()
    with serving_up(tmp_path / "state", port=port):
        assert read_server(tmp_path / "state") == f"http://127.0.0.1:{port}"
        assert ControlClient(state_dir=tmp_path / "state").list() == []  # reached, with that token
    assert read_server(tmp_path / "state") is None


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
