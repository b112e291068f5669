"""What `serving render` / `convert` (and `apply --backend kubernetes`, same code) say about a spec, and where
they refuse it as `serving apply` does: accepted means in effect on Kubernetes, or said by name.

- an apiVersion `serving apply` refuses is refused by render and convert with the same message (one check,
  shared); KFServing's old KFService / v1alpha2 / serving.kubeflow.org documents are named as such, with what to
  write instead (not passed through as Kubernetes objects of another group).
- every field the table (serving/spec_effects.py) gives no Kubernetes effect is named by render and convert,
  with why and what KServe does; a `logger` without a url is said to depend on the chart's default sink.
- KServe's and Knative's control annotations on a component (`spec.predictor.annotations`...) are named, locally
  and by render: here they are read on `metadata.annotations` only (KServe merges them per component).
- Knative's `networking.knative.dev/visibility` label is warned as KServe's and `serving.knative.dev/`'s are.
- `autoScaling` with a Resource target of type AverageValue is refused naming target.type (not
  "averageUtilization: a positive number is required"), by apply and render alike.
- and the one refusal of `serving apply` here: a custom transformer image, which `serving up` cannot run (as a
  custom predictor image is refused), instead of a revision that fails later.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from serving.control.documents import read_documents
from serving.control.kubernetes.documents import read_converted
from serving.errors import ServingError
from serving.spec import parse
from serving.spec_effects import FIELD_EFFECTS, NOT_ON_KUBERNETES
from tests.inprocess import run_cli
from tests.support import train_iris_sklearn
from tests.up_support import cli, serving_up

PREDICTOR = "spec:\n  predictor:\n    sklearn:\n      storageUri: s3://m/iris\n"
OLD_KFSERVICE = """
apiVersion: serving.kubeflow.org/v1alpha1
kind: KFService
metadata: {name: kfs}
spec:
  default:
    sklearn: {modelUri: "gs://x"}
"""


def _isvc(api: str | None) -> str:
    head = f"apiVersion: {api}\n" if api is not None else ""
    return head + "kind: InferenceService\nmetadata: {name: api}\n" + PREDICTOR


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            _isvc("totally.wrong/v9"),
            "apiVersion: 'totally.wrong/v9' is not supported; use serving.kserve.io/v1beta1",
        ),
        (_isvc(None), "apiVersion: required; use serving.kserve.io/v1beta1"),
        (_isvc("serving.kubeflow.org/v1beta1"), "KFServing's API group, renamed serving.kserve.io"),
        (_isvc("serving.kserve.io/v1alpha2"), "is the old KFServing API"),
        (
            OLD_KFSERVICE,
            "(kind KFService) is the old KFServing API, not served here; write it as apiVersion: "
            "serving.kserve.io/v1beta1, kind: InferenceService",
        ),
    ],
    ids=["other-group", "missing", "kfserving-group", "v1alpha2", "kfservice"],
)
def test_render_and_convert_refuse_the_api_version_apply_refuses(
    tmp_path: Path, text: str, said: str
) -> None:
    path = tmp_path / "isvc.yaml"
    path.write_text(text)
    with pytest.raises(ServingError) as applied:  # serving apply, up -f, delete -f
        read_documents(path, lambda _: None)
    with pytest.raises(ServingError) as converted:  # serving render, convert, apply --backend kubernetes
        read_converted([path])
    assert said in applied.value.message
    assert converted.value.message == applied.value.message
    for command in ("render", "convert"):
        result = run_cli(command, "-f", str(path))
        assert result.returncode != 0 and said in result.stderr and not result.stdout, result


def test_a_supported_api_version_still_renders(tmp_path: Path) -> None:
    path = tmp_path / "isvc.yaml"
    path.write_text(_isvc("serving.kserve.io/v1beta1"))
    result = run_cli("render", "-f", str(path))
    assert result.returncode == 0 and "kind: Deployment" in result.stdout, result


NOTHING_ON_KUBERNETES = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: k8s-none}
spec:
  predictor:
    batcher: {maxBatchSize: 8, timeout: 20}
    logger: {mode: request}
    model:
      modelFormat: {name: sklearn}
      storageUri: s3://models/iris
      runtimeVersion: "1.5.0"
      name: my-model-container
  transformer:
    canaryTrafficPercent: 10
    containerConcurrency: 4
    timeout: 30
    batcher: {maxBatchSize: 4}
    containers:
    - name: kserve-container
      image: kserve/image-transformer:latest
      args: [--model_name, mnist]
      ports: [{containerPort: 9000, name: http1}]
"""


def test_every_field_without_a_kubernetes_effect_has_a_reason() -> None:
    assert {e.path for e in FIELD_EFFECTS if not e.kubernetes} == set(NOT_ON_KUBERNETES)


