"""The operator's cluster inputs: KServe storage credentials from a ServiceAccount's Secrets, and ServingRuntimes.

Real parts: the operator's backend and kopf handlers, the kubernetes client, KServe's selection rules and args
mapping (the same functions `serving up` uses). Mocked, because no API server runs here: the API server itself
(kmock's KubernetesEmulator, as in tests/test_operator.py, whose caveats apply: no admission, no uid assignment,
no RBAC — the chart's rules are checked by tests/test_chart.py — and no Pods or storage-initializer runs).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import kopf
import kubernetes

from serving.control.kubernetes.apply import Cluster
from serving.control.kubernetes.backend import KubernetesBackend, OperatorConfig
from serving.control.kubernetes.documents import read_converted
from serving.control.kubernetes.operator import build_registry
from serving.servingruntime import NO_RUNTIME
from tests.kopf_runner import operator_runner
from tests.support import wait_until
from tests.test_operator import cluster  # noqa: F401  (the emulator fixture)

SECRET_KEY = "s3cr3t-never-inline"
ISVC = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
  namespace: ml
spec:
  predictor:
    {account}
    model:
      modelFormat: {{name: sklearn, version: "{version}"}}
      {runtime}
      storageUri: {uri}
"""


def _isvc(
    tmp_path: Path,
    api: Cluster,
    name: str,
    *,
    account: str = "",
    version: str = "1",
    runtime: str = "",
    uri: str = "s3://models/iris",
) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        ISVC.format(
            name=name,
            version=version,
            uri=uri,
            account=f"serviceAccountName: {account}" if account else "",
            runtime=f"runtime: {runtime}" if runtime else "",
        )
    )
    doc = read_converted([path])[0]
    api.apply({**doc, "metadata": {**doc["metadata"], "uid": f"uid-{name}", "resourceVersion": "1"}})


def _runtime(kind: str, name: str, version: str, args: list[str], **spec: Any) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": "ml"} if kind == "ServingRuntime" else {})}
    return {
        "apiVersion": "serving.dev/v1alpha1",
        "kind": kind,
        "metadata": meta,
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "version": version, **spec.pop("fmt", {})}],
            "protocolVersions": ["v1", "v2"],
            "containers": [{"name": "kserve-container", "args": args}],
            **spec,
        },
    }


def _create_cluster_runtime(api: Cluster, body: dict[str, Any]) -> None:
    kubernetes.client.CustomObjectsApi(api.client).create_cluster_custom_object(
        "serving.dev", "v1alpha1", "clusterservingruntimes", body
    )


def _s3_credentials(api: Cluster) -> None:
    """KServe's documented S3 setup: a Secret with the s3 annotations and keys, listed by a ServiceAccount."""
    encoded = {
        k: base64.b64encode(v.encode()).decode()
        for k, v in {"AWS_ACCESS_KEY_ID": "minio", "AWS_SECRET_ACCESS_KEY": SECRET_KEY}.items()
    }
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "data": encoded,
            "metadata": {
                "name": "s3creds",
                "namespace": "ml",
                "annotations": {
                    "serving.kserve.io/s3-endpoint": "minio.storage:9000",
                    "serving.kserve.io/s3-usehttps": "0",
                    "serving.kserve.io/s3-region": "eu-west-1",
                    "serving.kserve.io/s3-verifyssl": "0",
                },
            },
        }
    )
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "models", "namespace": "ml"},
            "secrets": [{"name": "s3creds"}, {"name": "not-there"}],
        }
    )  # a missing Secret is skipped, as KServe does


def _pod(api: Cluster, isvc: str) -> dict[str, Any]:
    (deployment,) = api.list("Deployment", "ml", {"serving.dev/isvc": isvc})
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _args(api: Cluster) -> list[str]:
    found = api.list("Deployment", "ml", {"serving.dev/isvc": "iris"})
    return found[0]["spec"]["template"]["spec"]["containers"][0]["args"] if found else []


def _status(api: Cluster, name: str) -> dict[str, Any]:
    return (api.get("InferenceService", "ml", name) or {}).get("status") or {}


