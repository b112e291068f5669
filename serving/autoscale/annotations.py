"""InferenceService-level scaling annotations (KServe's `serving.kserve.io/*`, Knative's class and bounds) and
what they mean here; each one either takes effect or is warned about by name (`warnings`).

- `serving.kserve.io/autoscalerClass` (KServe: hpa, keda, none, external) and Knative's
  `autoscaling.knative.dev/class` (kpa.autoscaling.knative.dev, hpa.autoscaling.knative.dev) pick the class:
  `kpa` (the default: Knative's rule, scale to zero, `maxReplicas` unset = no upper bound), `hpa` (cpu by
  default, never below 1, `maxReplicas` unset = `minReplicas` as KServe's HPA has it), `keda` (like kpa; a KEDA
  ScaledObject on Kubernetes), `none` (exactly `minReplicas`), `external` (something else scales it).
- `serving.kserve.io/deploymentMode`: RawDeployment/Standard make `hpa` the default class (KServe's raw mode);
  Serverless/Knative keep `kpa`; ModelMesh is refused.
- `serving.kserve.io/metrics` (KServe's key; `.../metric` as often written) and
  `serving.kserve.io/targetUtilizationPercentage`: the older forms of scaleMetric and (cpu/memory) scaleTarget.
- `autoscaling.knative.dev/min-scale` / `max-scale`: minReplicas / maxReplicas where those are unset (`bounds`).
- `serving.kserve.io/enable-tag-routing`: tags are always on here; warned.
Pure functions of the annotations and the component; every mistake is an AutoscaleSpecError naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serving.errors import BadRequest

KNATIVE = "autoscaling.knative.dev/"
KSERVE = "serving.kserve.io/"
CLASS_KEY = KSERVE + "autoscalerClass"
KNATIVE_CLASS_KEY = KNATIVE + "class"
MODE_KEY = KSERVE + "deploymentMode"
METRIC_KEYS = (KSERVE + "metrics", KSERVE + "metric")  # KServe reads `metrics`; `metric` is seen as often
UTILIZATION_KEY = KSERVE + "targetUtilizationPercentage"
TAG_ROUTING_KEY = KSERVE + "enable-tag-routing"
MIN_SCALE_KEY, MAX_SCALE_KEY = KNATIVE + "min-scale", KNATIVE + "max-scale"

CLASSES = ("hpa", "keda", "none", "external")  # KServe's values of serving.kserve.io/autoscalerClass
KNATIVE_CLASSES = {"kpa.autoscaling.knative.dev": "kpa", "hpa.autoscaling.knative.dev": "hpa"}
SERVERLESS_MODES, RAW_MODES = ("Serverless", "Knative"), ("RawDeployment", "Standard")
FIXED_CLASSES = ("none", "external")  # no autoscaler of ours: a fixed count


class AutoscaleSpecError(BadRequest):
    """A scaling field or annotation the user must fix; the message starts with its path."""


def autoscaler_class(annotations: Mapping[str, str]) -> str:
    """kpa | hpa | keda | none | external, from the class annotations and the deployment mode."""
    kserve = annotations.get(CLASS_KEY)
    if kserve is not None and kserve not in CLASSES:
        raise AutoscaleSpecError(
            f"metadata.annotations.{CLASS_KEY}: {kserve!r} is unknown; use one of {', '.join(CLASSES)} "
            "(leave it out for Knative's autoscaler)"
        )
    knative_value = annotations.get(KNATIVE_CLASS_KEY)
    knative = KNATIVE_CLASSES.get(knative_value or "")
    if knative_value is not None and knative is None:
        raise AutoscaleSpecError(
            f"metadata.annotations.{KNATIVE_CLASS_KEY}: {knative_value!r} is unknown; use one of "
            f"{', '.join(KNATIVE_CLASSES)}"
        )
    if kserve is not None and knative is not None and kserve != knative:
        raise AutoscaleSpecError(
            f"metadata.annotations.{CLASS_KEY}: {kserve!r} disagrees with {KNATIVE_CLASS_KEY} "
            f"{knative_value!r}; give one of them"
        )
    mode = deployment_mode(annotations)
    return kserve or knative or ("hpa" if mode in RAW_MODES else "kpa")


def deployment_mode(annotations: Mapping[str, str]) -> str:
    mode = annotations.get(MODE_KEY, "Serverless")
    if mode == "ModelMesh":
        raise AutoscaleSpecError(
            f"metadata.annotations.{MODE_KEY}: ModelMesh is not supported; use Serverless (the default) or "
            "RawDeployment"
        )
    if mode not in SERVERLESS_MODES + RAW_MODES:
        raise AutoscaleSpecError(
            f"metadata.annotations.{MODE_KEY}: {mode!r} is unknown; use one of "
            f"{', '.join(SERVERLESS_MODES + RAW_MODES)}"
        )
    return mode


def annotated_metric(annotations: Mapping[str, str]) -> str | None:
    """KServe's older form of scaleMetric (checked against the metric list by the caller)."""
    return next((annotations[k] for k in METRIC_KEYS if k in annotations), None)


