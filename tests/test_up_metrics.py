"""`serving up`'s /metrics: one scrape shows every model server's metrics, labelled by isvc and revision."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import train_iris_sklearn
from tests.up_support import apply_text, isvc_yaml, predict, serving_up, traffic, wait_for_traffic


def test_router_metrics_federate_model_servers(tmp_path: Path) -> None:
    model = tmp_path / "m"
    train_iris_sklearn(model)
    state = tmp_path / "state"
    with serving_up(state) as server, server.client() as client:
        apply_text(server, state, isvc_yaml("iris", model), tmp_path)
        (revision,) = traffic(wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100]))
        for _ in range(7):
            assert predict(client, "iris").status_code == 200
        text = client.get("/metrics").text
        for method in ("POST", "PUT", "DELETE"):  # a 405 naming what is allowed, not the control API's 404
            refused = client.request(method, "/metrics")
            assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD", refused.text
        assert client.request("PATCH", "/openapi.json").status_code == 405
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    ok = [
        s
        for s in samples
        if s.name == "serving_requests_total"
        and s.labels.get("code") == "200"
        and s.labels.get("isvc") == "iris"
        and s.labels.get("revision") == revision
    ]
    assert ok and sum(s.value for s in ok) >= 7, ok
    assert all(s.labels.get("component") == "predictor" for s in ok)
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (install: scripts/install-test-tools)")
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