def test_service_account_secrets_reach_the_storage_initializer_and_runtimes_seeded(
    cluster,  # noqa: F811 (the emulator fixture, imported above)
    tmp_path: Path,
) -> None:
    _, api = cluster
    _s3_credentials(api)
    _create_cluster_runtime(
        api,
        _runtime(
            "ClusterServingRuntime",
            "shared-sklearn",
            "1",
            ["--model_name={{.Name}}", "--runtime=sklearn", "--max-batch-size=4"],
        ),
    )
    _create_cluster_runtime(api, _runtime("ClusterServingRuntime", "retired", "1", [], disabled=True))
    backend = KubernetesBackend(api, OperatorConfig(drain_s=0.0))
    backend.start()  # lists the runtimes already in the cluster
    _isvc(tmp_path, api, "iris", account="models", runtime="shared-sklearn")
    backend.reconcile("ml", "iris")

    pod = _pod(api, "iris")
    init, main = pod["initContainers"][0], pod["containers"][0]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in init["env"]}
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "s3creds", "key": "AWS_ACCESS_KEY_ID"}}
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "s3creds", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    assert (env["S3_ENDPOINT"], env["AWS_ENDPOINT_URL"]) == (
        "minio.storage:9000",
        "http://minio.storage:9000",
    )
    assert (env["S3_USE_HTTPS"], env["S3_VERIFY_SSL"], env["AWS_DEFAULT_REGION"]) == ("0", "0", "eu-west-1")
    assert pod["serviceAccountName"] == "models"
    assert not any(e["name"].startswith("AWS_") for e in main["env"])  # the model server never sees the keys
    rendered = json.dumps(pod)
    assert SECRET_KEY not in rendered and base64.b64encode(SECRET_KEY.encode()).decode() not in rendered
    # The explicit cluster runtime's args, mapped as the local backend maps them.
    assert "--max-batch-size=4" in main["args"] and not any(
        a.startswith("--model_name") for a in main["args"]
    )
    # KServe's status: the deployment mode and the runtime by its kind, no null (audit /tmp/audit-kserve4 M3)
    status = _status(api, "iris")
    assert status["deploymentMode"] == "Knative" and status["clusterServingRuntimeName"] == "shared-sklearn"
    assert "servingRuntimeName" not in status and "null" not in json.dumps(status)

    # No ServiceAccount of that name: no credentials (KServe logs and goes on), the revision still renders.
    _isvc(tmp_path, api, "ghost", account="nobody")
    backend.reconcile("ml", "ghost")
    assert not any(
        e["name"].startswith(("AWS_", "S3_")) for e in _pod(api, "ghost")["initContainers"][0]["env"]
    )

    # An explicit runtime that is disabled: KServe's reason, nothing rendered.
    _isvc(tmp_path, api, "old", runtime="retired")
    backend.reconcile("ml", "old")
    failure = _status(api, "old")["modelStatus"]
    assert failure["transitionStatus"] == "InvalidSpec"
    assert failure["lastFailureInfo"] == {
        "reason": "RuntimeDisabled",
        "message": "Specified runtime retired is disabled",
    }
    assert api.list("Deployment", "ml", {"serving.dev/isvc": "old"}) == []
    assert not _status(api, "old").keys() & {"servingRuntimeName", "clusterServingRuntimeName"}


