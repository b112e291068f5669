"""Rendered workloads: every object of every example validates against the official Kubernetes schemas
(kubernetes-validate --strict, 1.29 and 1.37), and carries what the operator and router rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from serving.commands.render import render
from serving.control.kubernetes.apply import contains, merge_patch
from serving.control.kubernetes.backend import observe
from serving.control.kubernetes.documents import read_converted
from serving.control.kubernetes.render import RenderSettings, object_name, owner_reference, revision_objects
from serving.errors import ServingError
from serving.revision import Revision
from serving.spec import parse

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [
    p
    for p in sorted((ROOT / "examples").rglob("*.yaml"))  # InferenceService files (not Canary etc.)
    if all(d.get("kind") == "InferenceService" for d in yaml.safe_load_all(p.read_text()) if d)
]
VERSIONS = ("1.29", "1.37")
SETTINGS = RenderSettings(image="registry.example/serving:test")


def _isvc(predictor: dict, transformer: dict | None = None, name: str = "iris") -> dict:
    spec = {"predictor": predictor} | ({"transformer": transformer} if transformer else {})
    return {
        "apiVersion": "serving.dev/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": spec,
    }


def _objects(doc: dict, uid: str | None = "uid-1") -> dict[str, dict]:
    isvc = parse(doc)
    replicas = isvc.spec.predictor.replicas  # what plan() runs
    revision = Revision.from_spec(isvc)
    owner = owner_reference(isvc, uid) if uid else None
    return {
        f"{o['kind']}/{o['metadata']['name']}": o
        for o in revision_objects(isvc, revision, replicas, SETTINGS, owner)
    }


def _validate(obj: dict) -> None:
    for version in VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_renders_to_valid_objects(example: Path) -> None:
    objects = render(read_converted([example], "ml"), SETTINGS)
    assert objects[0]["apiVersion"] == "serving.dev/v1beta1"
    kinds = [o["kind"] for o in objects[1:]]
    assert kinds.count("Deployment") == kinds.count("Service") >= 1
    for obj in objects[1:]:
        _validate(obj)
    owned = _objects(objects[0])
    for obj in owned.values():  # with owner references too
        _validate(obj)


def test_predictor_deployment_fields() -> None:
    doc = _isvc(
        {
            "minReplicas": 2,
            "timeout": 30,
            "containerConcurrency": 8,
            "batcher": {"maxBatchSize": 16, "maxLatency": 5},
            "serviceAccountName": "models",
            "nodeSelector": {"gpu": "none"},
            "model": {
                "modelFormat": {"name": "sklearn"},
                "storageUri": "pvc://store/iris/v1",
                "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 1}},
            },
        }
    )
    revision = Revision.from_spec(parse(doc))
    objects = _objects(doc)
    deployment = objects[f"Deployment/{revision.name}-predictor"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["ownerReferences"][0] == {
        "apiVersion": "serving.dev/v1beta1",
        "kind": "InferenceService",
        "name": "iris",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    labels = deployment["metadata"]["labels"]
    assert labels["serving.dev/isvc"] == "iris" and labels["serving.dev/revision"] == revision.name
    assert labels["serving.dev/component"] == "predictor" and labels["app.kubernetes.io/part-of"] == "serving"
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    pod = template["spec"]
    assert pod["serviceAccountName"] == "models" and pod["nodeSelector"] == {"gpu": "none"}
    init = pod["initContainers"][0]
    assert init["command"] == ["serving"]
    assert init["args"] == [
        "storage",
        "pull",
        "pvc://store/iris/v1",
        "/mnt/models",
        "--cache-dir",
        "/tmp/cache",
        "--pvc-root",
        "/mnt/pvc",
    ]
    assert {"name": "pvc", "persistentVolumeClaim": {"claimName": "store", "readOnly": True}} in pod[
        "volumes"
    ]
    main = pod["containers"][0]
    args = main["args"]
    assert args[:5] == ["serve", "--model-dir", "/mnt/models", "--name", "iris"]
    for flag, value in (
        ("--max-batch-size", "16"),
        ("--max-latency-ms", "5"),
        ("--request-timeout", "30"),
        ("--max-concurrency", "8"),
        ("--host", "0.0.0.0"),
        ("--port", "8080"),
    ):
        assert args[args.index(flag) + 1] == value
    assert main["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert main["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert main["env"] == [{"name": "OMP_NUM_THREADS", "value": "1"}]
    assert main["resources"] == {"limits": {"cpu": "1"}, "requests": {"cpu": "500m", "memory": "1Gi"}}
    assert {"name": "model", "mountPath": "/mnt/models", "readOnly": True} in main["volumeMounts"]
    assert not any(o["kind"] == "HorizontalPodAutoscaler" for o in objects.values())  # min == max: no HPA
    service = objects[f"Service/{revision.name}-predictor"]
    assert service["spec"]["selector"] == {
        "serving.dev/revision": revision.name,
        "serving.dev/component": "predictor",
    }
    for obj in objects.values():
        _validate(obj)


@pytest.mark.parametrize(
    ("metric", "target", "expected"),
    [
        (
            "cpu",
            70,
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
            },
        ),
        (
            "memory",
            None,
            {
                "type": "Resource",
                "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}},
            },
        ),
        (
            "concurrency",
            4,
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "serving_requests_in_flight"},
                    "target": {"type": "AverageValue", "averageValue": "4"},
                },
            },
        ),
    ],
)
def test_hpa_when_min_and_max_differ(metric: str, target: int | None, expected: dict) -> None:
    predictor = {
        "minReplicas": 1,
        "maxReplicas": 5,
        "scaleMetric": metric,
        "sklearn": {"storageUri": "https://models.example/iris.tar.gz"},
    }
    if target:
        predictor["scaleTarget"] = target
    objects = _objects(_isvc(predictor))
    (hpa,) = [o for o in objects.values() if o["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["minReplicas"] == 1 and hpa["spec"]["maxReplicas"] == 5
    assert hpa["spec"]["metrics"] == [expected]
    assert hpa["spec"]["scaleTargetRef"]["name"] == hpa["metadata"]["name"]
    _validate(hpa)
    # Once it exists, the operator's patches leave the replica count to the HPA.
    isvc = parse(_isvc(predictor))
    existing = revision_objects(isvc, Revision.from_spec(isvc), 1, SETTINGS, existing=True)
    assert "replicas" not in next(o for o in existing if o["kind"] == "Deployment")["spec"]


def test_transformer_calls_its_own_revisions_predictor() -> None:
    ours = {
        "containers": [
            {"name": "kserve-container", "args": ["serving", "transform", "--transformer", "tabular"]}
        ]
    }
    doc = _isvc({"sklearn": {"storageUri": "pvc://store/iris"}}, ours)
    revision = Revision.from_spec(parse(doc))
    objects = _objects(doc)
    container = objects[f"Deployment/{revision.name}-transformer"]["spec"]["template"]["spec"]["containers"][
        0
    ]
    args = container["args"]
    assert container["command"] == ["serving"] and args[0] == "transform"
    assert args[args.index("--predictor-url") + 1] == f"http://{revision.name}-predictor.ml.svc.cluster.local"
    assert args[args.index("--model-name") + 1] == "iris"
    assert container["image"] == SETTINGS.image
    assert f"Service/{revision.name}-transformer" in objects
    # A custom image gets KServe's arguments instead.
    custom = {"containers": [{"name": "kserve-container", "image": "me/tx:1", "args": ["--feature", "x"]}]}
    doc = _isvc({"sklearn": {"storageUri": "pvc://store/iris"}}, custom)
    revision = Revision.from_spec(parse(doc))
    container = _objects(doc)[f"Deployment/{revision.name}-transformer"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["image"] == "me/tx:1"
    assert container["args"] == [
        "--feature",
        "x",
        "--model_name",
        "iris",
        "--predictor_host",
        f"{revision.name}-predictor.ml.svc.cluster.local",
        "--http_port",
        "8080",
    ]
    for obj in _objects(doc).values():
        _validate(obj)


def test_the_images_pull_secrets_reach_every_pod_that_runs_it_merged_with_the_components_own() -> None:
    """The chart's `imagePullSecrets` (the operator's --image-pull-secret): the model-server, transformer and
    storage-initializer pods run the same image, so they need them too (they reached the operator and router
    only: with a private registry every InferenceService pod was ImagePullBackOff). A component's own are kept,
    merged by name."""
    from dataclasses import replace

    ours = {"containers": [{"name": "kserve-container", "args": ["serving", "transform"]}]}
    doc = _isvc({"sklearn": {"storageUri": "s3://models/iris"}, "imagePullSecrets": [{"name": "team"}]}, ours)
    isvc, revision = parse(doc), Revision.from_spec(parse(doc))
    settings = replace(SETTINGS, image_pull_secrets=("regcred",))
    pods = {
        o["metadata"]["name"]: o["spec"]["template"]["spec"]
        for o in revision_objects(isvc, revision, 1, settings, None)
        if o["kind"] == "Deployment"
    }
    assert pods[f"{revision.name}-predictor"]["imagePullSecrets"] == [{"name": "regcred"}, {"name": "team"}]
    assert pods[f"{revision.name}-transformer"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert (
        "imagePullSecrets"
        not in _objects(doc)[f"Deployment/{revision.name}-transformer"]["spec"]["template"]["spec"]
    )


def test_a_transformers_own_min_replicas_is_its_replica_count() -> None:
    """`transformer.minReplicas: 3` with no HPA (min == max) runs 3 transformers, as its own Deployment does in
    KServe (it ran as many as the predictor, silently); unset, it follows the predictor's count."""
    ours = {"containers": [{"name": "kserve-container", "args": ["serving", "transform"]}]}
    predictor = {"sklearn": {"storageUri": "pvc://store/iris"}}

    def replicas(transformer: dict) -> dict[str, int]:
        objects = _objects(_isvc(predictor, transformer))
        return {
            k.split("-")[-1]: o["spec"]["replicas"] for k, o in objects.items() if k.startswith("Deployment/")
        }

    assert replicas({**ours, "minReplicas": 3, "maxReplicas": 3}) == {"predictor": 1, "transformer": 3}
    assert replicas(ours) == {"predictor": 1, "transformer": 1}


