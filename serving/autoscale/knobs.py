"""Autoscaling knobs from what KServe users already write: component fields and Knative's annotations.

`minReplicas`/`maxReplicas`/`scaleMetric`/`scaleTarget`/`containerConcurrency` on the component, KServe's
`autoScaling.metrics[]` form where it maps, `autoscaling.knative.dev/*` annotations on the InferenceService and
KServe's class/metric annotations (`serving.autoscale.annotations`). Parsed once into `Knobs`; every mistake is a
SpecError naming the field path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self, TypeVar

from serving import durations
from serving.autoscale import annotations as scaling_annotations
from serving.autoscale.annotations import FIXED_CLASSES, UTILIZATION_KEY, AutoscaleSpecError

__all__ = [
    "AutoscaleSpecError",
    "Knobs",
    "knobs_from",
    "scaling_warnings",
    "unknown_annotations",
    "with_bounds",
]

PREFIX = "autoscaling.knative.dev/"
METRICS = ("concurrency", "rps", "cpu", "memory")
DEFAULT_TARGET = {
    "concurrency": 100.0,
    "rps": 200.0,
    "cpu": 80.0,
    "memory": 80.0,
}  # Knative's and HPA's defaults
KNOWN_ANNOTATIONS = frozenset(
    {
        "window",
        "panic-window-percentage",
        "panic-threshold-percentage",
        "scale-down-delay",
        "scale-to-zero-pod-retention-period",
        "initial-scale",
        "max-scale-up-rate",
        "max-scale-down-rate",
        "target-utilization-percentage",
        "target",
        "metric",
        "min-scale",
        "max-scale",
        "class",
        "activation-scale",
    }
)


@dataclass(frozen=True, slots=True)
class Knobs:
    metric: str = "concurrency"
    autoscaler: str = "kpa"  # kpa | hpa | keda | none | external (serving.autoscale.annotations)
    target: float = 100.0  # per replica: in-flight requests, req/s, or % of a CPU / of the memory request
    utilization: float = 0.7
    min_replicas: int = 1
    max_replicas: int = 0  # 0: no upper bound (`serving up` caps it: --default-max-replicas)
    initial_scale: int = 1
    activation_scale: int = 1  # the fewest replicas while not at zero (Knative's activation-scale)
    stable_window_s: float = 60.0
    panic_window_pct: float = 10.0
    panic_threshold_pct: float = 200.0
    scale_down_delay_s: float = 0.0
    scale_to_zero_retention_s: float = 0.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0

    @property
    def panic_window_s(self) -> float:
        return max(self.stable_window_s * self.panic_window_pct / 100.0, 1.0)

    @property
    def panic_threshold(self) -> float:
        return self.panic_threshold_pct / 100.0

    @property
    def scales(self) -> bool:
        """Whether an autoscaler has anything to do (a fixed count needs none); no upper bound scales."""
        return self.min_replicas == 0 or self.max_replicas == 0 or self.max_replicas > self.min_replicas


def parse_duration_s(text: str, path: str) -> float:
    """A duration field, its error naming `path`."""
    try:
        return durations.parse_duration_s(text)
    except ValueError as exc:
        raise AutoscaleSpecError(f"{path}: {exc}") from exc


def knobs_from(component: Any, annotations: Mapping[str, str], path: str = "spec.predictor") -> Knobs:
    """The knobs of one component (`component` has the ComponentSpec attributes, snake_case)."""
    autoscaler = scaling_annotations.autoscaler_class(annotations)
    metric, target = _metric_and_target(component, annotations, path, autoscaler)
    ann = _annotations(annotations)
    min_replicas = 1 if component.min_replicas is None else component.min_replicas
    max_replicas = component.max_replicas or 0
    if max_replicas and max_replicas < min_replicas:
        raise AutoscaleSpecError(f"{path}.maxReplicas: {max_replicas} is below minReplicas {min_replicas}")
    if autoscaler in FIXED_CLASSES or autoscaler == "hpa":
        min_replicas = max(min_replicas, 1)  # an HPA, or a count nothing of ours changes, never reaches zero
    if autoscaler in FIXED_CLASSES or (autoscaler == "hpa" and not max_replicas):
        max_replicas = min_replicas  # KServe's HPA: maxReplicas unset is minReplicas
    activation = int(_number(ann, "activation-scale", 1, 1, 1000))
    if max_replicas and activation > max_replicas:
        raise AutoscaleSpecError(
            f"metadata.annotations.{PREFIX}activation-scale: {activation} is above maxReplicas {max_replicas}"
        )
    knobs = Knobs(
        metric=metric,
        autoscaler=autoscaler,
        target=target,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        utilization=_number(ann, "target-utilization-percentage", 70.0, 1, 100) / 100.0,
        initial_scale=int(_number(ann, "initial-scale", 1, 0, 1000)),
        activation_scale=activation,
        stable_window_s=_duration(ann, "window", 60.0, 6.0, 3600.0),
        panic_window_pct=_number(ann, "panic-window-percentage", 10.0, 1, 100),
        panic_threshold_pct=_number(ann, "panic-threshold-percentage", 200.0, 110, 1000),
        scale_down_delay_s=_duration(ann, "scale-down-delay", 0.0, 0.0, 3600.0),
        scale_to_zero_retention_s=_duration(ann, "scale-to-zero-pod-retention-period", 0.0, 0.0, 3600.0),
        max_scale_up_rate=_number(ann, "max-scale-up-rate", 1000.0, 1.0001, 1e9),
        max_scale_down_rate=_number(ann, "max-scale-down-rate", 2.0, 1.0001, 1e9),
    )
    return knobs


class Bounded(Protocol):
    """A component spec (pydantic, frozen): its replica bounds, and a copy with others."""

    @property
    def min_replicas(self) -> int | None: ...
    @property
    def max_replicas(self) -> int | None: ...
    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self: ...


B = TypeVar("B", bound=Bounded)


def with_bounds(component: B, annotations: Mapping[str, str], path: str = "spec.predictor") -> B:
    """`component` with Knative's min-scale/max-scale as its minReplicas/maxReplicas where those are unset."""
    low, high = scaling_annotations.bounds(annotations, component.min_replicas, component.max_replicas, path)
    if (low, high) == (component.min_replicas, component.max_replicas):
        return component
    return component.model_copy(update={"min_replicas": low, "max_replicas": high})


