"""The Grafana dashboard only queries metrics we export, and every query is valid PromQL (promtool)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.canary.controller import CanaryMetrics
from serving.metrics import Metrics, RouterMetrics
from tests.support import REPO

DASHBOARD = REPO / "charts" / "dashboards" / "serving-dashboard.json"
METRIC = re.compile(r"\b((?:serving|request)_[a-z_]+)\b")


def exported_samples() -> set[str]:
    metrics, router = Metrics(), RouterMetrics()
    bound = metrics.model("m", "1")
    bound.request("v2", 200, 0.1)
    bound.inference(0.1)
    bound.batch_formed(2, [0.1])
    bound.queue_depth(1)
    metrics.rejected("queue_full")
    metrics.model_state_changed(SimpleNamespace(name="m", ready=True, load_seconds=0.5))
    router.observe_route("i", "default", "r", "stable", 500, 0.1)
    router.route_in_flight("i", "default", "r", "stable", 1)
    canary = CanaryMetrics(
        router.registry
    )  # serving up: the router's registry; the operator: its own /metrics
    canary.transitions.labels("i", "default", "Progressing").inc()
    canary.weight.labels("i", "default").set(10)
    text = (metrics.exposition() + router.exposition()).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def expressions() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_only_exported_metrics_and_shows_each_topic() -> None:
    exprs = expressions()
    names = {n for e in exprs for n in METRIC.findall(e)}
    missing = names - exported_samples()
    assert not missing, f"dashboard queries metrics nobody exports: {sorted(missing)}"
    joined = "\n".join(exprs)
    for needed in (
        "serving_router_requests_total",
        "serving_router_errors_total",
        "histogram_quantile(0.99",
        "histogram_quantile(0.5",
        "serving_batch_size",
        "by (arm, revision)",
        "serving_canary_weight{",
        "by (isvc, phase) (rate(serving_canary_transitions_total{",
    ):
        assert needed in joined, needed


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (install: scripts/install-test-tools)")
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:query{i}",
                        "expr": e.replace("$__rate_interval", "1m")
                        .replace("$isvc", ".*")
                        .replace("$namespace", ".*"),
                    }
                    for i, e in enumerate(expressions())
                ],
            }
        ]
    }
    path = tmp_path / "rules.json"  # YAML is a superset of JSON
    path.write_text(json.dumps(rules))
    check = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