def test_watched_serving_runtime_ends_no_runtime(cluster, tmp_path: Path) -> None:  # noqa: F811
    emulator, api = cluster
    backend = KubernetesBackend(
        api, OperatorConfig(drain_s=0.0, resync_s=30.0)
    )  # no resync: the watch must act
    registry = build_registry(backend, kopf.ConnectionInfo(server=emulator.url))

    with operator_runner(registry) as runner:
        # sklearn version 2: no built-in runtime supports it -> not ready, KServe's message, nothing rendered
        _isvc(tmp_path, api, "iris", version="2", uri="pvc://models/iris")
        wait_until(lambda: "lastFailureInfo" in _status(api, "iris").get("modelStatus", {}), timeout_s=15)
        status = _status(api, "iris")
        assert status["modelStatus"]["lastFailureInfo"] == {
            "reason": "NoSupportingRuntime",
            "message": NO_RUNTIME,
        }
        assert status["modelStatus"]["transitionStatus"] == "InvalidSpec"
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert (
            ready["status"] == "False" and ready["message"] == f"spec.predictor.model.runtime: {NO_RUNTIME}"
        )
        assert api.list("Deployment", "ml", {"serving.dev/isvc": "iris"}) == []

        # A cluster runtime for it appears -> the watch reconciles at once and the revision renders with its args.
        _create_cluster_runtime(
            api,
            _runtime(
                "ClusterServingRuntime",
                "cluster-v2",
                "2",
                ["--max-batch-size=99"],
                fmt={"autoSelect": True, "priority": 9},
            ),
        )
        wait_until(lambda: "--max-batch-size=99" in _args(api), timeout_s=10)
        wait_until(
            lambda: _status(api, "iris").get("clusterServingRuntimeName") == "cluster-v2", timeout_s=10
        )
        # Then a namespace one with a lower priority: namespace runtimes come first, the Deployment follows.
        api.apply(
            _runtime(
                "ServingRuntime",
                "team-v2",
                "2",
                ["--model_name={{.Name}}", "--predict-proba"],
                fmt={"autoSelect": True, "priority": 1},
            )
        )
        wait_until(lambda: "--predict-proba" in _args(api), timeout_s=10)
        args = _args(api)
        assert "--max-batch-size=99" not in args and not any(a.startswith("--model_name") for a in args)
        i = args.index(
            "--predict-proba"
        )  # the runtime's flags, after the spec's: `--runtime` from the format
        assert args[i - 2 : i + 1] == ["--runtime", "sklearn", "--predict-proba"]
        wait_until(
            lambda: _status(api, "iris")["modelStatus"]["transitionStatus"] == "InProgress", timeout_s=10
        )
        assert "lastFailureInfo" not in _status(api, "iris")["modelStatus"]
        # KServe writes one of the two names: the cluster runtime's is removed from the status
        status = _status(api, "iris")
        assert status["servingRuntimeName"] == "team-v2" and "clusterServingRuntimeName" not in status
    assert runner.exception is None


KSERVE_RUNTIMES = """
apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata: {name: ranker}
spec:
  supportedModelFormats: [{name: sklearn, autoSelect: false}]
  protocolVersions: [v1, v2]
  containers: [{name: kserve-container, args: ["--model_name={{.Name}}", "--runtime=sklearn", "--max-batch-size", "16"]}]
---
apiVersion: serving.kserve.io/v1alpha1
kind: ClusterServingRuntime
metadata: {name: boosted}
spec:
  supportedModelFormats: [{name: xgboost, version: "1", autoSelect: true, priority: 5}]
  protocolVersions: [v1, v2]
  containers: [{name: kserve-container, args: ["--runtime=xgboost", "--native-threads=2"]}]
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: iris}
spec:
  predictor:
    model: {modelFormat: {name: sklearn}, runtime: ranker, storageUri: pvc://models/iris}
"""


def test_kserve_runtime_documents_apply_to_the_cluster_and_render_alike(cluster, tmp_path: Path) -> None:  # noqa: F811
    from serving.commands.render import render
    from serving.control.kubernetes.documents import apply_kubernetes

    _, api = cluster
    path = tmp_path / "all.yaml"
    path.write_text(KSERVE_RUNTIMES)
    assert apply_kubernetes([path], "ml", cluster=api) == [
        "servingruntime.serving.dev/ranker created",
        "clusterservingruntime.serving.dev/boosted created",
        "inferenceservice.serving.dev/iris created",
    ]
    assert api.get("ServingRuntime", "ml", "ranker")["apiVersion"] == "serving.dev/v1alpha1"
    assert (
        api.get("ClusterServingRuntime", "", "boosted")["metadata"].get("namespace") is None
    )  # cluster-scoped
    assert apply_kubernetes([path], "ml", cluster=api)[:2] == [
        "servingruntime.serving.dev/ranker unchanged",
        "clusterservingruntime.serving.dev/boosted unchanged",
    ]

    backend = KubernetesBackend(api, OperatorConfig(drain_s=0.0))
    backend.start()  # seeds both from the cluster
    backend.reconcile("ml", "iris")
    operator_args = _args(api)
    assert operator_args[operator_args.index("--max-batch-size") + 1] == "16"
    # `serving render` selects among the runtimes in the files (and the built-ins) the same way.
    rendered = render(read_converted([path], "ml"), backend.config.render)
    assert [d["kind"] for d in rendered[:3]] == [
        "ServingRuntime",
        "ClusterServingRuntime",
        "InferenceService",
    ]
    deployment = next(d for d in rendered if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == operator_args
