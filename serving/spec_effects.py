"""Where each accepted InferenceService field takes effect: on the local backend, when rendered for Kubernetes,
or nowhere yet. Fields that are set but do nothing locally are warned about at apply time.

One row per field path (KServe's camelCase names; `predictor.model.*` also covers the `sklearn:` / `xgboost:` /
`onnx:` shorthand). An empty `local` means "no local effect" (warned); tests/test_spec_effect.py checks each row
against the argv/env the backends build and the objects `serving render` prints, and that every field of the
spec has a row. The README's table is this one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from serving.autoscale.annotations import CLASS_KEY, METRIC_KEYS, UTILIZATION_KEY
from serving.spec import (
    IN_PROCESS,
    KSERVE_ONLY_SCHEMES,
    KUBERNETES_CONTAINER_ONLY,
    KUBERNETES_ONLY,
    PLACEMENT_ANNOTATION,
    STOP_ANNOTATION,
    SUPPORTED_FORMATS,
    InferenceService,
)
from serving.storage.credentials import AZURE_FILES

# KServe's label, and Knative's (serving.knative.dev/ on a Service, networking.knative.dev/ on a Route): each warned
VISIBILITY_LABELS = (
    "networking.kserve.io/visibility",
    "serving.knative.dev/visibility",
    "networking.knative.dev/visibility",
)
# Service annotations KServe propagates to the pods, except its own controls (and Knative's, ours, kubectl's);
# prometheus.kserve.io/port|path become the pod's prometheus.io/port|path.
CONTROL_ANNOTATION_DOMAINS = ("kserve.io", "knative.dev", "serving.dev", "kubectl.kubernetes.io")
PROMETHEUS_KSERVE = "prometheus.kserve.io/"


def is_control_annotation(key: str) -> bool:
    """A KServe/Knative/our/kubectl annotation: read by a controller, not copied to the pods."""
    domain = key.partition("/")[0] if "/" in key else ""
    return any(domain == d or domain.endswith("." + d) for d in CONTROL_ANNOTATION_DOMAINS)


# Control annotations of a service that something here reads (autoscaling.knative.dev/* are checked on their own)
READ_ANNOTATIONS = frozenset(
    {
        "serving.kserve.io/autoscalerClass",
        "serving.kserve.io/deploymentMode",
        "serving.kserve.io/metrics",
        "serving.kserve.io/metric",
        "serving.kserve.io/targetUtilizationPercentage",
        "serving.kserve.io/enable-tag-routing",
        "serving.kserve.io/storageSecretName",  # the Secret a model's `storage:` reads
        PLACEMENT_ANNOTATION,
        STOP_ANNOTATION,
    }
)
# Written by kubectl or by KServe's and Knative's own controllers (in `kubectl get -o yaml` output): not the user's
WRITTEN_BY_CONTROLLERS = (
    "kubectl.kubernetes.io/",
    "internal.serving.kserve.io/",
    "serving.knative.dev/creator",
    "serving.knative.dev/lastModifier",
    "autoscaling.knative.dev/",  # knobs.unknown_annotations names the unknown ones
    PROMETHEUS_KSERVE,  # copied to the pods (port, path)
)


ENABLE_SCRAPING = "serving.kserve.io/enable-prometheus-scraping"


def unsupported_annotations(annotations: dict[str, str]) -> list[str]:
    """A KServe or Knative control annotation nothing here reads (serving.kserve.io/stop, Knative's rollout
    and networking keys, a typo in a key's case): accepted would mean in effect, so each is said by name."""
    out = [
        f"metadata.annotations.{key}: not supported here; no effect (locally or on Kubernetes)"
        for key in annotations
        if is_control_annotation(key)
        and key not in READ_ANNOTATIONS
        and key != ENABLE_SCRAPING
        and not key.startswith(WRITTEN_BY_CONTROLLERS)
    ]
    if annotations.get(ENABLE_SCRAPING, "true").lower() != "true":  # "true" is what every pod here has
        out.append(
            f"metadata.annotations.{ENABLE_SCRAPING}: {annotations[ENABLE_SCRAPING]!r}: every server here serves "
            "/metrics and every pod is annotated for scraping; not turned off"
        )
    return out


def scrape_warnings(annotations: dict[str, str], ours: str, sidecars: set[str]) -> list[str]:
    """prometheus.kserve.io/port|path that would send the scrape where our server (on port `ours`) answers
    nothing: kept at our /metrics, and said. A port one of your containers declares (`sidecars`) is kept."""
    port, path = annotations.get(PROMETHEUS_KSERVE + "port"), annotations.get(PROMETHEUS_KSERVE + "path")
    if port is not None and port != ours and port in sidecars:
        return []
    return [
        f"metadata.annotations.{PROMETHEUS_KSERVE}{what}: {value!r}: the model server serves /metrics on its "
        f"http port ({ours}), where the pod is scraped (a port one of your containers declares would be kept)"
        for what, value, own in (("port", port, ours), ("path", path, "/metrics"))
        if value is not None and value != own
    ]


# Component annotations kubectl or a controller writes (kept quietly, as on metadata.annotations)
_COMPONENT_QUIET = (
    "kubectl.kubernetes.io/",
    "internal.serving.kserve.io/",
    "serving.knative.dev/creator",
    "serving.knative.dev/lastModifier",
)
# Scaling controls KServe reads per component (the component's over the InferenceService's), ours on metadata only
_SCALING_CONTROLS = ("autoscaling.knative.dev/", CLASS_KEY, *METRIC_KEYS, UTILIZATION_KEY)


def component_annotations(isvc: InferenceService) -> list[str]:
    """KServe's and Knative's control annotations on `spec.predictor|transformer.annotations`. KServe merges a
    component's annotations over the InferenceService's for that component; here the controls are read on
    `metadata.annotations` only, so one on a component would only be copied to its pods: each is said by name
    (the transformer's own `serving.dev/placement` is read there, and is not)."""
    out = []
    for name in ("predictor", "transformer"):
        component = getattr(isvc.spec, name)
        for key in component.annotations if component is not None else ():
            if not is_control_annotation(key) or key.startswith(_COMPONENT_QUIET):
                continue
            where = f"spec.{name}.annotations.{key}"
            if key == PLACEMENT_ANNOTATION:
                if name == "predictor":
                    out.append(f"{where}: no effect on the predictor; set it on spec.transformer.annotations")
            elif key.startswith(_SCALING_CONTROLS):
                out.append(
                    f"{where}: not read on a component here, where KServe reads it for this component over "
                    "metadata.annotations; no effect, locally or on Kubernetes, beyond a copy on the pod template: "
                    "set it in metadata.annotations, for every component, or use this component's minReplicas, "
                    "maxReplicas, scaleMetric, scaleTarget"
                )
            elif key in READ_ANNOTATIONS or key.startswith(PROMETHEUS_KSERVE):
                out.append(
                    f"{where}: read on metadata.annotations only, as KServe reads it; no effect here, locally or "
                    "on Kubernetes, beyond a copy on the pod template: move it to metadata.annotations"
                )
            else:
                out.append(f"{where}: not supported here; no effect (locally or on Kubernetes)")
    return out


def pod_annotations(annotations: dict[str, str]) -> dict[str, str]:
    """The service's `metadata.annotations` that go on its pod template (KServe's propagation)."""
    return {k: v for k, v in annotations.items() if not is_control_annotation(k)}


def scrape_overrides(annotations: dict[str, str]) -> dict[str, str]:
    """KServe's prometheus.kserve.io/port and /path, as the prometheus.io/* scrape annotations they set."""
    return {
        f"prometheus.io/{what}": annotations[PROMETHEUS_KSERVE + what]
        for what in ("port", "path")
        if PROMETHEUS_KSERVE + what in annotations
    }


@dataclass(frozen=True, slots=True)
class FieldEffect:
    path: str  # e.g. "predictor.batcher.maxLatency"; "[]" marks a list of blocks
    local: str  # what it does on this machine ("" = nothing: warned)
    kubernetes: str  # what it does in the rendered objects ("" = nothing)
    warn_if: Callable[[Any], str] | None = None  # a value-specific local caveat ("" = none)


def _other_annotations(value: Any) -> str:
    other = sorted(k for k in value if not is_control_annotation(k))  # controls: component_annotations
    return (
        f"{', '.join(other)}: no effect on the local backend (pod template annotations on Kubernetes)"
        if other
        else ""
    )


def _service_annotations(value: Any) -> str:
    """Annotations only a pod carries, warned locally; the Prometheus reason only for Prometheus's own keys."""
    prometheus = sorted(k for k in value if k.startswith(PROMETHEUS_KSERVE))
    other = sorted(k for k in pod_annotations(value) if k not in prometheus)
    said = []
    if prometheus:
        said.append(
            f"{', '.join(prometheus)}: no effect on the local backend (serving up's /metrics federates every "
            "model server); on Kubernetes: the pod template's prometheus.io/port|path"
        )
    if other:
        said.append(
            f"{', '.join(other)}: no effect on the local backend (there is no pod to annotate); on Kubernetes: "
            "copied to the pod template"
        )
    return "; ".join(said)


def _visibility(value: Any) -> str:
    found = [k for k in VISIBILITY_LABELS if k in value]
    return (
        f"{found[0]}: {value[found[0]]}: no effect on the local backend: serving up's router answers every service "
        "on its --host (127.0.0.1 by default: this machine only); on Kubernetes every service is reached through "
        "the router, as cluster-local as its Service (the chart's default ClusterIP)"
        if found
        else ""
    )


def _unfetched_scheme(value: Any) -> str:
    scheme = str(value).split("://", 1)[0].lower() if "://" in str(value) else ""
    if scheme == "https" and AZURE_FILES.match((urlsplit(str(value)).hostname or "").lower()):
        return (
            "an Azure Files share (KServe's https://ACCOUNT.file.core.windows.net/...) is not fetched here: the "
            "revision will fail to load; put the model in a blob container (https://ACCOUNT.blob.core.windows.net/"
            "CONTAINER/PATH or az://) or a path"
        )
    return (
        f"'{scheme}://' is KServe's but not fetched here: the revision will fail to load; download the model "
        "and use a path, http(s)://, s3://, gs:// or az://"
        if scheme in KSERVE_ONLY_SCHEMES
        else ""
    )


def _unfetched_items(items: Any) -> str:
    """KServe's `storageUris`: the first item whose scheme is not fetched here."""
    return next((f"{item.uri}: {c}" for item in items if (c := _unfetched_scheme(item.uri))), "")


def _storage_caveats(value: Any) -> str:
    """KServe's `storage:` of types we do not fetch, and ModelMesh's schemaPath."""
    caveats = []
    kind = value.parameters.get("type", "")
    if kind in KSERVE_ONLY_SCHEMES:
        caveats.append(_unfetched_scheme(f"{kind}://"))
    if value.schema_path is not None:
        caveats.append(f"schemaPath {value.schema_path!r}: ModelMesh's model schema; no effect here")
    return "; ".join(caveats)


_POD_MERGED = {
    "volumes": "pod volumes, beside ours (the model, /tmp)",
    "securityContext": "pod securityContext, its keys over ours",
    "initContainers": "init containers, before the storage-initializer",
    "terminationGracePeriodSeconds": "pod spec (ours: 45)",
    "enableServiceLinks": "pod spec (ours: false)",
}
_POD_LOCAL = {  # pod fields that also act on this machine
    "predictor.serviceAccountName": "the Secrets its ServiceAccount lists (both applied with serving apply -f) give "
    "the model's fetch its credentials, as KServe's storage-initializer gets them (tests/test_account_credentials.py)",
}
_POD = tuple(
    FieldEffect(f"{c}.{f}", _POD_LOCAL.get(f"{c}.{f}", ""), _POD_MERGED.get(f, "pod spec"))
    for c in ("predictor", "transformer")
    for f in KUBERNETES_ONLY
)
_CONTAINER_MERGED = {
    "ports": "container ports: h2c/grpc -> the model server's gRPC port (--grpc-port), http/http1 -> its HTTP "
    "port (unnamed: gRPC under protocolVersion grpc-v2), others declared as written",
    "readinessProbe": "container readinessProbe, replacing ours (a probe without a port: the http port)",
    "livenessProbe": "container livenessProbe, replacing ours (a probe without a port: the http port)",
    "startupProbe": "container startupProbe, replacing ours (a probe without a port: the http port)",
    "volumeMounts": "container volumeMounts, beside the model's",
    "securityContext": "container securityContext, its keys over ours",
}
# What of a container's fields the local supervisor acts on too.
_CONTAINER_LOCAL = {
    "livenessProbe": "its timeoutSeconds, periodSeconds and failureThreshold (Kubernetes' defaults for the rest): "
    "when a replica that stops answering is replaced (one that burns CPU meanwhile is given 30 s); its "
    "handler is ours (/v2/health/live)",
}
_MODEL_CONTAINER = tuple(
    FieldEffect(
        f"predictor.model.{f}", _CONTAINER_LOCAL.get(f, ""), _CONTAINER_MERGED.get(f, f"container {f}")
    )
    for f in KUBERNETES_CONTAINER_ONLY
)
_TRANSFORMER_CONTAINER = tuple(
    FieldEffect(
        f"transformer.containers[].{f}",
        _CONTAINER_LOCAL.get(f, ""),
        "container ports: the first is where the transformer listens (--port; a custom image's --http_port), "
        "named http for its Service and probes"
        if f == "ports"
        else _CONTAINER_MERGED.get(f, f"container {f}"),
    )
    for f in KUBERNETES_CONTAINER_ONLY
)
_SAME = "the same flags in the container"
_AUTOSCALER = (
    "autoscaler metric: router in-flight (concurrency), request rate (rps), process CPU/RSS (cpu, memory)"
)
_SCALER = "KEDA ScaledObject on the router's metrics (concurrency, rps; keda.enabled) or HPA (cpu, memory)"
_STRATEGY = (
    "the Deployment's strategy, as written (ours without it: RollingUpdate, maxUnavailable 0, maxSurge 1); "
    "locally a new revision is ready before the old one drains"
)
FIELD_EFFECTS: tuple[FieldEffect, ...] = (
    FieldEffect(
        "metadata.name", "service name, host NAME.NAMESPACE.DOMAIN, revision names", "object names, labels"
    ),
    FieldEffect("metadata.namespace", "route and state key", "namespace of every object"),
    FieldEffect(
        "metadata.annotations",
        "scaling annotations (autoscaling.knative.dev/*, serving.kserve.io/*; see Autoscaling)",
        "scaling the same; the others copied to the pod template (not KServe's or Knative's controls); "
        "prometheus.kserve.io/port|path -> the pod's prometheus.io/port|path",
        _service_annotations,
    ),
    FieldEffect(
        "metadata.labels",
        "labels of the InferenceService",
        "labels of the InferenceService, its Deployments and their pods (a component's own labels win; "
        "networking.kserve.io/visibility: no ingress of its own to skip: warned)",
        _visibility,
    ),
    FieldEffect(
        "predictor.minReplicas",
        "autoscaler floor (0: scale to zero; the router holds requests meanwhile)",
        "Deployment replicas / HPA or KEDA minimum (0 needs keda.enabled)",
    ),
    FieldEffect(
        "predictor.maxReplicas",
        "autoscaler ceiling (unset: `serving up --default-max-replicas`, default the CPU count)",
        "HPA / KEDA maximum (when above minReplicas; unset: KEDA's 100, no HPA)",
    ),
    FieldEffect("predictor.scaleMetric", _AUTOSCALER, _SCALER),
    FieldEffect("predictor.scaleTarget", "autoscaler target per replica", "HPA target / KEDA threshold"),
    FieldEffect(
        "predictor.scaleMetricType",
        "checked: what scaleTarget is (Utilization for cpu/memory, AverageValue for concurrency/rps)",
        "the same (the HPA's target type)",
    ),
    FieldEffect("predictor.autoScaling", _AUTOSCALER + " (metrics[0]: Resource cpu/memory)", "HPA metric"),
    FieldEffect(
        "predictor.canaryTrafficPercent",
        "traffic split in the router",
        "traffic split in the route ConfigMap",
    ),
    FieldEffect(
        "predictor.containerConcurrency", "--max-concurrency: a hard limit, the surplus queued", _SAME
    ),
    FieldEffect(
        "predictor.timeout",
        "--request-timeout; the router answers 504 after it (with a transformer in front, after "
        "spec.transformer.timeout); a transformer waits for the predictor as long (--predictor-timeout); unset: "
        "300 s, Knative's default",
        _SAME + "; router 504",
    ),
    FieldEffect("predictor.deploymentStrategy", "", _STRATEGY),
    FieldEffect("predictor.batcher", "adaptive batching on (`{}`: with the defaults)", _SAME),
    FieldEffect("predictor.batcher.maxBatchSize", "--max-batch-size", _SAME),
    FieldEffect("predictor.batcher.maxLatency", "--max-latency-ms", _SAME),
    FieldEffect("predictor.batcher.timeout", "", ""),
    FieldEffect("predictor.logger", "payload events (--logger-mode, --logger-url)", _SAME),
    FieldEffect("predictor.logger.mode", "--logger-mode", _SAME),
    FieldEffect("predictor.logger.url", "--logger-url", _SAME),
    FieldEffect("predictor.logger.metadataHeaders", "--logger-metadata-headers: events' `metadata`", _SAME),
    FieldEffect(
        "predictor.logger.metadataAnnotations",
        "--logger-annotations: the named InferenceService annotations, events' `annotations`",
        _SAME,
    ),
    FieldEffect("predictor.labels", "", "pod template labels"),
    FieldEffect(
        "predictor.annotations",
        "",
        "pod template annotations (KServe's and Knative's controls are read on metadata.annotations: warned)",
    ),
    # A custom predictor (no model) is refused by `serving up` with what to use instead; beside a model: warned.
    FieldEffect(
        "predictor.containers",
        "",
        "custom predictor (no model): the kserve-container as written, STORAGE_URI env -> storage-initializer; "
        "beside a model: sidecar containers",
    ),
    FieldEffect("predictor.model.modelFormat.name", "--runtime", _SAME),
    FieldEffect(
        "predictor.model.modelFormat.version",
        "ServingRuntime selection: the runtime must list this version",
        "the same selection",
    ),
    FieldEffect(
        "predictor.model.storageUri",
        "model files (resolved on this machine)",
        "storage-initializer pull",
        _unfetched_scheme,
    ),
    *(
        FieldEffect(
            path,
            "model files of every URI in one folder, each at its mountPath under /mnt/models (one item into "
            "/mnt/models is storageUri)",
            "storage-initializer pull URI /mnt/models --also URI PATH ...",
            _unfetched_items,
        )
        for path in ("predictor.storageUris", "predictor.model.storageUris")
    ),
    FieldEffect(
        "predictor.model.storage",
        "model files from s3://BUCKET/PATH, the bucket and credentials from the storage-config Secret's entry "
        "(Secrets applied with serving apply -f)",
        "storage-initializer pull of s3://BUCKET/PATH, STORAGE_CONFIG from the Secret (secretKeyRef)",
        _storage_caveats,
    ),
    FieldEffect(
        "predictor.model.runtime",
        "the ServingRuntime by name (its runtime and args), or module:Class -> --runtime",
        _SAME,
    ),
    FieldEffect("predictor.model.runtimeVersion", "", ""),
    FieldEffect(  # V1 and V2 are both served whatever it says
        "predictor.model.protocolVersion",
        "ServingRuntime selection: the runtime must speak it",
        "the same selection",
    ),
    FieldEffect(
        "predictor.model.args",
        "appended to `serving serve` (KServe's --model_name -> --name; port/dir flags dropped, warned)",
        _SAME,
    ),
    FieldEffect(
        "predictor.model.env",
        "process environment (plain values; a secretKeyRef from the Secrets applied with serving apply -f)",
        "container env (valueFrom too)",
    ),
    FieldEffect("predictor.model.resources", "", "container resources"),
    FieldEffect("predictor.model.name", "", ""),
    FieldEffect("predictor.model.image", "", "container image"),
    *_MODEL_CONTAINER,
    FieldEffect("transformer.minReplicas", "", "transformer HPA minimum (replicas follow the predictor's)"),
    FieldEffect("transformer.maxReplicas", "", "transformer HPA maximum"),
    FieldEffect("transformer.scaleMetric", "", "transformer HPA metric"),
    FieldEffect("transformer.scaleTarget", "", "transformer HPA target"),
    FieldEffect(
        "transformer.scaleMetricType", "", "checked: the transformer HPA's target type (Utilization)"
    ),
    FieldEffect("transformer.autoScaling", "", "transformer HPA metric"),
    FieldEffect(
        "transformer.canaryTrafficPercent",
        "traffic split in the router when only the transformer changed (a revision is the transformer and "
        "predictor pair; a predictor change is split by the predictor's)",
        "traffic split in the route ConfigMap, the same way",
    ),
    FieldEffect(
        "transformer.containerConcurrency",
        "transform --max-concurrency: a hard limit, the surplus queued (10 per slot, then 503)",
        _SAME,
    ),
    FieldEffect(
        "transformer.timeout",
        "the router answers 504 after it (the transformer answers the client, as its Knative timeout in KServe); "
        "the transformer's wait for the predictor is bounded by spec.predictor.timeout",
        "router 504",
    ),
    FieldEffect("transformer.deploymentStrategy", "", _STRATEGY),
    FieldEffect(
        "transformer.batcher",
        "transform --max-batch-size, --max-latency-ms: the requests batched before they are transformed (KServe's "
        "batcher in front of the transformer)",
        _SAME,
        lambda batcher: (
            "timeout: no effect (spec.transformer.timeout bounds each request)"
            if batcher.timeout is not None
            else ""
        ),
    ),
    FieldEffect("transformer.logger", "payload events (--logger-mode, --logger-url)", _SAME),
    FieldEffect("transformer.labels", "", "pod template labels"),
    FieldEffect(
        "transformer.annotations",
        f"{PLACEMENT_ANNOTATION}: {IN_PROCESS} runs the transformer inside the predictor's process",
        f"pod template annotations (other controls are read on metadata.annotations: warned); "
        f"{PLACEMENT_ANNOTATION}: {IN_PROCESS}: one Deployment (the predictor's) runs both",
        _other_annotations,
    ),
    FieldEffect("transformer.containers[].command", "`serving transform` command line", "container command"),
    FieldEffect("transformer.containers[].args", "`serving transform` arguments", "container args"),
    FieldEffect(
        "transformer.containers[].env",
        "process environment (plain values; a secretKeyRef from the Secrets applied with serving apply -f)",
        "container env (valueFrom too)",
    ),
    FieldEffect("transformer.containers[].image", "", "container image (a custom image gets KServe's args)"),
    FieldEffect("transformer.containers[].name", "", "container name"),
    FieldEffect("transformer.containers[].resources", "", "container resources"),
    *_TRANSFORMER_CONTAINER,
    *_POD,
)
EFFECTS_BY_PATH = {e.path: e for e in FIELD_EFFECTS}
# Why each field the table gives no Kubernetes effect does nothing there, and what KServe does with it: said by
# `serving render`, `convert` and `apply --backend kubernetes` (`no_kubernetes_effect`), as the local backend
# says its own. tests/test_spec_render_warnings.py checks every such row has a reason here.
NOT_ON_KUBERNETES = {
    "predictor.batcher.timeout": "KServe's batcher agent times its calls to the model with it; here the model "
    "server batches in its own process, and spec.predictor.timeout bounds each request",
    "predictor.model.runtimeVersion": "KServe's tag for the runtime's image; the model server here is the "
    "serving image, `serving render --image` or the chart's; set model.image for another",
    "predictor.model.name": "the model server's container is named kserve-container",
}


def values_at(isvc: InferenceService, path: str) -> list[Any]:
    """The values set at `path` (none, one, or one per list element); unset, empty and None are left out."""
    spec = isvc.spec
    predictor = spec.predictor
    if predictor.model is None and not predictor.containers:
        predictor = predictor.model_copy(update={"model": predictor.normalised_model()})
    roots: dict[str, Any] = {
        "metadata": isvc.metadata,
        "predictor": predictor,
        "transformer": spec.transformer,
    }
    head, *rest = path.split(".")
    return _walk([roots[head]], rest)


def _walk(nodes: list[Any], parts: list[str]) -> list[Any]:
    if not parts:
        return [n for n in nodes if n is not None and n != () and n != {} and n != ""]
    name, many = parts[0].removesuffix("[]"), parts[0].endswith("[]")
    found = []
    for node in nodes:
        if isinstance(node, BaseModel):
            value = getattr(node, field_name(type(node), name))
            found += list(value) if many and value is not None else [value]
    return _walk(found, parts[1:])


def field_name(model: type[BaseModel], alias: str) -> str:
    """The attribute of `model` that YAML spells `alias` (`hostPID` -> host_pid)."""
    return next(n for n, info in model.model_fields.items() if alias in (n, info.alias))


def written_path(isvc: InferenceService, path: str) -> str:
    """A table row's field as the user wrote it: `spec.` before it, KServe's shorthand (`sklearn:` ...) for the
    table's `model`."""
    predictor = isvc.spec.predictor
    written = next((f for f in SUPPORTED_FORMATS if getattr(predictor, f, None) is not None), "model")
    path = path if path.startswith("metadata.") else f"spec.{path}"
    return path.replace("spec.predictor.model.", f"spec.predictor.{written}.", 1)


def no_local_effect(isvc: InferenceService) -> list[str]:
    """One warning per field that is set but does nothing (or less than it says) on the local backend."""
    out = []
    for effect in FIELD_EFFECTS:
        values = values_at(isvc, effect.path)
        if not values:
            continue
        where = f"; on Kubernetes: {effect.kubernetes}" if effect.kubernetes else ""
        path = written_path(isvc, effect.path)
        value = values[0]
        if (
            effect.path == "metadata.annotations"
        ):  # those a logger's metadataAnnotations names ride its events
            value = {k: v for k, v in value.items() if k not in logged_annotations(isvc)}
        if not effect.local:
            out.append(f"{path}: accepted; no effect on the local backend{where}")
        elif effect.warn_if is not None and (caveat := effect.warn_if(value)):
            out.append(f"{path}: {caveat}")
    return out


def logged_annotations(isvc: InferenceService) -> set[str]:
    """The annotation keys a component's `logger.metadataAnnotations` names."""
    components = (isvc.spec.predictor, isvc.spec.transformer)
    return {
        key
        for c in components
        if c is not None and c.logger is not None
        for key in c.logger.metadata_annotations
    }


def no_kubernetes_effect(isvc: InferenceService) -> list[str]:
    """One warning per field that is set but does nothing in the rendered objects (the table's empty
    `kubernetes`), with why and what KServe does; and a `logger` without a url, which logs only where the chart
    gives a default sink."""
    out = [
        f"{written_path(isvc, e.path)}: accepted; no effect on Kubernetes: {NOT_ON_KUBERNETES.get(e.path, '')}"
        for e in FIELD_EFFECTS
        if not e.kubernetes and values_at(isvc, e.path)
    ]
    for name in ("predictor", "transformer"):
        component = getattr(isvc.spec, name)
        custom = name == "predictor" and isvc.spec.predictor.custom_container is not None  # warned as such
        if component is not None and component.logger is not None and not component.logger.url and not custom:
            out.append(
                f"spec.{name}.logger: no url: on Kubernetes events go to the chart's observability.logger.defaultUrl, "
                "KServe's logger.defaultUrl, which the operator gives the pods; `serving render` alone sets none, "
                "and without one nothing is logged"
            )
    return out


def grpc_warnings(isvc: InferenceService, grpc_routed: bool) -> list[str]:
    """A grpc-v2 predictor on a `serving up` that does not route gRPC: its REST still answers, its gRPC not."""
    predictor = isvc.spec.predictor
    field = next(
        (f for f in ("model", "sklearn", "xgboost", "onnx") if getattr(predictor, f) is not None), None
    )
    if grpc_routed or field is None or predictor.normalised_model().protocol_version != "grpc-v2":
        return []
    return [
        f"spec.predictor.{field}.protocolVersion: grpc-v2: gRPC is served by the router only with serving up "
        "--grpc-port (this one has none); REST (v1, v2) answers meanwhile"
    ]
