"""Chart values for observability reach the router and the operator (which puts them on every model pod's
command line, see test_observability_spec) as environment variables; bad values are refused by the schema."""

from __future__ import annotations

import subprocess

import yaml

from tests.test_chart import CHART, _binary, _run


def _env(doc: dict) -> dict[str, str]:
    return {
        e["name"]: e.get("value") for e in doc["spec"]["template"]["spec"]["containers"][0].get("env", [])
    }


def test_observability_values_become_env_of_router_and_operator() -> None:
    text = _run(
        _binary("helm"), "template", "rel", str(CHART), "-f", str(CHART / "ci/observability-values.yaml")
    )
    deployments = {
        d["metadata"]["name"]: d for d in yaml.safe_load_all(text) if d and d["kind"] == "Deployment"
    }
    router = next(d for name, d in deployments.items() if "router" in name)
    operator = next(d for name, d in deployments.items() if "operator" in name)
    for env in (_env(router), _env(operator)):
        assert env["SERVING_LOG_FORMAT"] == "json" and env["SERVING_ACCESS_LOG_SAMPLE"] == "0.1"
        assert (
            env["SERVING_OTEL"] == "1"
            and env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
        )
    assert _env(operator)["SERVING_LOGGER_DEFAULT_URL"] == "http://message-dumper.default.svc.cluster.local/"
    defaults = yaml.safe_load_all(_run(_binary("helm"), "template", "rel", str(CHART)))
    for doc in (d for d in defaults if d and d["kind"] == "Deployment"):
        assert "SERVING_OTEL" not in _env(doc) and "SERVING_LOGGER_DEFAULT_URL" not in _env(
            doc
        )  # off by default


def test_schema_refuses_bad_observability_values() -> None:
    for bad in ("observability.accessLogSample=2", "observability.logger.defaultUrl=s3://bucket"):
        done = subprocess.run(
            [_binary("helm"), "template", "rel", str(CHART), "--set", bad],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0 and "observability" in done.stderr, bad
