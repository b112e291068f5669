"""`--log-level`: a model server's flag sets its own lines (the access log) as well as uvicorn's, and `serving up
--log-level` reaches every model server it starts, so `warning` means no access lines anywhere."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from serving.cli import build_parser
from serving.observability.log_format import LEVEL_ENV, apply_server_level
from tests.support import train_iris_sklearn
from tests.up_support import apply_text, isvc_yaml, predict, serving_up, wait_for_traffic


def test_a_servers_level_is_its_flag_else_the_one_passed_down_else_access_lines_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = logging.getLogger()
    before = root.level
    monkeypatch.delenv(LEVEL_ENV, raising=False)
    try:
        root.setLevel(logging.INFO)
        assert apply_server_level(None) == "warning" and root.level == logging.INFO  # uvicorn quiet, ours on
        assert apply_server_level("WARNING") == "warning" and root.level == logging.WARNING
        monkeypatch.setenv(LEVEL_ENV, "error")  # what `serving up --log-level error` gives its replicas
        assert apply_server_level(None) == "error" and root.level == logging.ERROR
        assert apply_server_level("debug") == "debug" and root.level == logging.DEBUG  # the flag wins
        assert apply_server_level("trace") == "trace" and root.level == 5  # uvicorn's TRACE
        with pytest.raises(ValueError, match="log level must be one of"):
            apply_server_level("loud")
    finally:
        root.setLevel(before)


@pytest.mark.parametrize("value", ["", "loud"])
def test_an_empty_or_unknown_level_passed_down_keeps_the_defaults(
    value: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = logging.getLogger()
    before = root.level
    monkeypatch.setenv(LEVEL_ENV, value)
    try:
        root.setLevel(logging.INFO)
        assert apply_server_level(None) == "warning" and root.level == logging.INFO
    finally:
        root.setLevel(before)
    named = [r.getMessage() for r in caplog.records if LEVEL_ENV in r.getMessage()]
    assert named == (
        [
            f"{LEVEL_ENV}='loud' is not one of critical, error, warning, info, debug, trace: "
            "using the default levels"
        ]
        if value
        else []
    )


@pytest.mark.parametrize("command", [["serve", "--model-dir", "m"], ["up"], ["router"], ["transform"]])
def test_an_unknown_level_is_refused_by_the_cli(command: list[str], capsys: pytest.CaptureFixture) -> None:
    argv = [*command, "--log-level", "loud"]
    with pytest.raises(SystemExit):
        build_parser(argv).parse_args(argv)
    assert "invalid choice: 'loud'" in capsys.readouterr().err


def test_serving_up_log_level_reaches_its_model_servers(tmp_path: Path) -> None:
    model = tmp_path / "m"
    train_iris_sklearn(model)
    state = tmp_path / "state"
    with serving_up(state, extra=("--log-level", "warning"), process=True) as server:
        apply_text(server, state, isvc_yaml("iris", model), tmp_path)
        wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100])
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert all(predict(client, "iris").status_code == 200 for _ in range(5))
    # Stopped: every line the replica wrote is in its log.
    replica_logs = [p for p in (state / "logs").glob("*.log") if p.name.startswith("iris")]
    assert replica_logs, sorted(p.name for p in (state / "logs").iterdir())
    lines = "".join(p.read_text() for p in replica_logs)
    assert "serving.access" not in lines and "/v1/models/iris:predict" not in lines, lines[-2000:]