def scaling_warnings(
    component: Any, annotations: Mapping[str, str], path: str = "spec.predictor"
) -> list[str]:
    """Scaling settings that do nothing here, or less than they say (the component's knobs must parse)."""
    knobs = knobs_from(component, annotations, path)
    return scaling_annotations.warnings(annotations, component, knobs, path)


def unknown_annotations(annotations: Mapping[str, str]) -> list[str]:
    """Warnings for `autoscaling.knative.dev/*` keys we do not know (typos stay visible)."""
    return [
        f"metadata.annotations.{key}: unknown Knative autoscaling annotation; ignored"
        for key in annotations
        if key.startswith(PREFIX) and key.removeprefix(PREFIX) not in KNOWN_ANNOTATIONS
    ]


def _metric_and_target(
    component: Any, annotations: Mapping[str, str], path: str, autoscaler: str
) -> tuple[str, float]:
    """scaleMetric > KServe's metric annotation > Knative's > the class's default (cpu for an HPA);
    scaleTarget > KServe's targetUtilizationPercentage (cpu/memory) > Knative's target > containerConcurrency."""
    kserve_metric = scaling_annotations.annotated_metric(annotations)
    metric = (
        component.scale_metric
        or kserve_metric
        or annotations.get(PREFIX + "metric")
        or ("cpu" if autoscaler == "hpa" else "concurrency")
    )
    if metric not in METRICS:  # named where it was written: the field, KServe's annotation, or Knative's
        if component.scale_metric:
            where = f"{path}.scaleMetric"
        elif kserve_metric:
            where = f"metadata.annotations.{scaling_annotations.metric_key(annotations)}"
        else:
            where = f"metadata.annotations.{PREFIX}metric"
        raise AutoscaleSpecError(f"{where}: {metric!r} is unknown; use one of {', '.join(METRICS)}")
    chosen = bool(component.scale_metric or kserve_metric or annotations.get(PREFIX + "metric"))
    _check_metric_type(getattr(component, "scale_metric_type", None), metric if chosen else None, path)
    target: float | None = component.scale_target
    from_metrics = _from_autoscaling_metrics(getattr(component, "auto_scaling", None), path)
    if from_metrics is not None:
        metric, target = from_metrics
    if (
        UTILIZATION_KEY in annotations
    ):  # checked whatever the metric, so a typo never waits for a metric change
        utilization = _number({"u": annotations[UTILIZATION_KEY]}, "u", 0.0, 1, 100, UTILIZATION_KEY)
        if target is None and metric in ("cpu", "memory"):
            target = utilization
    if target is None and PREFIX + "target" in annotations:
        target = _number({"target": annotations[PREFIX + "target"]}, "target", 0.0, 0.01, 1e9)
    if target is None and metric == "concurrency" and component.container_concurrency:
        target = float(component.container_concurrency)
    if target is not None and target <= 0:
        raise AutoscaleSpecError(f"{path}.scaleTarget: must be above 0 (got {target})")
    return metric, float(target if target is not None else DEFAULT_TARGET[metric])


