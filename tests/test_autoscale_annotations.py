"""Scaling that KServe YAML asks for in ways beyond minReplicas/maxReplicas: no maxReplicas (KServe's Knative
mode: no upper bound; here `serving up --default-max-replicas`), the InferenceService's annotations
(`serving.kserve.io/autoscalerClass`, `deploymentMode`, `metrics`, `targetUtilizationPercentage`,
`enable-tag-routing`; Knative's `class`, `min-scale`, `max-scale`, `activation-scale`, `target`, `metric`) and
what `serving render` cannot carry (minReplicas 0 without KEDA). Each one takes effect on the real
LocalControlPlane (fake replicas, a load source the test sets, a stepping clock: tests/test_autoscaler_local.py)
and in the rendered objects, or is warned about by name at apply / on render's stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from serving.cli import build_parser
from serving.commands.render import render
from serving.commands.up import build_app
from serving.control.kubernetes.render import RenderSettings, revision_objects
from serving.control.local.api import build_control_app
from serving.control.local.control_plane import LocalControlPlane
from serving.control.local.state import StateStore
from serving.control.reconcile import Observed, plan
from serving.router.load import RevisionLoad
from serving.spec import SpecError, parse
from tests.inprocess import run_cli
from tests.test_autoscaler_local import SteppingClock, _doc
from tests.test_control_local import FakeReplica, Sink, _until

KEDA = RenderSettings(keda_prometheus_url="http://prometheus.monitoring:9090")
CLASS = "serving.kserve.io/autoscalerClass"


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    FakeReplica.instances.clear()
    FakeReplica.failing.clear()
    path = tmp_path / "model"
    path.mkdir()
    (path / "model.joblib").write_bytes(b"")
    return path


def _plane(tmp_path: Path, sink: Sink, load: RevisionLoad, cap: int) -> LocalControlPlane:
    control = LocalControlPlane(
        StateStore(tmp_path / "state"),
        sink,
        replica_factory=FakeReplica,
        load=load,
        autoscale_interval_s=0.01,
        default_max_replicas=cap,
    )
    control.autoscalers.clock = SteppingClock()
    return control


def _ready(sink: Sink) -> list[int]:
    return [n for _, n in sink.arms().values()]


def _running() -> int:
    return sum(1 for r in FakeReplica.instances if not r.stopped)


def _desired(control: LocalControlPlane) -> int:
    status = control.get("default", "iris").status
    return int(status["components"]["predictor"]["desiredReplicas"])


PLAIN = RenderSettings()


def _kinds(doc: dict[str, Any], settings: RenderSettings = PLAIN) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in render([doc], settings)}


# -- 1. no maxReplicas: between minReplicas and the local cap ---------------------------------------------------


@pytest.mark.asyncio
async def test_no_max_replicas_scales_up_to_the_local_cap_and_back(tmp_path: Path, model: Path) -> None:
    """KServe's kpa-autoscaler example (scaleTarget 1, concurrency, no maxReplicas): 5 in flight asks for
    ceil(5 / 0.7) = 8 replicas; `--default-max-replicas 3` holds it at 3."""
    sink, load = Sink(), RevisionLoad()
    control = _plane(tmp_path, sink, load, cap=3)
    await control.start()
    try:
        doc = _doc(model, scaleTarget=1, scaleMetric="concurrency")
        isvc = parse(doc)
        assert isvc.warnings() == []  # in effect: nothing to warn about
        await control.apply(isvc, doc)
        await _until(lambda: _ready(sink) == [1])
        (revision,) = sink.arms()
        load.in_flight[("default", revision)] = 5
        await _until(lambda: _ready(sink) == [3])
        scaler = control.autoscalers.scalers[("default", revision)]
        assert control.autoscalers.tick(("default", revision), scaler).desired == 3 and _desired(control) == 3
        assert _running() == 3
        load.in_flight[("default", revision)] = 0
        await _until(lambda: _ready(sink) == [1] and _running() == 1, timeout_s=10)
    finally:
        await control.shutdown()


@pytest.mark.asyncio
async def test_no_scaling_fields_autoscale_on_concurrency_100_as_knative_does(
    tmp_path: Path, model: Path
) -> None:
    """Neither scaleTarget nor maxReplicas: Knative's default, a concurrency target of 100 (x 0.7 utilization):
    150 in flight -> ceil(150 / 70) = 3 replicas; an explicit maxReplicas is not capped by the default."""
    sink, load = Sink(), RevisionLoad()
    control = _plane(tmp_path, sink, load, cap=4)
    await control.start()
    try:
        doc = _doc(model)
        await control.apply(parse(doc), doc)
        await _until(lambda: _ready(sink) == [1])
        (revision,) = sink.arms()
        load.in_flight[("default", revision)] = 150
        await _until(lambda: _ready(sink) == [3])
        bounded = _doc(model, maxReplicas=6)  # above the cap of 4: the spec wins
        await control.apply(parse(bounded), bounded)
        load.in_flight[("default", revision)] = 400  # 400 / 70 -> 6
        await _until(lambda: _ready(sink) == [6])
    finally:
        await control.shutdown()


def test_serving_up_default_max_replicas_flag_reaches_the_control_plane(tmp_path: Path) -> None:
    parser = build_parser(["up"])
    args = parser.parse_args(["up", "--state-dir", str(tmp_path), "--default-max-replicas", "2"])
    router = build_app(args, replica_factory=FakeReplica)
    control = router.ready_check.__self__  # type: ignore[attr-defined]  # the bound LocalControlPlane.ready
    assert isinstance(control, LocalControlPlane) and control.default_max_replicas == 2
    default = build_app(
        parser.parse_args(["up", "--state-dir", str(tmp_path / "b")]), replica_factory=FakeReplica
    )
    assert default.ready_check.__self__.default_max_replicas >= 1  # type: ignore[attr-defined]  # the CPU count
    refused = run_cli("up", "--state-dir", str(tmp_path), "--default-max-replicas", "0")
    assert (
        refused.returncode == 2
        and "--default-max-replicas" in refused.stderr
        and "1 to 1000" in refused.stderr
    )


# -- 2. annotations: in effect, refused, or warned ---------------------------------------------------------------


def test_knative_min_and_max_scale_are_the_replica_bounds_locally_and_rendered(model: Path) -> None:
    isvc = parse(
        _doc(model, {"autoscaling.knative.dev/min-scale": "2", "autoscaling.knative.dev/max-scale": "5"})
    )
    assert (isvc.spec.predictor.min_replicas, isvc.spec.predictor.max_replicas) == (2, 5)
    assert list(plan(isvc, None, Observed()).run.values()) == [2]  # the revision runs minReplicas 2
    objects = _kinds(
        _doc(
            "pvc://m/iris",
            {"autoscaling.knative.dev/min-scale": "2", "autoscaling.knative.dev/max-scale": "5"},
        )
    )
    assert objects["Deployment"]["spec"]["replicas"] == 2
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
    same = parse(_doc(model, {"autoscaling.knative.dev/min-scale": "2"}, minReplicas=2))
    assert same.spec.predictor.min_replicas == 2  # agreeing with the field is fine
    unbounded = parse(_doc(model, {"autoscaling.knative.dev/max-scale": "0"}))
    assert unbounded.spec.predictor.max_replicas is None  # Knative's 0: no upper bound


@pytest.mark.parametrize(
    ("annotations", "predictor", "expected"),
    [
        (
            {"autoscaling.knative.dev/min-scale": "3"},
            {"minReplicas": 2},
            "disagrees with spec.predictor.minReplicas 2",
        ),
        (
            {"autoscaling.knative.dev/max-scale": "4"},
            {"maxReplicas": 6},
            "disagrees with spec.predictor.maxReplicas 6",
        ),
        (
            {"autoscaling.knative.dev/min-scale": "4", "autoscaling.knative.dev/max-scale": "2"},
            {},
            "below minReplicas 4",
        ),
        ({"autoscaling.knative.dev/min-scale": "two"}, {}, "not a whole number"),
        ({CLASS: "kpa"}, {}, "use one of hpa, keda, none, external"),
        ({"autoscaling.knative.dev/class": "foo.autoscaling.knative.dev"}, {}, "kpa.autoscaling.knative.dev"),
        (
            {CLASS: "keda", "autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev"},
            {},
            "give one of them",
        ),
        ({"serving.kserve.io/deploymentMode": "ModelMesh"}, {}, "ModelMesh is not supported"),
        ({"serving.kserve.io/deploymentMode": "Raw"}, {}, "RawDeployment"),
        ({"serving.kserve.io/metrics": "gpu"}, {}, "'gpu' is unknown"),
        (
            {"autoscaling.knative.dev/metric": "latency"},
            {},
            "autoscaling.knative.dev/metric: 'latency' is unknown",
        ),
        ({"serving.kserve.io/targetUtilizationPercentage": "150"}, {}, "outside 1..100"),
        ({"autoscaling.knative.dev/activation-scale": "5"}, {"maxReplicas": 3}, "above maxReplicas 3"),
        ({"autoscaling.knative.dev/activation-scale": "0"}, {}, "outside 1..1000"),
    ],
)
def test_bad_scaling_annotations_are_refused_naming_the_key(
    model: Path, annotations: dict[str, str], predictor: dict[str, Any], expected: str
) -> None:
    with pytest.raises(SpecError) as err:
        parse(_doc(model, annotations, **predictor))
    assert err.value.status_code == 400 and expected in err.value.message
    assert err.value.message.startswith("metadata.annotations."), err.value.message


@pytest.mark.asyncio
async def test_autoscaler_class_none_runs_exactly_min_replicas(tmp_path: Path, model: Path) -> None:
    sink, load = Sink(), RevisionLoad()
    control = _plane(tmp_path, sink, load, cap=8)
    await control.start()
    try:
        doc = _doc(model, {CLASS: "none"}, minReplicas=2, maxReplicas=6, scaleTarget=1)
        isvc = parse(doc)
        assert any(
            w.startswith("spec.predictor.scaleTarget, spec.predictor.maxReplicas: no effect") and CLASS in w
            for w in isvc.warnings()
        ), isvc.warnings()
        await control.apply(isvc, doc)
        await _until(lambda: _ready(sink) == [2])
        (revision,) = sink.arms()
        load.in_flight[("default", revision)] = 50
        await _until(
            lambda: control.get("default", "iris").status["components"]["predictor"]["currentReplicas"] == 2
        )
        assert control.autoscalers.scalers == {} and _desired(control) == 2  # no autoscaler loop at all
    finally:
        await control.shutdown()
    objects = _kinds(_doc("pvc://m/iris", {CLASS: "none"}, minReplicas=2, maxReplicas=6), KEDA)
    assert "HorizontalPodAutoscaler" not in objects and "ScaledObject" not in objects
    assert objects["Deployment"]["spec"]["replicas"] == 2


def test_autoscaler_class_hpa_keda_and_external_pick_the_rendered_object(model: Path) -> None:
    # hpa: never a KEDA ScaledObject, even with KEDA enabled; concurrency becomes the adapter's Pods metric
    hpa = _kinds(
        _doc("pvc://m/iris", {CLASS: "hpa"}, minReplicas=1, maxReplicas=4, scaleMetric="concurrency"), KEDA
    )
    assert (
        "ScaledObject" not in hpa and hpa["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["type"] == "Pods"
    )
    # ... and cpu by default (KServe's raw-mode HPA), at serving.kserve.io/targetUtilizationPercentage
    cpu = _kinds(
        _doc(
            "pvc://m/iris",
            {CLASS: "hpa", "serving.kserve.io/targetUtilizationPercentage": "60"},
            maxReplicas=3,
        ),
        KEDA,
    )
    resource = cpu["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["resource"]
    assert (resource["name"], resource["target"]["averageUtilization"]) == ("cpu", 60)
    # keda: the ScaledObject path (the default class gets one too); external: nothing, replicas left alone
    assert "ScaledObject" in _kinds(_doc("pvc://m/iris", {CLASS: "keda"}, maxReplicas=4), KEDA)
    external_doc = _doc("pvc://m/iris", {CLASS: "external"}, minReplicas=2, maxReplicas=4)
    external = _kinds(external_doc, KEDA)
    assert "ScaledObject" not in external and "HorizontalPodAutoscaler" not in external
    isvc = parse(external_doc)
    revision = next(iter(plan(isvc, None, Observed()).state.revisions.values()))
    later = {o["kind"]: o for o in revision_objects(isvc, revision, 2, KEDA, existing=True)}
    assert "replicas" not in later["Deployment"]["spec"]  # the operator never fights the external autoscaler
    assert any("external: nothing scales it on this machine" in w for w in isvc.warnings())


@pytest.mark.asyncio
async def test_hpa_class_and_raw_deployment_mode_follow_kserves_hpa_locally(
    tmp_path: Path, model: Path
) -> None:
    """KServe's HPA (autoscalerClass hpa, Knative's hpa class, or deploymentMode RawDeployment): cpu by default,
    never below 1, maxReplicas unset = minReplicas. minReplicas 0 and a target with no maximum are warned."""
    for given in (
        {CLASS: "hpa"},
        {"autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev"},
        {"serving.kserve.io/deploymentMode": "RawDeployment"},
    ):
        isvc = parse(_doc(model, given, minReplicas=0, scaleTarget=50))
        warnings = isvc.warnings()
        assert any(w.startswith("spec.predictor.minReplicas: 0 needs scale to zero") for w in warnings), (
            warnings
        )
        assert any(w.startswith("spec.predictor.maxReplicas: unset") and "scaleTarget" in w for w in warnings)
    serverless = parse(_doc(model, {"serving.kserve.io/deploymentMode": "Serverless"}, minReplicas=0))
    assert serverless.warnings() == []
    sink, load = Sink(), RevisionLoad()
    control = _plane(tmp_path, sink, load, cap=8)
    await control.start()
    try:
        doc = _doc(model, {CLASS: "hpa"}, minReplicas=0, maxReplicas=3)
        await control.apply(parse(doc), doc)
        await _until(lambda: _ready(sink) == [1])
        (revision,) = sink.arms()
        scaler = control.autoscalers.scalers[("default", revision)]
        assert (scaler.knobs.metric, scaler.knobs.target, scaler.knobs.min_replicas) == ("cpu", 80.0, 1)
        for _ in range(40):  # idle far past the 6 s window: an HPA never goes to zero
            assert control.autoscalers.tick(("default", revision), scaler).desired == 1
    finally:
        await control.shutdown()


@pytest.mark.asyncio
async def test_kserve_metric_annotation_is_the_scale_metric(tmp_path: Path, model: Path) -> None:
    """`serving.kserve.io/metrics: rps` (KServe's older scaleMetric) with Knative's target: 100 req/s over
    0.7 x 10 per replica -> ceil(100 / 7) = 15, capped by maxReplicas 4."""
    sink, load = Sink(), RevisionLoad()
    control = _plane(tmp_path, sink, load, cap=8)
    await control.start()
    try:
        doc = _doc(
            model,
            {"serving.kserve.io/metrics": "rps", "autoscaling.knative.dev/target": "10"},
            maxReplicas=4,
        )
        await control.apply(parse(doc), doc)
        await _until(lambda: _ready(sink) == [1])
        (revision,) = sink.arms()
        scaler = control.autoscalers.scalers[("default", revision)]
        assert (scaler.knobs.metric, scaler.knobs.target) == ("rps", 10.0)
        load.started[("default", revision)] = 0
        clock = control.autoscalers.clock
        control.autoscalers.tick(("default", revision), scaler)
        load.started[("default", revision)] = 25  # 25 requests per 0.25 s step of the clock: 100 req/s
        decision = control.autoscalers.tick(("default", revision), scaler)
        assert decision.desired == 4, (decision, clock)
    finally:
        await control.shutdown()


def test_overridden_and_inapplicable_annotations_are_warned(model: Path) -> None:
    isvc = parse(
        _doc(
            model,
            {
                "autoscaling.knative.dev/target": "10",
                "autoscaling.knative.dev/metric": "rps",
                "serving.kserve.io/targetUtilizationPercentage": "60",
                "serving.kserve.io/enable-tag-routing": "true",
            },
            scaleTarget=5,
            scaleMetric="concurrency",
        )
    )
    warnings = "\n".join(isvc.warnings())
    assert "autoscaling.knative.dev/target: overridden by spec.predictor.scaleTarget (5)" in warnings
    assert "autoscaling.knative.dev/metric: 'rps' is overridden by spec.predictor.scaleMetric" in warnings
    assert "serving.kserve.io/targetUtilizationPercentage: no effect on serving up" in warnings
    assert "serving.kserve.io/enable-tag-routing: no effect" in warnings and "x-serving-tag" in warnings


@pytest.mark.asyncio
async def test_apply_answers_the_scaling_warnings(tmp_path: Path, model: Path) -> None:
    control = _plane(tmp_path, Sink(), RevisionLoad(), cap=2)
    await control.start()
    try:
        app = build_control_app(control, "t")
        doc = _doc(model, {"serving.kserve.io/enable-tag-routing": "true", CLASS: "external"})
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://control"
        ) as client:
            response = await client.post(
                "/api/v1/inferenceservices", json=[doc], headers={"authorization": "Bearer t"}
            )
        assert response.status_code == 200, response.text
        (applied,) = response.json()["items"]
        assert any("enable-tag-routing" in w for w in applied["warnings"])
        assert any(f"{CLASS}: external" in w for w in applied["warnings"])
    finally:
        await control.shutdown()


@pytest.mark.asyncio
async def test_activation_scale_wakes_from_zero_to_that_many(tmp_path: Path, model: Path) -> None:
    sink, load = Sink(), RevisionLoad()
    control = _plane(tmp_path, sink, load, cap=8)
    await control.start()
    try:
        annotations = {
            "autoscaling.knative.dev/activation-scale": "2",
            "autoscaling.knative.dev/target": "10",
        }
        doc = _doc(model, annotations, minReplicas=0, maxReplicas=4)
        await control.apply(parse(doc), doc)
        await _until(lambda: len(FakeReplica.instances) == 2)  # Knative: it starts with activation-scale
        await _until(lambda: _running() == 0, timeout_s=10)  # idle for the window: zero is still allowed
        (revision,) = sink.arms()
        load.held[("default", revision)] = 1  # what the router's activator does for a request: hold it ...
        control.autoscalers.activate("default", revision)  # ... and ask for replicas
        await _until(lambda: _ready(sink) == [2] and _running() == 2)
        scaler = control.autoscalers.scalers[("default", revision)]
        load.held[("default", revision)], load.in_flight[("default", revision)] = 0, 1
        for _ in range(10):  # 1 in flight / (10 x 0.7) wants 1 replica: with demand, never fewer than 2
            assert control.autoscalers.tick(("default", revision), scaler).desired == 2
    finally:
        await control.shutdown()


# -- 3. serving render says what it cannot render ----------------------------------------------------------------


def test_render_warns_that_min_replicas_zero_needs_keda(tmp_path: Path) -> None:
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(_doc("pvc://m/iris", minReplicas=0, maxReplicas=3)))
    plain = run_cli("render", "-f", str(path))
    assert plain.returncode == 0
    deployment = next(d for d in yaml.safe_load_all(plain.stdout) if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert "warning: iris: spec.predictor.minReplicas: 0 is rendered as replicas: 1" in plain.stderr
    assert "--keda-prometheus-url" in plain.stderr
    keda = run_cli("render", "-f", str(path), "--keda-prometheus-url", "http://prom:9090")
    assert keda.returncode == 0 and "minReplicas" not in keda.stderr
    assert any(d["kind"] == "ScaledObject" for d in yaml.safe_load_all(keda.stdout))


def test_render_warns_what_the_objects_cannot_carry(tmp_path: Path) -> None:
    def warnings(doc: dict[str, Any], *flags: str) -> str:
        path = tmp_path / "isvc.yaml"
        path.write_text(yaml.safe_dump(doc))
        result = run_cli("render", "-f", str(path), *flags)
        assert result.returncode == 0, result.stderr
        return result.stderr

    no_max = warnings(_doc("pvc://m/iris", scaleTarget=1, scaleMetric="concurrency"))
    assert (
        "spec.predictor.maxReplicas: unset, so spec.predictor.scaleTarget, spec.predictor.scaleMetric"
        in no_max
    )
    assert "renders no autoscaler" in no_max
    keda_doc = _doc("pvc://m/iris", scaleTarget=1)
    assert "maxReplicas" not in warnings(keda_doc, "--keda-prometheus-url", "http://prom:9090")  # up to 100
    no_url = warnings(_doc("pvc://m/iris", {CLASS: "keda"}, maxReplicas=3))
    assert f"{CLASS}: keda needs --keda-prometheus-url" in no_url and "rendered an HPA instead" in no_url
    activation = warnings(
        _doc("pvc://m/iris", {"autoscaling.knative.dev/activation-scale": "2"}, minReplicas=0)
    )
    assert "autoscaling.knative.dev/activation-scale: serving up only" in activation
    rps = warnings(
        _doc(
            "pvc://m/iris",
            {"autoscaling.knative.dev/metric": "rps", "autoscaling.knative.dev/target": "50"},
            maxReplicas=3,
        )
    )
    assert "the HPA reads the Pods metric serving_requests_per_second, which only a Prometheus adapter" in rps
    annotated_zero = warnings(_doc("pvc://m/iris", {"autoscaling.knative.dev/min-scale": "0"}, maxReplicas=3))
    assert (
        "metadata.annotations.autoscaling.knative.dev/min-scale: 0 is rendered as replicas: 1"
        in annotated_zero
    )
    first = warnings(_doc("pvc://m/iris", {"autoscaling.knative.dev/initial-scale": "2"}, maxReplicas=3))
    assert "autoscaling.knative.dev/initial-scale: serving up and KEDA only" in first
    hpa_no_max = warnings(_doc("pvc://m/iris", {CLASS: "hpa"}, scaleTarget=80, scaleMetric="cpu"))
    assert "spec.predictor.maxReplicas: unset, so an HPA" in hpa_no_max  # KServe's HPA example, as written
    none = warnings(_doc("pvc://m/iris", {CLASS: "none"}, minReplicas=2, maxReplicas=4, scaleTarget=5))
    assert "spec.predictor.scaleTarget, spec.predictor.maxReplicas: no effect with" in none


def test_knatives_camel_case_keys_are_read_and_unsupported_control_annotations_are_named(model: Path) -> None:
    """Knative still reads minScale/maxScale (the new names first); a KServe/Knative control annotation nothing
    here reads (Knative's rollout-duration, a key with a typo in its case) is warned by name, locally and by render,
    where it used to be accepted in silence."""
    doc = _doc(
        model,
        {
            "autoscaling.knative.dev/minScale": "2",
            "autoscaling.knative.dev/maxScale": "4",
            "serving.knative.dev/rollout-duration": "60s",
            "serving.kserve.io/autoscalerclass": "hpa",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",  # kubectl's: not the user's
        },
    )
    isvc = parse(doc)
    assert isvc.metadata.annotations["autoscaling.knative.dev/min-scale"] == "2"
    warnings = isvc.warnings()
    assert not any("minScale" in w or "maxScale" in w or "kubectl" in w for w in warnings), warnings
    for key in ("serving.knative.dev/rollout-duration", "serving.kserve.io/autoscalerclass"):
        assert (
            f"metadata.annotations.{key}: not supported here; no effect (locally or on Kubernetes)"
            in warnings
        )
    hpa = _kinds(doc)["HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    rendered = run_cli("render", "-f", str(_write(model.parent, doc)))
    assert "serving.knative.dev/rollout-duration: not supported here" in rendered.stderr


def _write(folder: Path, doc: dict[str, Any]) -> Path:
    path = folder / "isvc.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_autoscaling_metrics_beyond_the_first_are_warned(model: Path) -> None:
    def resource(name: str, value: int) -> dict[str, Any]:
        return {"type": "Resource", "resource": {"name": name, "target": {"averageUtilization": value}}}

    doc = _doc(
        model,
        minReplicas=1,
        maxReplicas=3,
        autoScaling={"metrics": [resource("cpu", 50), resource("memory", 60)]},
    )
    said = "spec.predictor.autoScaling.metrics[1:]: only the first metric (cpu) scales this service"
    assert any(w.startswith(said) for w in parse(doc).warnings())
    assert said in run_cli("render", "-f", str(_write(model.parent, doc))).stderr
    doc["spec"]["predictor"]["autoScaling"]["metrics"].pop()
    assert not any("autoScaling" in w for w in parse(doc).warnings())