def test_long_names_stay_dns_labels() -> None:
    name = "a" * 45
    doc = _isvc(
        {"sklearn": {"storageUri": "pvc://store/iris"}},
        {"containers": [{"args": ["serving", "transform"]}]},
        name=name,
    )
    revision = Revision.from_spec(parse(doc))
    assert len(object_name(revision, "transformer")) <= 63
    assert object_name(revision, "transformer").endswith(f"-{revision.digest[:8]}-transformer")
    for obj in _objects(doc).values():
        _validate(obj)


def test_observe_and_patch_helpers() -> None:
    def deployment(revision: str, component: str, ready: int, conditions: list | None = None) -> dict:
        return {
            "metadata": {"labels": {"serving.dev/revision": revision, "serving.dev/component": component}},
            "status": {"readyReplicas": ready, "conditions": conditions or []},
        }

    stuck = [
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": "image pull",
        }
    ]
    observed = observe(
        [
            deployment("a", "predictor", 1),
            deployment("b", "predictor", 1),
            deployment("b", "transformer", 0),
            deployment("c", "predictor", 0, stuck),
        ],
        {"a": False, "b": True, "c": False},
    )
    assert observed.ready == {"a"}  # b's transformer is not ready yet
    assert observed.failed == {"c": "predictor: image pull"}
    assert merge_patch({"a": 1, "b": {"c": 1, "d": 2}}, {"b": {"c": 1}, "e": 3}) == {
        "a": None,
        "b": {"d": None},
        "e": 3,
    }
    assert contains({"a": 1, "b": [{"x": 1, "y": 2}]}, {"b": [{"x": 1}]})
    assert not contains({"b": [{"x": 1}]}, {"b": [{"x": 2}]})
    # as a real API server stores what it was sent: empty lists and maps omitted, quantities canonical (a
    # literal comparison patched such objects again on every reconcile, for nothing)
    rendered = {"env": [], "resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {}}}
    assert contains({"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}, rendered)
    assert not contains({"resources": {"requests": {"cpu": "600m", "memory": "1Gi"}}}, rendered)
    assert not contains({"env": [{"name": "X"}], "resources": rendered["resources"]}, rendered)
    assert not contains({"value": "500m"}, {"value": "0.5"})  # only quantities are read as quantities


def test_render_command_prints_one_stream() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "serving.cli",
            "render",
            "-f",
            str(ROOT / "examples/sklearn-iris.yaml"),
            "--namespace",
            "ml",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == ["InferenceService", "Deployment", "Service"]
    assert {d["metadata"]["namespace"] for d in docs} == {"ml"}


def test_kserve_pod_and_container_fields_render_to_valid_objects() -> None:
    """KServe's pod and container overrides (its PodSpec and corev1.Container are inlined) land in the pod as
    Kubernetes spells them, meeting ours where both set one: valid objects, nothing dropped."""
    doc = _isvc(
        {
            "serviceAccount": "models",  # the pod spec's deprecated name
            "securityContext": {"runAsGroup": 3000},
            "volumes": [{"name": "extra", "emptyDir": {}}],
            "initContainers": [{"name": "warm", "image": "busybox", "command": ["true"]}],
            "dnsPolicy": "ClusterFirst",
            "terminationGracePeriodSeconds": 60,
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}
            ],
            "containers": [
                {
                    "name": "proxy",
                    "image": "me/proxy:1",
                    "ports": [{"containerPort": 15000}],
                    "readinessProbe": {"tcpSocket": {}},  # no port: the container's (its first)
                }
            ],
            "model": {
                "modelFormat": {"name": "sklearn"},
                "protocolVersion": "grpc-v2",
                "storageUri": "s3://models/iris",
                "ports": [{"name": "h2c", "protocol": "TCP", "containerPort": 9000}],
                "readinessProbe": {"httpGet": {"path": "/v1/models/iris"}},
                "volumeMounts": [{"name": "extra", "mountPath": "/extra"}],
                "securityContext": {"allowPrivilegeEscalation": False},
                "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
                "imagePullPolicy": "Always",
                "envFrom": [{"configMapRef": {"name": "settings"}}],
            },
        },
        {
            **{"containers": [{"args": ["serving", "transform", "--transformer", "tabular"]}]},
            "volumes": [{"name": "cache", "emptyDir": {}}],
        },
    )
    doc["metadata"]["annotations"] = {"sidecar.istio.io/inject": "true", "prometheus.kserve.io/port": "9000"}
    objects = _objects(doc)
    for obj in objects.values():
        _validate(obj)
    revision = Revision.from_spec(parse(doc))
    template = objects[f"Deployment/{revision.name}-predictor"]["spec"]["template"]
    pod = template["spec"]
    assert pod["serviceAccountName"] == "models" and "serviceAccount" not in pod
    assert pod["securityContext"]["runAsGroup"] == 3000 and pod["securityContext"]["runAsNonRoot"] is True
    assert [v["name"] for v in pod["volumes"]] == ["model", "tmp", "extra"]
    assert [c["name"] for c in pod["initContainers"]] == ["warm", "storage-initializer"]
    assert pod["terminationGracePeriodSeconds"] == 60 and pod["dnsPolicy"] == "ClusterFirst"
    main, proxy = pod["containers"]
    assert main["args"][main["args"].index("--grpc-port") + 1] == "9000"
    assert {"name": "grpc", "containerPort": 9000, "protocol": "TCP"} in main["ports"]
    assert main["readinessProbe"] == {"httpGet": {"path": "/v1/models/iris", "port": "http"}}
    assert main["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"  # not given: ours
    assert [m["name"] for m in main["volumeMounts"]] == ["model", "tmp", "extra"]
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["imagePullPolicy"] == "Always" and main["envFrom"] == [{"configMapRef": {"name": "settings"}}]
    assert main["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert proxy["readinessProbe"] == {"tcpSocket": {"port": 15000}}
    assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "true"
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "9000"
    service = objects[f"Service/{revision.name}-predictor"]["spec"]["ports"]
    assert [(p["name"], p["targetPort"]) for p in service] == [("http", "http"), ("grpc", "grpc")]
    transformer = objects[f"Deployment/{revision.name}-transformer"]["spec"]["template"]["spec"]
    assert [v["name"] for v in transformer["volumes"]] == ["tmp", "cache"]


def test_a_custom_containers_probe_without_a_port_probes_its_http_port() -> None:
    """A custom predictor that declares no ports gets 8080 named `http`; its probes written without a port
    (as KServe's docs write them) probe it, or the API server refuses the Deployment."""
    doc = _isvc(
        {
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "me/model:1",
                    "readinessProbe": {"httpGet": {"path": "/v1/models/m"}},
                    "livenessProbe": {"tcpSocket": {}},
                }
            ]
        }
    )
    objects = _objects(doc)
    revision = Revision.from_spec(parse(doc))
    deployment = objects[f"Deployment/{revision.name}-predictor"]
    _validate(deployment)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"] == {"httpGet": {"path": "/v1/models/m", "port": "http"}}
    assert container["livenessProbe"] == {"tcpSocket": {"port": "http"}}


def test_a_transformers_other_containers_run_beside_it_as_sidecars() -> None:
    """As a predictor's: KServe renders every container of the transformer's pod spec, not only the first."""
    doc = _isvc(
        {"sklearn": {"storageUri": "pvc://store/iris"}},
        {
            "containers": [
                {"name": "kserve-container", "args": ["serving", "transform", "--transformer", "identity"]},
                {"name": "sidecar", "image": "busybox", "args": ["sleep", "100000"]},
            ]
        },
    )
    revision = Revision.from_spec(parse(doc))
    deployment = _objects(doc)[f"Deployment/{revision.name}-transformer"]
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["kserve-container", "sidecar"]
    assert (containers[1]["image"], containers[1]["args"]) == ("busybox", ["sleep", "100000"])
    _validate(deployment)


def test_a_sidecars_env_stays_in_the_sidecar() -> None:
    """Kubernetes scopes `env` to the container declaring it: a sidecar's variables reach neither the model
    server, nor the storage initializer, nor the transformer; the shorthand's own `env` reaches the server."""
    sidecar = {"name": "proxy", "image": "envoyproxy/envoy:v1.28", "env": [{"name": "SIDE", "value": "car"}]}
    doc = _isvc(
        {
            "sklearn": {"storageUri": "pvc://store/iris", "env": [{"name": "OWN", "value": "1"}]},
            "containers": [sidecar],
        },
        {
            "containers": [
                {
                    "name": "kserve-container",
                    "args": ["serving", "transform", "--transformer", "identity"],
                    "env": [{"name": "TR", "value": "1"}],
                },
                {**sidecar, "env": [{"name": "TR_SIDE", "value": "car"}]},
            ]
        },
    )
    revision = Revision.from_spec(parse(doc))
    objects = _objects(doc)

    def env(deployment: str) -> dict[str, set[str]]:
        pod = objects[deployment]["spec"]["template"]["spec"]
        return {
            c["name"]: {e["name"] for e in c.get("env", ())}
            for c in pod["containers"] + pod.get("initContainers", [])
        }

    predictor, transformer = (
        env(f"Deployment/{revision.name}-predictor"),
        env(f"Deployment/{revision.name}-transformer"),
    )
    assert "OWN" in predictor["kserve-container"] and "SIDE" not in predictor["kserve-container"], predictor
    assert "SIDE" not in predictor["storage-initializer"] and predictor["proxy"] == {"SIDE"}, predictor
    assert "TR" in transformer["kserve-container"] and "TR_SIDE" not in transformer["kserve-container"], (
        transformer
    )
    assert transformer["proxy"] == {"TR_SIDE"}
    # a model with no env of its own does not take the sidecar's either
    bare = _isvc(
        {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://s/i"}, "containers": [sidecar]}
    )
    pod = next(
        o for k, o in _objects(bare).items() if k.endswith("-predictor") and k.startswith("Deployment")
    )
    (server,) = [c for c in pod["spec"]["template"]["spec"]["containers"] if c["name"] == "kserve-container"]
    assert "SIDE" not in {e["name"] for e in server.get("env", ())}, server


@pytest.mark.parametrize("ours", [True, False])
def test_a_transformers_declared_port_is_where_it_listens(ours: bool) -> None:
    """`containerPort: 9000` on the transformer's container: its `http` port (the Service and the probes use
    the name), the port our transformer is told (`--port`) or a custom image (`--http_port`), and the scrape
    port, as a custom predictor's declared port is."""
    container = (
        {"name": "kserve-container", "args": ["serving", "transform", "--transformer", "identity"]}
        if ours
        else {"name": "kserve-container", "image": "myrepo/my-transformer:1"}
    )
    container["ports"] = [{"containerPort": 9000, "name": "http1", "protocol": "TCP"}]
    doc = _isvc({"sklearn": {"storageUri": "pvc://store/iris"}}, {"containers": [container]})
    revision = Revision.from_spec(parse(doc))
    objects = _objects(doc)
    deployment = objects[f"Deployment/{revision.name}-transformer"]
    rendered = deployment["spec"]["template"]["spec"]["containers"][0]
    assert rendered["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    args = rendered["args"]
    assert args[args.index("--port" if ours else "--http_port") + 1] == "9000"
    probe = rendered["readinessProbe"]
    assert (probe.get("httpGet") or probe.get("tcpSocket"))["port"] == "http"
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9000"
    service = objects[f"Service/{revision.name}-transformer"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    for obj in (deployment, service):
        _validate(obj)


def test_service_labels_reach_the_deployments_and_pods_under_the_components_own() -> None:
    """KServe puts an InferenceService's `metadata.labels` on its components' objects and pods (team, cost
    centre, a NetworkPolicy's selector); a component's `labels` win over them, and ours over both."""
    doc = _isvc(
        {
            "labels": {"tier": "predictor-tier"},
            "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://m/x"},
        },
        transformer={"containers": [{"name": "kserve-container", "image": "me/t:1"}]},
    )
    doc["metadata"]["labels"] = {"team": "fraud", "tier": "service-tier", "serving.dev/isvc": "spoofed"}
    objects = _objects(doc)
    deployments = {
        o["metadata"]["labels"]["serving.dev/component"]: o
        for o in objects.values()
        if o["kind"] == "Deployment"
    }
    predictor, transformer = deployments["predictor"], deployments["transformer"]
    for deployment, tier in ((predictor, "predictor-tier"), (transformer, "service-tier")):
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pod_labels["team"] == "fraud" and pod_labels["tier"] == tier
        assert pod_labels["serving.dev/isvc"] == "iris"  # ours: the selector and the operator's lists
        assert deployment["metadata"]["labels"]["team"] == "fraud"
        assert deployment["metadata"]["labels"]["serving.dev/isvc"] == "iris"
        _validate(deployment)


def test_entry_services_are_valid_external_names() -> None:
    from serving.control.kubernetes.render import entry_services

    isvc = parse(_isvc({"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://m/x"}}))
    services = entry_services(isvc, "serving-router.serving-system.svc.cluster.local", None)
    assert [s["metadata"]["name"] for s in services] == ["iris", "iris-predictor"]
    for service in services:
        _validate(service)


def test_a_canary_beside_its_inferenceservice_renders_and_converts_as_written(tmp_path: Path) -> None:
    """`serving apply -f` takes both kinds in one file; render and convert take the same file (the Canary is
    ours already: the operator's controller reads it as written, in the namespace given), and a bad Canary is
    refused naming its field, as apply refuses it."""
    canary = ROOT / "examples/canary/sklearn-iris-canary.yaml"
    both = tmp_path / "both.yaml"
    both.write_text((ROOT / "examples/sklearn-iris.yaml").read_text() + "\n---\n" + canary.read_text())
    documents = read_converted([both], "ml")
    objects = render(documents, SETTINGS)
    assert [o["kind"] for o in objects] == ["InferenceService", "Deployment", "Service", "Canary"]
    written = yaml.safe_load(canary.read_text())
    assert objects[-1] == {**written, "metadata": {**written["metadata"], "namespace": "ml"}}
    converted = subprocess.run(
        [sys.executable, "-m", "serving.cli", "convert", "-f", str(both)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert [d["kind"] for d in yaml.safe_load_all(converted)] == ["InferenceService", "Canary"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(canary.read_text().replace("stepWeights: [10, 25, 50]", "stepWeights: [10, 250]"))
    with pytest.raises(ServingError, match=r"bad.yaml: spec.analysis: step weights must rise"):
        read_converted([bad])