def metric_key(annotations: Mapping[str, str]) -> str:
    return next(k for k in METRIC_KEYS if k in annotations)


def bounds(
    annotations: Mapping[str, str], min_field: int | None, max_field: int | None, path: str
) -> tuple[int | None, int | None]:
    """(minReplicas, maxReplicas) with Knative's min-scale/max-scale read where the fields are unset; a value
    that disagrees with its field is refused (KServe itself drops both annotations and reads the fields)."""
    low, high = min_field, max_field
    if MIN_SCALE_KEY in annotations:
        value = _count(annotations[MIN_SCALE_KEY], MIN_SCALE_KEY)
        if min_field is not None and min_field != value:
            raise _disagrees(MIN_SCALE_KEY, annotations, f"{path}.minReplicas", min_field)
        low = value
    if MAX_SCALE_KEY in annotations:
        value = _count(annotations[MAX_SCALE_KEY], MAX_SCALE_KEY)  # Knative: 0 is no upper bound, as unset
        if max_field is not None and (max_field or None) != (value or None):
            raise _disagrees(MAX_SCALE_KEY, annotations, f"{path}.maxReplicas", max_field)
        high = max_field if max_field is not None else (value or None)
    if low is not None and high and high < low:
        key = MAX_SCALE_KEY if MAX_SCALE_KEY in annotations else MIN_SCALE_KEY
        raise AutoscaleSpecError(f"metadata.annotations.{key}: maxReplicas {high} is below minReplicas {low}")
    return low, high


def _disagrees(key: str, annotations: Mapping[str, str], field: str, value: int) -> AutoscaleSpecError:
    return AutoscaleSpecError(
        f"metadata.annotations.{key}: {annotations[key]!r} disagrees with {field} {value}; give one of them "
        f"({field.rsplit('.', 1)[1]} is what KServe reads)"
    )


