"""The observability flags through the real CLI code path (tests.inprocess): `serving serve --logger-url
file://...` writes the JSON Lines sink, access log lines carry the request id, /metrics counts events."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from tests.inprocess import run_cli, serving_inprocess
from tests.support import train_iris_sklearn

V1 = {"instances": [[6.8, 2.8, 4.8, 1.4]]}


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("cli") / "iris"
    train_iris_sklearn(model_dir)
    return model_dir


def test_serve_flags_reach_the_model_server(iris: Path, tmp_path: Path) -> None:
    sink = tmp_path / "payloads.jsonl"
    args = [
        "serve",
        "--model-dir",
        str(iris),
        "--name",
        "iris",
        "--logger-url",
        sink.as_uri(),
        "--isvc",
        "iris",
        "--revision",
        "iris-0123abcd",
        "--access-log-sample",
        "0",
    ]
    with serving_inprocess(args) as server, server.client() as client:
        ok = client.post("/v1/models/iris:predict", json=V1, headers={"x-request-id": "abc-1"})
        bad = client.post("/v1/models/nope:predict", json=V1, headers={"x-request-id": "abc-2"})
        deadline = time.monotonic() + 10
        while 'serving_logger_events_total{outcome="sent"} 4.0' not in (
            metrics := client.get("/metrics").text
        ):
            assert time.monotonic() < deadline, f"payload events never all sent:\n{metrics}"
            time.sleep(0.02)
        log = server.log()
    assert ok.headers["x-request-id"] == "abc-1" and bad.status_code == 404
    events = [orjson.loads(line) for line in sink.read_text().splitlines()]
    assert sorted((e["id"], e["type"].rsplit(".", 1)[1], e.get("statuscode")) for e in events) == [
        ("abc-1", "request", None),
        ("abc-1", "response", "200"),
        ("abc-2", "request", None),
        ("abc-2", "response", "404"),
    ]
    assert all(e["endpoint"] == "iris-0123abcd" and e["inferenceservicename"] == "iris" for e in events)
    assert 'serving_logger_events_total{outcome="dropped"} 0.0' in metrics
    assert "id=abc-2" in log and "id=abc-1" not in log  # 2xx sampled at 0, errors always logged


def test_bad_flag_values_are_refused_by_the_parser() -> None:
    result = run_cli("serve", "--model-dir", ".", "--access-log-sample", "2")
    assert (
        result.returncode == 2
        and "--access-log-sample" in result.stderr
        and "between 0 and 1" in result.stderr
    )
    result = run_cli("serve", "--model-dir", ".", "--log-format", "xml")
    assert result.returncode == 2 and "--log-format" in result.stderr


def test_serving_up_passes_its_otlp_endpoint_to_the_processes_it_starts(monkeypatch) -> None:  # noqa: ANN001
    """`serving up --otel-endpoint URL` traced only the router: its replicas got no endpoint (and, with --otel
    beside it, sent to localhost:4318, where nothing listens). They inherit it as OTEL_EXPORTER_OTLP_ENDPOINT."""
    import os

    from serving.observability.options import (
        ENV_OTEL,
        OTLP_ENDPOINT_ENV,
        ObservabilityOptions,
        export_to_children,
    )

    monkeypatch.delenv(OTLP_ENDPOINT_ENV, raising=False)
    monkeypatch.delenv(ENV_OTEL, raising=False)
    restore = export_to_children(ObservabilityOptions(otel_endpoint="http://127.0.0.1:4319"))
    try:
        assert os.environ[OTLP_ENDPOINT_ENV] == "http://127.0.0.1:4319" and os.environ[ENV_OTEL] == "1"
    finally:
        restore()
    assert OTLP_ENDPOINT_ENV not in os.environ and ENV_OTEL not in os.environ
