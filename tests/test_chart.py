"""The Helm chart and the kustomize base, with real helm and kubectl binaries: lint, render, and validate
every object against the official schemas (kubernetes-validate --strict, 1.29 and 1.37)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from serving.canary.crd import canary_crd
from serving.crd import crd

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts/serving"
SCENARIOS = [None, *sorted((CHART / "ci").glob("*-values.yaml"))]
# Kinds from other projects' CRDs: kubernetes-validate has no schema; checked for shape below instead.
FOREIGN = {"ServiceMonitor"}


def _binary(name: str) -> str:
    found = shutil.which(name) or (
        str(ROOT / ".bin" / name) if os.access(ROOT / ".bin" / name, os.X_OK) else None
    )
    if found is None:
        pytest.skip(f"{name} not found on PATH or in .bin/ (install: scripts/install-test-tools)")
    return found


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _validate_all(text: str) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        if doc["kind"] in FOREIGN:
            # the router's (port http) and the operator's (port metrics: canary weights and transitions)
            assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["spec"]["endpoints"][0][
                "port"
            ] in ("http", "metrics")
            continue
        for version in ("1.29", "1.37"):
            kubernetes_validate.validate(doc, version, strict=True)
    return docs


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.name if p else "defaults")
def test_helm_lint_and_template_validate(values: Path | None) -> None:
    helm = _binary("helm")
    extra = ["-f", str(values)] if values else []
    _run(helm, "lint", "--strict", str(CHART), *extra)
    docs = _validate_all(
        _run(helm, "template", "rel", str(CHART), "-n", "serving-system", "--include-crds", *extra)
    )
    kinds = {d["kind"] for d in docs}
    assert {
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    } <= kinds
    assert (
        next(
            d
            for d in docs
            if d["kind"] == "CustomResourceDefinition" and d["metadata"]["name"] == crd()["metadata"]["name"]
        )
        == crd()
    )
    operator = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator")
    )
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--routes-configmap=serving-system/rel-serving-routes" in args
    router = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-router"))
    assert (
        "--routes-configmap=serving-system/rel-serving-routes"
        in router["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    # Canary analyses scrape the router pods the operator finds with --router-selector: it must select them.
    selector = next(a for a in args if a.startswith("--router-selector=")).partition("=")[2]
    assert (
        dict(p.split("=") for p in selector.split(",")).items()
        <= router["spec"]["template"]["metadata"]["labels"].items()
    )
    if values and values.name == "namespaced-values.yaml":
        assert {"--namespace=team-a", "--namespace=team-b"} <= set(args)
        assert "--image-pull-secret=regcred" in args  # model-server pods run the same image
    if values and values.name == "keda-values.yaml":  # the operator renders ScaledObjects and may manage them
        assert "--keda-prometheus-url=http://prometheus-operated.monitoring.svc:9090" in args
        rules = [r for d in docs if d["kind"] == "ClusterRole" for r in d["rules"]]
        assert {
            "apiGroups": ["keda.sh"],
            "resources": ["scaledobjects"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        } in rules
    if values and values.name == "monitoring-values.yaml":
        assert "ServiceMonitor" in kinds
        dashboards = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
        # charts/serving/dashboards links to charts/dashboards (the Grafana JSON kept next to its test).
        assert set(dashboards) == {p.name for p in (ROOT / "charts/dashboards").glob("*.json")}
        assert all(json.loads(text)["panels"] for text in dashboards.values())


def test_rbac_is_least_privilege() -> None:
    helm = _binary("helm")
    docs = [d for d in yaml.safe_load_all(_run(helm, "template", "rel", str(CHART))) if d]
    rules = [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert "pods/exec" not in rule["resources"]
        # Secrets: `get` by name only, never list/watch. KServe's controller reads the same: a predictor's
        # ServiceAccount and the Secrets it lists, for the storage-initializer's env (a secretKeyRef, not the value).
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"] and rule["apiGroups"] == [""]
    assert {"apiGroups": [""], "resources": ["serviceaccounts", "secrets"], "verbs": ["get"]} in rules
    assert {
        "apiGroups": ["serving.dev"],
        "resources": ["servingruntimes", "clusterservingruntimes"],
        "verbs": ["get", "list", "watch"],
    } in rules
    # what the operator does that RBAC must allow (a real API server enforces it; the tests' emulator does not):
    # it removes a handled `serving.dev/action` annotation from a Canary (or the action fires on every event), and
    # its children's ownerReferences set blockOwnerDeletion (OwnerReferencesPermissionEnforcement asks for update
    # on the owner's finalizers, or refuses every create)
    assert {
        "apiGroups": ["serving.dev"],
        "resources": ["canaries"],
        "verbs": ["get", "list", "watch", "patch"],
    } in rules
    assert {
        "apiGroups": ["serving.dev"],
        "resources": ["inferenceservices/finalizers"],
        "verbs": ["update"],
    } in rules
    router_role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-router"))
    assert router_role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["rel-serving-routes"],
            "verbs": ["get"],
        }
    ]


def test_values_schema_rejects_bad_values() -> None:
    helm = _binary("helm")
    done = subprocess.run(
        [helm, "template", "rel", str(CHART), "--set", "router.service.type=Ingress"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "router" in done.stderr


def test_kustomize_base_builds_and_validates() -> None:
    kubectl = _binary("kubectl")
    docs = _validate_all(_run(kubectl, "kustomize", str(ROOT / "charts/kustomize")))
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] in ("Deployment", "Service")} == {
        "serving-system"
    }
    built = next(
        d
        for d in docs
        if d["kind"] == "CustomResourceDefinition" and d["metadata"]["name"] == crd()["metadata"]["name"]
    )
    assert built["spec"] == crd()["spec"]  # kustomize only adds its instance label
    canary = next(d for d in docs if d["metadata"]["name"] == "canaries.serving.dev")
    assert canary["spec"] == canary_crd()["spec"]
    # the same permissions as the chart's defaults (it lacked `pods: list`: a Canary could not count restarts)
    charted = [d for d in yaml.safe_load_all(_run(_binary("helm"), "template", "serving", str(CHART))) if d]
    assert (
        next(d for d in docs if d["kind"] == "ClusterRole")["rules"]
        == next(d for d in charted if d["kind"] == "ClusterRole")["rules"]
    )
