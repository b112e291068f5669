"""`serving demo`: trains the iris example into the user's cache, serves it through `serving up` (a real model
server process) and prints a V1 and a V2 prediction with the commands to try next."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from serving.commands import demo
from tests.inprocess import serving_inprocess


@pytest.mark.e2e  # `serving up` starts a real model-server process (forked from the warm spawner)
def test_demo_serves_iris_and_prints_both_predictions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "XDG_CACHE_HOME", str(tmp_path / "cache")
    )  # the model is trained here, not in ~/.cache
    # The harness listens on port 0; the demo's own printer (aimed at --port) finds nothing there and is
    # stopped at exit, so the printer is called once more with the port the harness chose.
    args = ["demo", "--port", "9", "--state-dir", str(tmp_path / "state")]
    with serving_inprocess(args, ready_path="/v1/models", timeout_s=120) as server:
        assert (tmp_path / "cache" / "serving" / "demo" / "sklearn-iris.yaml").exists()
        demo._show_predictions(server.url, threading.Event(), "  serving get --state-dir X")
    out = capsys.readouterr().out
    assert "V1 200 (revision sklearn-iris-" in out and '{"predictions":[1]}' in out
    assert 'V2 200: {"model_name":"sklearn-iris"' in out and f"curl -s {server.url}/v1/models/" in out


def test_a_taken_port_is_refused_before_anything_is_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another server on the port would answer the demo's predictions: the demo must stop first."""
    import socket

    from serving.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", "--port", str(port), "--state-dir", str(tmp_path / "state")]) == 2
    captured = capsys.readouterr()
    assert f"port {port} is in use" in captured.err and "predictions" not in captured.out
    assert not (tmp_path / "cache" / "serving").exists()  # nothing trained or written either


def test_the_serving_get_hint_names_a_server_off_the_default_address(tmp_path: Path) -> None:
    """`serving demo --port 28080`: the printed `serving get` must reach it (the CLI's default is :8080)."""
    with demo._state_dir(None, "http://127.0.0.1:28080") as (_, hint):
        assert hint.endswith("serving get --server http://127.0.0.1:28080") and "XDG_STATE_HOME=" in hint
    with demo._state_dir(tmp_path, "http://127.0.0.1:8080") as (_, hint):
        assert hint == f"  serving get --state-dir {tmp_path}"