def test_render_and_convert_name_each_field_that_does_nothing_on_kubernetes(tmp_path: Path) -> None:
    """transformer.containerConcurrency, timeout, canaryTrafficPercent, batcher, predictor.batcher.timeout,
    model.runtimeVersion, model.name... rendered silently before; now each is one line on stderr."""
    path = tmp_path / "none.yaml"
    path.write_text(NOTHING_ON_KUBERNETES)
    for command in ("render", "convert"):
        result = run_cli(command, "-f", str(path))
        assert result.returncode == 0, result
        for field, reason in NOT_ON_KUBERNETES.items():
            line = f"warning: k8s-none: spec.{field}: accepted; no effect on Kubernetes: {reason}"
            assert line in result.stderr.splitlines(), (field, result.stderr)
        assert "spec.predictor.logger: no url: on Kubernetes events go to the chart's" in result.stderr
        assert "spec.transformer.logger" not in result.stderr
    plain = tmp_path / "plain.yaml"
    plain.write_text(_isvc("serving.kserve.io/v1beta1"))
    result = run_cli("render", "-f", str(plain))
    assert result.returncode == 0 and "no effect on Kubernetes" not in result.stderr, result


COMPONENT_CONTROLS = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: compann}
spec:
  predictor:
    annotations:
      autoscaling.knative.dev/min-scale: "2"
      autoscaling.knative.dev/target: "1"
      serving.kserve.io/autoscalerClass: none
      serving.kserve.io/stop: "true"
      networking.knative.dev/ingress.class: x
      team: ml
    model: {modelFormat: {name: sklearn}, storageUri: s3://b/iris}
  transformer:
    annotations: {serving.dev/placement: separate, serving.kserve.io/metrics: rps}
    containers: [{name: kserve-container, args: [serving, transform]}]
"""


def test_control_annotations_on_a_component_are_named_locally_and_by_render(tmp_path: Path) -> None:
    """They were only copied to the pods, and the local warning said "on Kubernetes: pod template annotations",
    as if they worked; KServe reads the scaling ones per component, here they are read on metadata only."""
    path = tmp_path / "comp.yaml"
    path.write_text(COMPONENT_CONTROLS)
    scaling = (
        ": not read on a component here, where KServe reads it for this component over metadata.annotations"
    )
    expected = {
        "spec.predictor.annotations.autoscaling.knative.dev/min-scale": scaling,
        "spec.predictor.annotations.autoscaling.knative.dev/target": scaling,
        "spec.predictor.annotations.serving.kserve.io/autoscalerClass": scaling,
        "spec.transformer.annotations.serving.kserve.io/metrics": scaling,
        "spec.predictor.annotations.serving.kserve.io/stop": ": read on metadata.annotations only, as KServe",
        "spec.predictor.annotations.networking.knative.dev/ingress.class": ": not supported here; no effect",
    }
    local = parse(read_documents(path)[0]).warnings()
    result = run_cli("render", "-f", str(path))
    assert result.returncode == 0, result
    for key, said in expected.items():
        assert any(w.startswith(key + said) for w in local), (key, local)
        assert f"warning: compann: {key}{said}" in result.stderr, (key, result.stderr)
    for quiet in ("annotations.team", "annotations.serving.dev/placement"):  # a pod annotation; ours, read
        assert quiet not in result.stderr and not [w for w in local if quiet in w], quiet
    row = next(w for w in local if w.startswith("spec.predictor.annotations: accepted"))
    assert "controls are read on metadata.annotations" in row, row


def test_knatives_networking_visibility_label_is_warned(tmp_path: Path) -> None:
    path = tmp_path / "vis.yaml"
    path.write_text(
        _isvc("serving.kserve.io/v1beta1").replace(
            "metadata: {name: api}",
            "metadata: {name: api, labels: {networking.knative.dev/visibility: cluster-local}}",
        )
    )
    local = parse(read_documents(path)[0]).warnings()
    assert any(
        w.startswith("metadata.labels: networking.knative.dev/visibility: cluster-local") for w in local
    )
    result = run_cli("render", "-f", str(path))
    assert (
        "api: metadata.labels.networking.knative.dev/visibility: cluster-local: not enforced" in result.stderr
    )


CUSTOM_TRANSFORMER = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: trport2}
spec:
  transformer:
    containers:
      - name: kserve-container
        image: myrepo/my-transformer:1
        ports: [{containerPort: 9000, name: http1, protocol: TCP}]
  predictor:
    sklearn: {storageUri: MODEL}
"""


def test_serving_apply_refuses_a_custom_transformer_image_as_a_custom_predictor(tmp_path: Path) -> None:
    """It was accepted with only `containers[].image: no effect` warned, and its revision failed afterwards."""
    model = train_iris_sklearn(tmp_path / "model")
    path = tmp_path / "custom-transformer.yaml"
    path.write_text(CUSTOM_TRANSFORMER.replace("MODEL", str(model)))
    state = tmp_path / "state"
    with serving_up(state) as server:
        refused = cli(server, state, "apply", "-f", str(path), check=False)
        said = refused.stderr + refused.stdout
        assert refused.returncode != 0, said
        assert "spec.transformer.containers[0]: the local backend runs `serving transform ...`" in said, said
        assert "Kubernetes backend only" in said
        assert "trport2" not in cli(server, state, "get").stdout  # nothing recorded
        ours = CUSTOM_TRANSFORMER.replace("MODEL", str(model)).replace(
            "image: myrepo/my-transformer:1", "args: [serving, transform, --transformer, identity]"
        )
        path.write_text(ours)
        assert cli(server, state, "apply", "-f", str(path)).returncode == 0  # ours is run


AVERAGE_VALUE = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: as-res, annotations: {serving.kserve.io/autoscalerClass: keda}}
spec:
  predictor:
    minReplicas: 1
    maxReplicas: 3
    autoScaling:
      metrics: [{type: Resource, resource: {name: memory, target: {type: AverageValue, averageValue: 200Mi}}}]
    model: {modelFormat: {name: sklearn}, storageUri: s3://b/iris}
"""


def test_an_average_value_target_is_said_to_be_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "as-res.yaml"
    path.write_text(AVERAGE_VALUE)
    said = (
        "spec.predictor.autoScaling.metrics[0].resource.target.type: 'AverageValue' is not supported here (KServe's "
        "HPA takes AverageValue, an amount of memory per pod such as 200Mi); this autoscaler and the rendered HPA "
        "scale on Utilization"
    )
    with pytest.raises(ServingError, match=re.escape(said)):
        read_documents(path, lambda _: None)
    result = run_cli("render", "-f", str(path))
    assert result.returncode != 0 and said in result.stderr, result
    path.write_text(
        AVERAGE_VALUE.replace(
            "type: AverageValue, averageValue: 200Mi", "type: Utilization, averageUtilization: 60"
        )
    )
    assert run_cli("render", "-f", str(path)).returncode == 0


@pytest.mark.parametrize(
    ("metric", "kind", "refused"),
    [
        ("cpu", "Utilization", None),
        ("memory", "Utilization", None),
        ("concurrency", "AverageValue", None),
        ("rps", "AverageValue", None),
        ("memory", "AverageValue", "'AverageValue' is not supported for memory here (an absolute amount"),
        ("cpu", "Value", "'Value' is not supported for cpu here"),
        (
            "concurrency",
            "Utilization",
            "'Utilization' is not supported for concurrency: its scaleTarget is an",
        ),
    ],
)
def test_scale_metric_type_is_kserves_field_accepted_where_it_says_what_scale_target_means(
    tmp_path: Path, metric: str, kind: str, refused: str | None
) -> None:
    """KServe's `scaleMetricType` (its KEDA scaler reads it) was refused as an unknown field, a typo of
    scaleMetric (audit /tmp/audit-kserve4 M2): now taken where it names the target this autoscaler applies."""
    path = tmp_path / "smt.yaml"
    path.write_text(
        f"""
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {{name: smt}}
spec:
  predictor:
    maxReplicas: 3
    scaleMetric: {metric}
    scaleMetricType: {kind}
    scaleTarget: 80
    model: {{modelFormat: {{name: sklearn}}, storageUri: s3://b/iris}}
"""
    )
    result = run_cli("render", "-f", str(path))
    if refused is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0 and f"spec.predictor.scaleMetricType: {refused}" in result.stderr, (
            result
        )


def test_pod_annotations_are_warned_with_their_own_reason_prometheus_ones_with_prometheus() -> None:
    """Other annotations were all warned with the Prometheus reason (audit /tmp/audit-kserve4 L5)."""
    from serving.spec import parse

    annotations = {"sidecar.istio.io/inject": "false", "prometheus.kserve.io/port": "8080"}
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "a", "annotations": annotations},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "/m"}}},
    }
    [warning] = [w for w in parse(doc).warnings() if w.startswith("metadata.annotations")]
    prometheus, other = warning.removeprefix("metadata.annotations: ").split("; sidecar", 1)
    other = "sidecar" + other
    assert prometheus.startswith("prometheus.kserve.io/port: ") and "/metrics federates" in prometheus
    assert (
        other.startswith("sidecar.istio.io/inject: ")
        and "Prometheus" not in other
        and "prometheus" not in other
    )