# What each metric's scaleTarget is: a percentage of the container's requests (cpu, memory; as KServe's HPA
# reads scaleTarget), or an average per replica (in-flight requests, requests per second).
METRIC_TARGET_TYPE = {
    "cpu": "Utilization",
    "memory": "Utilization",
    "concurrency": "AverageValue",
    "rps": "AverageValue",
}


def _check_metric_type(kind: str | None, metric: str | None, path: str) -> None:
    """KServe's `scaleMetricType` (read by its KEDA scaler): accepted where it says what scaleTarget already
    means for the metric, refused where it would ask for another kind of target than the one applied. With no
    metric chosen (None: concurrency here, cpu in a rendered HPA) either kind names one of them."""
    if kind is None or (metric is None and kind in ("Utilization", "AverageValue")):
        return
    metric = metric or "cpu"
    meant = METRIC_TARGET_TYPE[metric]
    if kind == meant:
        return
    if meant == "Utilization":
        raise AutoscaleSpecError(
            f"{path}.scaleMetricType: {kind!r} is not supported for {metric} here (an absolute amount of {metric} "
            "per pod); this autoscaler and the rendered HPA scale on Utilization, scaleTarget as a percentage of "
            "the container's resources.requests: use scaleMetricType: Utilization (or leave it out)"
        )
    raise AutoscaleSpecError(
        f"{path}.scaleMetricType: {kind!r} is not supported for {metric}: its scaleTarget is an average per "
        "replica (AverageValue); use scaleMetricType: AverageValue (or leave it out)"
    )


def _from_autoscaling_metrics(auto_scaling: Any, path: str) -> tuple[str, float] | None:
    """KServe's `autoScaling: {metrics: [{type: Resource, resource: {name: cpu, target: {...}}}]}`."""
    if not auto_scaling:
        return None
    metrics = auto_scaling.get("metrics") if isinstance(auto_scaling, Mapping) else None
    if not metrics:
        return None
    where = f"{path}.autoScaling.metrics"
    if not isinstance(metrics, list) or not isinstance(metrics[0], Mapping):
        raise AutoscaleSpecError(
            f"{where}: a list of {{type: Resource, resource: {{...}}}} entries is required"
        )
    first, where = metrics[0], where + "[0]"
    if first.get("type") != "Resource":
        raise AutoscaleSpecError(
            f"{where}.type: {first.get('type')!r} is not supported here; use Resource "
            "(cpu/memory) or scaleMetric: concurrency|rps"
        )
    resource = first.get("resource")
    if not isinstance(resource, Mapping):
        raise AutoscaleSpecError(f"{where}.resource: a mapping with name and target is required")
    name, target = resource.get("name"), resource.get("target")
    if name not in ("cpu", "memory"):
        raise AutoscaleSpecError(f"{where}.resource.name: {name!r} is unknown; use cpu or memory")
    kind = target.get("type") if isinstance(target, Mapping) else None
    if kind not in (None, "Utilization"):  # KServe's AverageValue / Value: an absolute amount per pod
        raise AutoscaleSpecError(
            f"{where}.resource.target.type: {kind!r} is not supported here (KServe's HPA takes AverageValue, an "
            f"amount of {name} per pod such as {'200Mi' if name == 'memory' else '500m'}); this autoscaler and the rendered HPA scale on Utilization, "
            "a percentage of the container's resources.requests: use {type: Utilization, averageUtilization: N}"
        )
    value = target.get("averageUtilization") if isinstance(target, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise AutoscaleSpecError(f"{where}.resource.target.averageUtilization: a positive number is required")
    return name, float(value)


def _annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    return {k.removeprefix(PREFIX): v for k, v in annotations.items() if k.startswith(PREFIX)}


def _number(
    ann: Mapping[str, str], key: str, default: float, low: float, high: float, full_key: str = ""
) -> float:
    if key not in ann:
        return default
    path = f"metadata.annotations.{full_key or PREFIX + key}"
    try:
        value = float(str(ann[key]).strip().removesuffix("%"))
    except ValueError as exc:
        raise AutoscaleSpecError(f"{path}: {ann[key]!r} is not a number") from exc
    if not low <= value <= high:
        raise AutoscaleSpecError(f"{path}: {value:g} is outside {low:g}..{high:g}")
    return value


def _duration(ann: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    if key not in ann:
        return default
    path = f"metadata.annotations.{PREFIX}{key}"
    value = parse_duration_s(str(ann[key]), path)
    if not low <= value <= high:
        raise AutoscaleSpecError(f"{path}: {ann[key]} is outside {low:g}s..{high:g}s")
    return value
