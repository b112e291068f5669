"""`serving get -o yaml/json` prints the status KServe writes: `deploymentMode`, the runtime it selected
(`clusterServingRuntimeName` / `servingRuntimeName`) and no null for a field with no value yet (Go's omitempty),
through a real `serving up` (audit /tmp/audit-kserve4 M3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.support import train_iris_sklearn, wait_until
from tests.up_support import apply_text, cli, isvc_yaml, serving_up

RUNTIME = """
apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata:
  name: echo-runtime
spec:
  supportedModelFormats:
  - name: sklearn
    autoSelect: false
  containers:
  - name: kserve-container
    args: ["--runtime=tests.runtimes_for_tests:EchoRuntime"]
"""
RAW = "  annotations:\n    serving.kserve.io/deploymentMode: RawDeployment\nspec:"


def test_get_prints_deployment_mode_the_runtime_and_no_nulls(tmp_path: Path) -> None:
    model = train_iris_sklearn(tmp_path / "models" / "iris").parent
    state = tmp_path / "state"
    with serving_up(state) as server:
        raw = isvc_yaml("raw", model).replace("spec:", RAW, 1)
        echo = isvc_yaml("echo", model).replace(
            "      modelFormat:", "      runtime: echo-runtime\n      modelFormat:"
        )
        broken = isvc_yaml("broken", tmp_path / "nothing-here")
        apply_text(
            server, state, "---\n".join([isvc_yaml("iris", model), raw, RUNTIME, echo, broken]), tmp_path
        )

        def status(name: str) -> dict[str, Any]:
            return json.loads(cli(server, state, "get", name, "-o", "json").stdout).get("status", {})

        def settled() -> bool:
            ready = [
                any(c["type"] == "Ready" and c["status"] == "True" for c in status(n).get("conditions", []))
                for n in ("iris", "raw", "echo")
            ]
            return all(ready) and "lastFailureInfo" in status("broken").get("modelStatus", {})

        wait_until(settled, 60, what="three services ready and one failed")
        iris, raw_status, echoed, failed = (status(n) for n in ("iris", "raw", "echo", "broken"))
        assert iris["deploymentMode"] == "Knative" and raw_status["deploymentMode"] == "Standard"
        assert (
            iris["clusterServingRuntimeName"] == "kserve-sklearnserver" and "servingRuntimeName" not in iris
        )
        assert echoed["servingRuntimeName"] == "echo-runtime" and "clusterServingRuntimeName" not in echoed
        assert "previousRolledoutRevision" not in iris["components"]["predictor"]
        predictor = failed["components"]["predictor"]
        assert not predictor.keys() & {"latestReadyRevision", "latestRolledoutRevision", "traffic"}, predictor
        for name in ("iris", "broken"):
            printed = cli(server, state, "get", name, "-o", "yaml").stdout
            assert "null" not in printed and ": []" not in printed, printed
            assert yaml.safe_load(printed)["status"]["deploymentMode"] == "Knative"
