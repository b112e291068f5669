"""A ServingRuntime's fields are in effect, or said: on Kubernetes (`serving render` and the operator, one render
code) its pod fields, labels, annotations, main container fields and other containers go into the predictor's pod
with KServe's priority (predictor > InferenceService > runtime); on `serving up` each field with nothing to act on
is warned by name at apply; a misspelt container key, a placeholder KServe does not fill, or another model
server's command line is refused at apply; its args get `model.args`' checks (the backend's own flags dropped
with a warning, either spelling); KServe's placeholders are filled in from the InferenceService's metadata.

Real parts throughout (render, the operator's backend, `serving up` in-process with its model servers, a real
model server process, models trained here); only the Kubernetes API server is emulated (tests/test_operator.py).
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from serving.commands.render import render
from serving.control.kubernetes.render import RenderSettings
from serving.control.local.processes import ProcessSpec, Replica, ReplicaState
from serving.runtime_effects import runtime_warnings
from serving.servingruntime import (
    RuntimeSpecError,
    ServiceMeta,
    bind,
    parse_runtime,
    runtime_env,
    serve_flags,
)
from tests.test_operator import cluster  # noqa: F401  (the emulated API server fixture)

RUNTIME: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ServingRuntime",
    "metadata": {"name": "full-rt", "namespace": "ml"},
    "spec": {
        "supportedModelFormats": [{"name": "sklearn", "version": "1", "autoSelect": True, "priority": 5}],
        "protocolVersions": ["v1", "v2"],
        "labels": {"only-runtime": "rt", "shared": "rt", "isvc-and-rt": "rt"},
        "annotations": {"rt.example/only": "rt", "rt.example/shared": "rt"},
        "nodeSelector": {"gpu": "true", "zone": "rt"},
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "imagePullSecrets": [{"name": "rtsecret"}],
        "volumes": [{"name": "rtvol", "emptyDir": {}}],
        "builtInAdapter": {"serverType": "mlserver", "runtimeManagementPort": 8001},
        "containers": [
            {
                "name": "kserve-container",
                "image": "registry.example/echo:1",
                "args": ["--model_name={{.Name}}", "--max-batch-size", "4"],
                "env": [{"name": "RTENV", "value": "ns={{.Namespace}} team={{.Labels.team}}"}],
                "resources": {"limits": {"cpu": "3", "memory": "3Gi"}, "requests": {"cpu": "1"}},
                "volumeMounts": [{"name": "rtvol", "mountPath": "/rt"}],
                "readinessProbe": {"httpGet": {"path": "/v2/health/ready"}, "periodSeconds": 7},
                "livenessProbe": {"httpGet": {"path": "/rt-live"}},
            },
            {"name": "sidecar", "image": "busybox", "args": ["sleep", "infinity"]},
        ],
    },
}

ISVC: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {
        "name": "iris",
        "namespace": "ml",
        "labels": {"team": "blue", "shared": "isvc", "isvc-and-rt": "isvc"},
        "annotations": {"rt.example/shared": "isvc"},
    },
    "spec": {
        "predictor": {
            "labels": {"shared": "predictor"},
            "nodeSelector": {"zone": "predictor"},
            "model": {
                "modelFormat": {"name": "sklearn"},
                "storageUri": "s3://models/iris",
                "resources": {"limits": {"memory": "4Gi"}},
                "livenessProbe": {"httpGet": {"path": "/v2/health/live"}, "periodSeconds": 11},
            },
        }
    },
}


def _deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "Deployment")


def _container(pod: dict[str, Any], name: str = "kserve-container") -> dict[str, Any]:
    return next(c for c in pod["containers"] if c["name"] == name)


def test_render_merges_the_runtime_into_the_predictor_pod_with_kserves_priority() -> None:
    objects = render([copy.deepcopy(RUNTIME), copy.deepcopy(ISVC)], RenderSettings())
    deployment = _deployment(objects)
    template = deployment["spec"]["template"]
    labels, annotations, pod = (
        template["metadata"]["labels"],
        template["metadata"]["annotations"],
        template["spec"],
    )
    # labels and annotations: predictor > InferenceService > runtime
    assert (labels["only-runtime"], labels["isvc-and-rt"], labels["shared"]) == ("rt", "isvc", "predictor")
    assert deployment["metadata"]["labels"]["only-runtime"] == "rt"
    assert (annotations["rt.example/only"], annotations["rt.example/shared"]) == ("rt", "isvc")
    # pod fields: merged, the predictor's own winning what both set
    assert pod["nodeSelector"] == {"gpu": "true", "zone": "predictor"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert pod["affinity"] == RUNTIME["spec"]["affinity"]
    assert pod["imagePullSecrets"] == [{"name": "rtsecret"}]
    assert {"name": "rtvol", "emptyDir": {}} in pod["volumes"]
    # the main container: the runtime's fields unless the model sets them (resources: key by key)
    main = _container(pod)
    assert main["resources"] == {"limits": {"cpu": "3", "memory": "4Gi"}, "requests": {"cpu": "1"}}
    assert {"name": "rtvol", "mountPath": "/rt"} in main["volumeMounts"]
    assert main["readinessProbe"] == {
        "httpGet": {"path": "/v2/health/ready", "port": "http"},
        "periodSeconds": 7,
    }
    assert main["livenessProbe"]["periodSeconds"] == 11  # the model's probe wins
    assert {"name": "RTENV", "value": "ns=ml team=blue"} in main["env"]  # placeholders from the isvc
    assert main["args"][main["args"].index("--max-batch-size") + 1] == "4"
    assert _container(pod, "sidecar") == {
        "name": "sidecar",
        "image": "busybox",
        "args": ["sleep", "infinity"],
        "resources": RenderSettings().default_resources,
    }
    for obj in objects[2:]:
        kubernetes_validate.validate(obj, "1.30", strict=True)


def test_a_revision_no_runtime_fits_is_not_rendered_as_the_operator_creates_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """README: when no runtime fits, nothing is rendered for that revision (the operator skips it too); render
    printed a Deployment and Service for it anyway, with our own server in place of the runtime asked for."""
    isvc = copy.deepcopy(ISVC)
    isvc["spec"]["predictor"]["model"].update(
        runtime="full-rt", modelFormat={"name": "sklearn", "version": "9"}
    )
    objects = render([copy.deepcopy(RUNTIME), isvc], RenderSettings())
    assert [o["kind"] for o in objects] == ["ServingRuntime", "InferenceService"]
    assert "nothing is rendered for revision iris-" in capsys.readouterr().err


def test_the_runtime_container_ports_place_the_model_servers_listeners_unless_the_model_gives_its_own() -> (
    None
):
    runtime = copy.deepcopy(RUNTIME)
    runtime["spec"]["containers"][0]["ports"] = [{"name": "http1", "containerPort": 9000, "protocol": "TCP"}]
    main = _container(
        _deployment(render([runtime, copy.deepcopy(ISVC)], RenderSettings()))["spec"]["template"]["spec"]
    )
    assert main["args"][main["args"].index("--port") + 1] == "9000"
    assert {"name": "http", "containerPort": 9000, "protocol": "TCP"} in main["ports"]
    isvc = copy.deepcopy(ISVC)
    isvc["spec"]["predictor"]["model"]["ports"] = [{"name": "http1", "containerPort": 8085}]
    main = _container(_deployment(render([runtime, isvc], RenderSettings()))["spec"]["template"]["spec"])
    assert main["args"][main["args"].index("--port") + 1] == "8085"


def test_runtime_fields_with_no_local_effect_are_named_and_kubernetes_says_only_what_it_ignores() -> None:
    runtime = parse_runtime(copy.deepcopy(RUNTIME))
    local = runtime_warnings(runtime, local=True)
    for field in (
        "spec.labels",
        "spec.annotations",
        "spec.nodeSelector",
        "spec.tolerations",
        "spec.affinity",
        "spec.imagePullSecrets",
        "spec.volumes",
        "spec.containers[0].resources",
        "spec.containers[0].volumeMounts",
        "spec.containers[0].readinessProbe",
        "spec.containers[1] (sidecar)",
        "spec.builtInAdapter",
    ):
        assert any(w.startswith(field + ":") for w in local), (field, local)
    assert runtime_warnings(runtime, local=False) == [
        "spec.builtInAdapter: accepted; no effect: a ModelMesh (multi-model serving) setting, which KServe's "
        "single-model serving ignores too"
    ]
    from serving.control.kubernetes.documents import (
        cluster_warnings,
    )  # render, convert, apply --backend kubernetes

    assert cluster_warnings(copy.deepcopy(RUNTIME)) == runtime_warnings(runtime, local=False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"agrs": ["--runtime=x"]},
            "spec.containers.0.agrs: Extra inputs are not permitted; did you mean 'args'?",
        ),
        (
            {"comand": ["x"]},
            "spec.containers.0.comand: Extra inputs are not permitted; did you mean 'command'?",
        ),
        (
            {"command": ["tritonserver"]},
            "spec.containers[0].command: ['tritonserver'] is not our model server",
        ),
        (
            {"args": ["tritonserver", "--model-store=/mnt/models"]},
            "spec.containers[0].args: 'tritonserver' is another model server's command",
        ),
        (
            {"args": ["--enable_docs_url=true"]},
            "spec.containers[0].args: unrecognized arguments: --enable_docs_url",
        ),
        (
            {"env": [{"name": "X", "value": "{{.Spec.Foo}}"}]},
            "spec.containers[0].env[0].value: {{.Spec.Foo}} is not a placeholder KServe fills in here",
        ),
        (
            {"args": ["--model-version={{ .UID }}"]},
            "spec.containers[0].args[0]: {{ .UID }} is not a placeholder",
        ),
    ],
)
def test_a_runtime_that_is_not_ours_or_misspelt_is_refused_naming_the_field(
    change: dict, message: str
) -> None:
    doc = copy.deepcopy(RUNTIME)
    doc["spec"]["containers"][0].update(change)
    with pytest.raises(RuntimeSpecError) as refused:
        parse_runtime(doc)
    assert refused.value.message.startswith(f"ServingRuntime full-rt: {message}"), refused.value.message


def test_kserves_own_triton_runtime_is_refused_saying_ours_is_built_in() -> None:
    triton = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": "kserve-tritonserver"},
        "spec": {
            "supportedModelFormats": [{"name": "onnx", "version": "1", "autoSelect": True, "priority": 1}],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "t",
                    "args": ["tritonserver", "--model-store=/mnt/models"],
                }
            ],
        },
    }
    with pytest.raises(
        RuntimeSpecError, match="kserve-tritonserver is built in here, serving onnx with our model"
    ):
        parse_runtime(triton)


def test_runtime_args_get_the_model_args_translation_and_kserves_placeholders() -> None:
    doc = copy.deepcopy(RUNTIME)
    doc["spec"]["containers"][0]["args"] = [
        "--model_name={{.Name}}",
        "--grpc-port=52705",
        "--model-dir=/elsewhere",
        "--model_dir=/mnt/models",  # KServe's standard value: dropped quietly
        '--runtime={{index .Annotations "runtime.example/class"}}',
        "--model-version={{.Labels.version}}",
    ]
    runtime = parse_runtime(doc)
    assert runtime_warnings(runtime, local=False)[:2] == [
        "spec.containers[0].args: --grpc-port is dropped: the backend sets the ports (8080 on Kubernetes)",
        "spec.containers[0].args: --model-dir is dropped: the backend sets the model folder (from storageUri)",
    ]
    meta = ServiceMeta("iris", "ml", {"version": "7"}, {"runtime.example/class": "ranker:Ranker"})
    assert serve_flags(runtime, meta) == ["--model-version=7"]
    from serving.servingruntime import runtime_implementation

    assert runtime_implementation(bind(runtime, meta), "sklearn") == "ranker:Ranker"
    assert serve_flags(runtime, ServiceMeta("iris")) == ["--model-version=<no value>"]  # Go's missing key
    assert dict((e.name, e.value) for e in runtime_env(runtime, meta))["RTENV"] == "ns=ml team=<no value>"


@pytest.mark.asyncio
async def test_serving_up_fills_the_placeholders_from_the_services_metadata(tmp_path: Path) -> None:
    from serving.control.local.control_plane import LocalControlPlane
    from serving.control.local.state import StateStore
    from serving.spec import parse
    from tests.test_control_local import FakeReplica, Sink, _until

    model = tmp_path / "iris"
    model.mkdir()
    (model / "model.joblib").write_bytes(b"")
    runtime = {
        **RUNTIME,
        "metadata": {"name": "tmpl-rt", "namespace": "team-a"},
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "autoSelect": False}],
            "containers": [
                {
                    "args": ["--model-version={{.Labels.team}}-{{.Namespace}}"],
                    "env": [{"name": "ANN", "value": '{{index .Annotations "x.example/y"}}'}],
                }
            ],
        },
    }
    doc = copy.deepcopy(ISVC)
    doc["metadata"] = {
        "name": "tmpl",
        "namespace": "team-a",
        "labels": {"team": "blue"},
        "annotations": {"x.example/y": "hello"},
    }
    doc["spec"]["predictor"] = {
        "model": {"modelFormat": {"name": "sklearn"}, "runtime": "tmpl-rt", "storageUri": str(model)}
    }
    FakeReplica.instances.clear()
    plane = LocalControlPlane(StateStore(tmp_path / "state"), Sink(), replica_factory=FakeReplica)
    await plane.start()
    try:
        await plane.apply_runtimes([runtime])
        await plane.apply(parse(doc), doc)
        await _until(lambda: bool(FakeReplica.instances))
        spec = FakeReplica.instances[0].spec
        assert "--model-version=blue-team-a" in spec.args, spec.args
        assert spec.env["ANN"] == "hello"
    finally:
        await plane.shutdown()


def test_serving_up_warns_at_apply_refuses_misspelt_runtimes_and_serves_with_dropped_flags(
    tmp_path: Path,
) -> None:
    """Through a real `serving up`: a runtime's fields with no local meaning are warned by name; one with a
    misspelt container key or another server's args is refused (the CLI's error status, nothing changed); a runtime whose args
    carry `--grpc-port=N` and `--model-dir=...` serves its service from storageUri (flags dropped, warned)."""
    from tests.support import train_iris_sklearn
    from tests.up_support import cli, isvc_yaml, predict, serving_up, wait_for_traffic

    model = train_iris_sklearn(tmp_path / "models" / "iris").parent
    state = tmp_path / "state"
    full = copy.deepcopy(RUNTIME)
    full["metadata"] = {"name": "full-rt"}
    typo = copy.deepcopy(full)
    typo["spec"]["containers"][0]["agrs"] = typo["spec"]["containers"][0].pop("args")
    ports = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": "gp-rt"},
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "version": "1"}],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "x",
                    "args": ["--model_name={{.Name}}", "--grpc-port=52705", "--model-dir=/nowhere"],
                }
            ],
        },
    }
    import yaml

    with serving_up(state) as server, server.client() as client:
        (tmp_path / "full.yaml").write_text(yaml.safe_dump(full))
        said = cli(server, state, "apply", "-f", str(tmp_path / "full.yaml")).stdout
        assert "servingruntime/full-rt created" in said
        for field in ("spec.nodeSelector", "spec.containers[0].resources", "spec.containers[1] (sidecar)"):
            assert f"  warning: {field}: accepted; no effect on the local backend; on Kubernetes:" in said, (
                said
            )

        (tmp_path / "typo.yaml").write_text(yaml.safe_dump(typo))
        refused = cli(server, state, "apply", "-f", str(tmp_path / "typo.yaml"), check=False)
        assert refused.returncode == 2  # the CLI's error status, as for a refused InferenceService
        assert (
            "spec.containers.0.agrs: Extra inputs are not permitted; did you mean 'args'?" in refused.stderr
        )

        service = isvc_yaml("gp-user", model).replace(
            "      modelFormat:", "      runtime: gp-rt\n      modelFormat:"
        )
        (tmp_path / "gp.yaml").write_text(yaml.safe_dump(ports) + "---\n" + service)
        said = cli(server, state, "apply", "-f", str(tmp_path / "gp.yaml")).stdout
        assert "warning: spec.containers[0].args: --grpc-port is dropped" in said, said
        assert "warning: spec.containers[0].args: --model-dir is dropped" in said, said
        wait_for_traffic(server, state, "gp-user", lambda t: sorted(t.values()) == [100])
        assert predict(client, "gp-user").json()["predictions"][0] in (0, 1, 2)


@pytest.mark.asyncio
@pytest.mark.e2e  # a real model server process
async def test_a_replica_with_grpc_port_equals_spelling_finds_its_http_port(tmp_path: Path) -> None:
    """`--grpc-port=0` opens a gRPC listener beside HTTP, as `--grpc-port 0` does: the supervisor must take the
    port that answers HTTP, or the replica never becomes ready."""
    (tmp_path / "m").mkdir()
    args = ["serve", "--model-dir", str(tmp_path / "m"), "--runtime", "tests.runtimes_for_tests:EchoRuntime"]
    replica = Replica("r-0", ProcessSpec([*args, "--name", "m", "--grpc-port=0"]), tmp_path)
    replica.start(lambda: None)
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while replica.state is not ReplicaState.READY:
            assert asyncio.get_running_loop().time() < deadline, f"not ready: {replica.state} {replica.port}"
            await asyncio.sleep(0.1)
    finally:
        await replica.stop()


def test_the_operator_renders_the_runtime_into_the_predictor_pod(cluster, tmp_path: Path) -> None:  # noqa: F811
    """The operator (real backend, kubernetes client, emulated API server) shares render's merge: the watched
    runtime's pod fields, container fields, sidecar and placeholders (from the live InferenceService's labels)."""
    import yaml

    from serving.control.kubernetes.backend import KubernetesBackend, OperatorConfig
    from serving.control.kubernetes.documents import read_converted

    _, api = cluster
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump_all([copy.deepcopy(RUNTIME), copy.deepcopy(ISVC)]))
    runtime, isvc = read_converted([path])
    backend = KubernetesBackend(api, OperatorConfig(drain_s=0.0))
    backend.start()
    backend.runtimes.event(runtime, "ADDED")
    api.apply({**isvc, "metadata": {**isvc["metadata"], "uid": "uid-iris", "resourceVersion": "1"}})
    backend.reconcile("ml", "iris")
    (deployment,) = api.list("Deployment", "ml", {"serving.dev/isvc": "iris"})
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu": "true", "zone": "predictor"}
    assert pod["imagePullSecrets"] == [{"name": "rtsecret"}]
    assert [c["name"] for c in pod["containers"]] == ["kserve-container", "sidecar"]
    main = _container(pod)
    assert {"name": "RTENV", "value": "ns=ml team=blue"} in main["env"]
    assert main["resources"]["limits"] == {"cpu": "3", "memory": "4Gi"}
    assert deployment["spec"]["template"]["metadata"]["labels"]["only-runtime"] == "rt"