def _count(text: str, key: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError as exc:
        raise AutoscaleSpecError(f"metadata.annotations.{key}: {text!r} is not a whole number") from exc
    if not 0 <= value <= 1000:
        raise AutoscaleSpecError(f"metadata.annotations.{key}: {value} is outside 0..1000")
    return value


def scale_asked(component: Any, annotations: Mapping[str, str], path: str = "spec.predictor") -> list[str]:
    """The fields and annotations that ask for autoscaling on a metric, by path (empty: only the defaults)."""
    fields = (("scaleTarget", component.scale_target), ("scaleMetric", component.scale_metric))
    named = [f"{path}.{name}" for name, value in fields if value is not None]
    named += [f"{path}.autoScaling"] if getattr(component, "auto_scaling", None) else []
    keys = (*METRIC_KEYS, UTILIZATION_KEY, KNATIVE + "metric", KNATIVE + "target")
    return named + [f"metadata.annotations.{key}" for key in keys if key in annotations]


def warnings(
    annotations: Mapping[str, str], component: Any, knobs: Any, path: str = "spec.predictor"
) -> list[str]:
    """What the scaling annotations and class do not do here, or do differently from what they say."""
    out: list[str] = []
    if TAG_ROUTING_KEY in annotations:
        out.append(
            f"metadata.annotations.{TAG_ROUTING_KEY}: no effect: tag routing is always on here - pin a request "
            "with the header x-serving-tag: latest|prev (or a revision name); KServe's tag hostnames "
            "(latest-NAME-predictor...) are not served"
        )
    out += _overridden(annotations, component, knobs, path)
    out += extra_metrics(component, knobs, path)
    cls = knobs.autoscaler
    out += class_warnings(annotations, component, knobs, path)
    if cls == "external":
        out.append(
            f"metadata.annotations.{CLASS_KEY}: external: nothing scales it on this machine, so serving up runs "
            f"{max(knobs.min_replicas, 1)} (minReplicas, at least 1); on Kubernetes no autoscaler is rendered and "
            "the Deployment's replicas are left to yours once it exists"
        )
    if cls == "hpa" and component.min_replicas == 0:
        out.append(
            f"{path}.minReplicas: 0 needs scale to zero, which an HPA cannot do ({_class_source(annotations)}); "
            "runs at least 1"
        )
    return out


def class_warnings(
    annotations: Mapping[str, str], component: Any, knobs: Any, path: str = "spec.predictor"
) -> list[str]:
    """Scaling fields the autoscaler class leaves without effect, locally and in the rendered objects alike:
    `none` runs exactly minReplicas; an HPA without maxReplicas keeps minReplicas, as KServe's does."""
    out: list[str] = []
    cls, asked = knobs.autoscaler, scale_asked(component, annotations, path)
    if cls == "none" and (asked or component.max_replicas):
        names = asked + ([f"{path}.maxReplicas"] if component.max_replicas else [])
        out.append(f"{', '.join(names)}: no effect with {CLASS_KEY}: none (exactly minReplicas run)")
    if cls == "hpa" and not component.max_replicas and asked:
        out.append(
            f"{path}.maxReplicas: unset, so an HPA ({_class_source(annotations)}) keeps minReplicas "
            f"({knobs.min_replicas}) as KServe's does, and {', '.join(asked)} has no effect: set maxReplicas"
        )
    return out


def extra_metrics(component: Any, knobs: Any, path: str = "spec.predictor") -> list[str]:
    """KServe's `autoScaling.metrics` beyond the first: one metric scales a service here and in the HPA."""
    metrics = (getattr(component, "auto_scaling", None) or {}).get("metrics")
    if not isinstance(metrics, list) or len(metrics) < 2:
        return []
    return [
        f"{path}.autoScaling.metrics[1:]: only the first metric ({knobs.metric}) scales this service, here and "
        "in the rendered HPA; the others have no effect"
    ]


def _overridden(annotations: Mapping[str, str], component: Any, knobs: Any, path: str) -> list[str]:
    """An annotation that a spec field (or a stronger annotation) overrides with another value."""
    out = []
    for key in (*METRIC_KEYS, KNATIVE + "metric"):
        if key in annotations and annotations[key] != knobs.metric:
            out.append(
                f"metadata.annotations.{key}: {annotations[key]!r} is overridden by "
                f"{_source(component, annotations, path, 'scaleMetric', METRIC_KEYS)} ({knobs.metric})"
            )
    if UTILIZATION_KEY in annotations:
        if knobs.metric not in ("cpu", "memory"):
            out.append(
                f"metadata.annotations.{UTILIZATION_KEY}: no effect on serving up: it is the cpu/memory "
                f"utilization target of KServe's HPA, and this service scales on {knobs.metric} (set scaleTarget "
                "instead); a rendered HPA (no KEDA) takes it as its cpu target"
            )
        elif _number(annotations[UTILIZATION_KEY]) != knobs.target:
            by = _source(component, annotations, path, "scaleTarget", ())
            out.append(f"metadata.annotations.{UTILIZATION_KEY}: overridden by {by} ({knobs.target:g})")
    target_key = KNATIVE + "target"
    if target_key in annotations and _number(annotations[target_key]) != knobs.target:
        by = _source(component, annotations, path, "scaleTarget", (UTILIZATION_KEY,))
        out.append(f"metadata.annotations.{target_key}: overridden by {by} ({knobs.target:g})")
    return out


def _source(
    component: Any, annotations: Mapping[str, str], path: str, field: str, keys: tuple[str, ...]
) -> str:
    """Which setting won over an annotation: the autoScaling block, the field, or a stronger annotation."""
    if getattr(component, "auto_scaling", None):
        return f"{path}.autoScaling"
    if getattr(component, "scale_target" if field == "scaleTarget" else "scale_metric") is not None:
        return f"{path}.{field}"
    return next((f"metadata.annotations.{k}" for k in keys if k in annotations), "the autoscaler class")


def _class_source(annotations: Mapping[str, str]) -> str:
    if CLASS_KEY in annotations:
        return f"{CLASS_KEY}: hpa"
    if KNATIVE_CLASS_KEY in annotations:
        return f"{KNATIVE_CLASS_KEY}: {annotations[KNATIVE_CLASS_KEY]}"
    return f"{MODE_KEY}: {annotations.get(MODE_KEY)}"


def _number(text: str) -> float | None:
    try:
        return float(str(text).strip().removesuffix("%"))
    except ValueError:
        return None
