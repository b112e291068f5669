"""Pure render functions: one revision -> its Kubernetes objects (Deployment, Service, HPA/ScaledObject per component).

No I/O and no clock: the operator and `serving render` call these, tests validate the output against the
official Kubernetes schemas. Process arguments come from `process_args` (shared with the local backend),
so a revision runs the same `serving serve` / `serving transform` command everywhere.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.control.kubernetes.scaling import replicas_left_alone, scaler
from serving.control.process_args import (
    component_env,
    is_our_transformer,
    predictor_args,
    predictor_env,
    transformer_args,
)
from serving.revision import Revision
from serving.servingruntime import RuntimeContainer, ServingRuntime
from serving.spec import (
    KUBERNETES_CONTAINER_ONLY,
    KUBERNETES_ONLY,
    PREDICTOR_CONTAINER,
    ComponentSpec,
    Container,
    EnvVar,
    InferenceService,
    KubernetesContainer,
    Resources,
    flag_value,
    listener_ports,
)
from serving.spec_effects import field_name, pod_annotations, scrape_overrides
from serving.storage.kserve_secrets import StorageCredentials, credentials_from_secrets
from serving.storage.storage_spec import ResolvedStorage, fallback, initializer_env

GROUP_PREFIX = "serving.dev"
MODEL_DIR = "/mnt/models"  # where KServe's storage-initializer puts the model, too
PVC_ROOT = "/mnt/pvc"
PORT = 8080
GRPC_PORT = 8081  # predictors also speak the Open Inference Protocol over gRPC (KServe's gRPC port); transformers REST only
POD_FIELDS = KUBERNETES_ONLY  # the user's pod fields, rendered as written (volumes... merged with ours)
LABEL_ISVC, LABEL_REVISION, LABEL_COMPONENT = (
    f"{GROUP_PREFIX}/{k}" for k in ("isvc", "revision", "component")
)


@dataclass(frozen=True)
class RenderSettings:
    image: str = "ghcr.io/serving-dev/serving:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    # Secrets (by name, in each InferenceService's namespace) for pulling `image`: every pod that runs it
    image_pull_secrets: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
    default_resources: dict[str, Any] = field(
        default_factory=lambda: {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}
    )
    keda_prometheus_url: str = (
        ""  # set: concurrency/rps scale with a KEDA ScaledObject on the router's metrics
    )
    # service account name -> its Secrets (read by the caller): KServe's storage credentials for the initializer
    service_account_secrets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # revision name -> where its `storage:` points (read from its storage Secret by the caller; values dropped);
    # a revision missing here renders its path, for the initializer to complete from its STORAGE_CONFIG
    storage_locations: dict[str, ResolvedStorage] = field(default_factory=dict)
    # revision name -> the `serving serve` flags of the ServingRuntime selected for it (read by the caller)
    runtime_flags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # revision name -> that runtime's container `env` (the predictor's own `env` goes over it)
    runtime_env: dict[str, tuple[EnvVar, ...]] = field(default_factory=dict)
    # revision name -> that runtime (placeholders filled in): its pod fields, container fields and sidecars
    runtimes: dict[str, ServingRuntime] = field(default_factory=dict)


def object_name(revision: Revision, component: str) -> str:
    """`<revision>-<component>`, the isvc part shortened so the name stays a 63-char DNS label."""
    name = f"{revision.name}-{component}"
    if len(name) <= 63:
        return name
    keep = 63 - len(component) - 10
    return f"{revision.isvc[:keep].rstrip('-')}-{revision.digest[:8]}-{component}"


def service_url(revision: Revision, component: str, settings: RenderSettings) -> str:
    return f"http://{object_name(revision, component)}.{revision.namespace}.svc.{settings.cluster_domain}"


def entry_component(revision: Revision) -> str:
    return "transformer" if revision.transformer_process is not None else "predictor"


def labels(revision: Revision, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": revision.isvc,
        "app.kubernetes.io/instance": revision.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "serving",
        "app.kubernetes.io/managed-by": "serving-operator",
        LABEL_ISVC: revision.isvc,
        LABEL_REVISION: revision.name,
        LABEL_COMPONENT: component,
    }


def selector(revision: Revision, component: str) -> dict[str, str]:
    return {LABEL_REVISION: revision.name, LABEL_COMPONENT: component}


def owner_reference(isvc: InferenceService, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP_PREFIX}/v1beta1",
        "kind": "InferenceService",
        "name": isvc.metadata.name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(revision: Revision, component: str, owner: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": object_name(revision, component),
        "namespace": revision.namespace,
        "labels": labels(revision, component),
    }
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return meta


def _env(items: tuple[EnvVar, ...]) -> list[dict[str, Any]]:
    return [
        {"name": e.name, "valueFrom": e.value_from}
        if e.value_from is not None
        else {"name": e.name, "value": e.value}
        for e in items
    ]


def _resources(spec: Resources | None, settings: RenderSettings) -> dict[str, Any]:
    if spec is None or not (spec.limits or spec.requests):
        return settings.default_resources
    return {
        k: {n: str(v) for n, v in getattr(spec, k).items()}
        for k in ("limits", "requests")
        if getattr(spec, k)
    }


def _probe(path: str, period_s: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period_s,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def _storage(
    revision: Revision, settings: RenderSettings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The storage-initializer: `serving storage pull URI /mnt/models` into an emptyDir (pvc:// mounted); for
    KServe's `storageUris`, each further URI `--also URI /mnt/models/PATH`, as KServe's takes (uri, path) pairs."""
    uri = revision.storage_uri or ""
    pulls = [
        (item.uri, posixpath.join(MODEL_DIR, item.subpath) if item.subpath else MODEL_DIR)
        for item in revision.storage_uris
    ]
    if pulls:
        uri = pulls[0][0]
    location = None
    if revision.storage is not None:  # KServe's `storage:` (the Secret's entry, never the service account's)
        spec = revision.storage
        location = settings.storage_locations.get(revision.name) or fallback(
            spec.key, spec.parameters, uri=revision.storage_uri
        )
        uri = location.uri
    elif not uri:
        return [], [], []
    volumes: list[dict[str, Any]] = [{"name": "model", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [
        {"name": "model", "mountPath": MODEL_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    args = ["storage", "pull", uri, pulls[0][1] if pulls else MODEL_DIR, "--cache-dir", "/tmp/cache"]
    for also, path in pulls[1:]:
        args += ["--also", also, path]
    if location is not None and not uri:  # the initializer builds s3://BUCKET/PATH from its STORAGE_CONFIG
        args[2:3] = ["--storage-path", (revision.storage.path if revision.storage else None) or ""]
    claims = sorted(
        {
            u.removeprefix("pvc://").split("/", 1)[0]
            for u in [uri, *(p[0] for p in pulls)]
            if u.startswith("pvc://")
        }
    )
    for i, claim in enumerate(claims):
        name = "pvc" if i == 0 else f"pvc-{i}"
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": name, "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True})
    if claims:
        args += ["--pvc-root", PVC_ROOT]
    credentials = credentials_from_secrets(settings.service_account_secrets.get(revision.service_account, ()))
    if location is not None:  # as KServe: a storage spec's Secret instead of the service account's
        key = revision.storage.key if revision.storage else None
        credentials = StorageCredentials(env=initializer_env(location, key, revision.storage_uri))
    volumes += credentials.volumes
    init = {
        "name": "storage-initializer",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["serving"],
        "args": args,
        "volumeMounts": mounts + credentials.mounts,
        "env": credentials.env + _env(component_env(revision.predictor)),
        "securityContext": _SECURITY,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
    }
    main_mounts: list[dict[str, Any]] = [
        {"name": "model", "mountPath": MODEL_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    return [init], volumes, main_mounts


def _declared_ports(pod: dict[str, Any]) -> set[str]:
    """Every containerPort a container of the pod declares, as the scrape annotation writes it."""
    return {
        str(port.get("containerPort"))
        for container in pod.get("containers", ())
        for port in container.get("ports", ())
        if isinstance(port, dict)
    }


def model_ports(
    revision: Revision, runtime: RuntimeContainer | None = None
) -> tuple[int, int, list[dict[str, Any]]]:
    """Where our model server listens in its container (HTTP, gRPC), `model.ports` mapped (KServe's gRPC
    example names its port h2c), else those of the ServingRuntime's container, and the other ports declared."""
    model = revision.model
    if model is None:
        return PORT, GRPC_PORT, []
    http, grpc, others = listener_ports(
        model.ports or (runtime.ports if runtime is not None else ()), model.protocol_version
    )
    return http or PORT, grpc or GRPC_PORT, others


def runtime_container(revision: Revision, settings: RenderSettings) -> RuntimeContainer | None:
    """The main container of the ServingRuntime selected for this revision, if any."""
    runtime = settings.runtimes.get(revision.name)
    return runtime.spec.main_container if runtime is not None else None


def _merged_resources(base: Resources | None, over: Resources | None) -> Resources | None:
    """KServe's merge of the runtime's container with the model's: the model's limits and requests over the
    runtime's, key by key."""
    if base is None or over is None:
        return over or base
    return Resources(limits={**base.limits, **over.limits}, requests={**base.requests, **over.requests})


def predictor_container(revision: Revision, settings: RenderSettings) -> dict[str, Any]:
    model = revision.model
    from_runtime = runtime_container(revision, settings)
    http, grpc, other_ports = model_ports(revision, from_runtime)
    argv = predictor_args(revision, Path(MODEL_DIR), settings.runtime_flags.get(revision.name, ())) + [
        "--host",
        "0.0.0.0",
        "--port",
        str(http),
        "--grpc-port",
        str(grpc),
    ]
    containers = revision.predictor.containers
    resources = (
        _merged_resources(from_runtime.resources if from_runtime else None, model.resources)
        if model is not None
        else (containers[0].resources if containers else None)
    )
    return {
        "name": "kserve-container",
        "image": (model.image if model is not None else None) or settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["serving"],
        "args": argv,
        "env": _env(predictor_env(revision, settings.runtime_env.get(revision.name, ()))),
        "ports": [
            {"name": "http", "containerPort": http, "protocol": "TCP"},
            {"name": "grpc", "containerPort": grpc, "protocol": "TCP"},
            *other_ports,
        ],
        "readinessProbe": _probe("/v2/health/ready", 2, 3),
        "livenessProbe": _probe("/v2/health/live", 10, 6),
        "startupProbe": _probe("/v2/health/live", 2, 150),
        "resources": _resources(resources, settings),
        "securityContext": _SECURITY,
    }


_PROBES = ("readinessProbe", "livenessProbe", "startupProbe")


def with_container_fields(container: dict[str, Any], spec: KubernetesContainer | None) -> dict[str, Any]:
    """The user's Kubernetes-only container fields over the container we built: probes replace ours (one
    without a port probes the `http` port), volumeMounts are added to ours, securityContext keys go over
    ours, the rest as written. `ports` are not touched here (each kind of container places them itself)."""
    if spec is None:
        return container
    out = dict(container)
    for name in KUBERNETES_CONTAINER_ONLY:
        value = getattr(spec, field_name(type(spec), name))
        if name == "ports" or value in (None, (), {}):
            continue
        if name in _PROBES:
            out[name] = _probe_port(value, container.get("ports", []))
        elif name == "volumeMounts":  # merged by mountPath, as Kubernetes merges containers: the later wins
            paths = {m.get("mountPath") for m in value}
            kept = [m for m in container.get(name, []) if m.get("mountPath") not in paths]
            out[name] = [*kept, *(dict(m) for m in value)]
        elif name == "securityContext":
            out[name] = _security_over(container.get(name, {}), value)
        else:
            out[name] = [dict(v) for v in value] if isinstance(value, tuple) else value
    return out


def _probe_port(probe: dict[str, Any], ports: list[dict[str, Any]]) -> dict[str, Any]:
    """KServe's documented probes give httpGet a path and no port (Knative fills in the container's): the
    container's `http` port, else its first; a container that declares none keeps the probe as written."""
    named = [p["name"] for p in ports if p.get("name") == "http"]
    port = named[0] if named else (ports[0].get("containerPort") if ports else None)
    out = dict(probe)
    for handler in ("httpGet", "tcpSocket"):
        if port is not None and isinstance(out.get(handler), dict) and "port" not in out[handler]:
            out[handler] = {**out[handler], "port": port}
    return out


def _security_over(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Their keys over ours; running as root (runAsUser 0) drops our runAsNonRoot, which would refuse it."""
    merged = {**ours, **theirs}
    if theirs.get("runAsUser") == 0 and "runAsNonRoot" not in theirs:
        merged.pop("runAsNonRoot", None)
    return merged


def custom_predictor_container(revision: Revision, settings: RenderSettings) -> dict[str, Any]:
    """KServe's custom predictor: the user's container as written (image, command, args, env, ports, resources),
    its first port named `http` (the Service and the readiness probe use it; 8080 when it gives none)."""
    spec = revision.predictor.custom_container
    assert spec is not None
    container = user_container(spec, settings)
    ports = [dict(p) for p in spec.ports] or [{"containerPort": PORT, "protocol": "TCP"}]
    ports[0]["name"] = "http"
    container["ports"] = ports
    for probe in _PROBES:  # a probe written without a port: the `http` port, now that it is named
        if probe in container:
            container[probe] = _probe_port(container[probe], ports)
    if spec.readiness_probe is None:
        container["readinessProbe"] = {"tcpSocket": {"port": "http"}, "periodSeconds": 2}
    return container


def user_container(spec: Container, settings: RenderSettings) -> dict[str, Any]:
    """A container the user wrote, as written (resources defaulted, as KServe defaults them)."""
    container: dict[str, Any] = {"name": spec.name or PREDICTOR_CONTAINER, "image": spec.image}
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    if spec.env:
        container["env"] = _env(spec.env)
    if spec.ports:
        container["ports"] = [dict(p) for p in spec.ports]
    container["resources"] = _resources(spec.resources, settings)
    return with_container_fields(container, spec)


def _custom_predictor_port(revision: Revision) -> int:
    spec = revision.predictor.custom_container
    port = spec.ports[0].get("containerPort") if spec is not None and spec.ports else None
    return port if isinstance(port, int) else PORT


def transformer_container(revision: Revision, settings: RenderSettings) -> dict[str, Any]:
    """Our `serving transform` with this revision's predictor Service; a custom image gets KServe's args. It
    listens on `transformer_port`, its first declared port named `http` (the Service and the probes use it)."""
    assert revision.transformer is not None
    spec = revision.transformer.containers[0]
    predictor = service_url(revision, "predictor", settings)
    port = transformer_port(revision)
    ports = [dict(p) for p in spec.ports] or [{"containerPort": port, "protocol": "TCP"}]
    ports[0] = {"name": "http", **{k: v for k, v in ports[0].items() if k != "name"}}
    container: dict[str, Any] = {
        "name": spec.name or "kserve-container",
        "image": spec.image or settings.image,
        "imagePullPolicy": spec.image_pull_policy or settings.image_pull_policy,
        "env": _env(component_env(revision.transformer)),
        "ports": ports,
        "resources": _resources(spec.resources, settings),
        "securityContext": _SECURITY,
    }
    if is_our_transformer(revision):
        container["command"] = ["serving"]
        container["args"] = transformer_args(revision, predictor) + ["--host", "0.0.0.0", "--port", str(port)]
        container["readinessProbe"] = _probe("/v2/health/ready", 2, 3)
        container["livenessProbe"] = _probe("/v2/health/live", 10, 6)
    else:  # a custom transformer image, called as KServe calls one
        if spec.command:
            container["command"] = list(spec.command)
        container["args"] = list(spec.args) + kserve_transformer_args(
            list(spec.args), revision.isvc, predictor.removeprefix("http://"), port
        )
        container["readinessProbe"] = {"tcpSocket": {"port": "http"}, "periodSeconds": 2}
    return container


def kserve_transformer_args(args: list[str], isvc: str, predictor_host: str, port: int = PORT) -> list[str]:
    """What KServe appends to a custom transformer's args: each of --model_name (the InferenceService's name),
    --predictor_host and --http_port (the port it is declared to listen on, 8080 by default) only when the args
    do not already give it (KServe's `IncludesArg`: the flag itself or any arg starting with it, e.g.
    `--model_name=mnist`)."""
    out: list[str] = []
    for flag, value in (
        ("--model_name", isvc),
        ("--predictor_host", predictor_host),
        ("--http_port", str(port)),
    ):
        if not any(a == flag or a.startswith(flag) for a in args):
            out += [flag, value]
    return out


def transformer_port(revision: Revision) -> int:
    """The port the transformer listens on: the first its container declares (as KServe's Service targets
    it, and as a custom predictor's), else a custom image's own `--http_port` if its args give one, else 8080."""
    assert revision.transformer is not None
    spec = revision.transformer.containers[0]
    declared = spec.ports[0].get("containerPort") if spec.ports else None
    if isinstance(declared, int) and not isinstance(declared, bool):
        return declared
    given = None if is_our_transformer(revision) else flag_value(spec.args, "--http_port")
    return int(given) if given is not None and given.isdigit() else PORT


def _pod_fields(source: ComponentSpec) -> dict[str, Any]:
    """The pod-level fields the user set (camelCase, as the pod spec spells them)."""
    dumped = source.model_dump(
        mode="json",
        by_alias=True,
        include={field_name(type(source), k) for k in POD_FIELDS},
        exclude_none=True,
    )
    return {k: v for k, v in dumped.items() if v not in ([], {})}


def _runtime_pod_fields(runtime: ServingRuntime | None) -> dict[str, Any]:
    """A ServingRuntime's pod fields (KServe's ServingRuntimePodSpec, containers and metadata aside)."""
    if runtime is None:
        return {}
    dumped = runtime.spec.model_dump(
        mode="json",
        by_alias=True,
        include={"node_selector", "affinity", "tolerations", "image_pull_secrets", "volumes", "host_ipc"},
        exclude_none=True,
    )
    return {k: v for k, v in dumped.items() if v not in ([], {}, False)}


def _by_name(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kubernetes' merge of a list keyed by name: theirs replace ours of the same name, the others follow."""
    names = {item.get("name") for item in theirs}
    return [item for item in ours if item.get("name") not in names] + list(theirs)


def _with_pod_fields(pod: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """Pod fields over the pod we built (a ServingRuntime's, then the predictor's: KServe's order, the
    predictor wins), merged as Kubernetes merges KServe's runtime and predictor pod specs: volumes and
    imagePullSecrets by name, nodeSelector by key, affinity by kind, init containers before ours (KServe
    appends its storage-initializer to yours), securityContext keys over ours, the rest replaced."""
    out = dict(pod)
    for name, value in fields.items():
        if name in ("volumes", "imagePullSecrets"):
            out[name] = _by_name(out.get(name, []), value)
        elif name in ("nodeSelector", "affinity"):
            out[name] = {**out.get(name, {}), **value}
        elif name == "initContainers":
            out[name] = [*value, *out.get(name, [])]
        elif name == "securityContext":
            out[name] = _security_over(out.get(name, {}), value)
        else:
            out[name] = value
    return out


def _strategy(component: ComponentSpec) -> dict[str, Any]:
    """The component's `deploymentStrategy` as written; ours without one: a new pod is ready before an old one
    goes (maxUnavailable 0, maxSurge 1)."""
    given = component.deployment_strategy
    if given is None:
        return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    return given.model_dump(mode="json", by_alias=True, exclude_none=True)


def deployment(
    revision: Revision,
    component: str,
    replicas: int | None,
    settings: RenderSettings,
    owner: dict[str, Any] | None = None,
    service_annotations: dict[str, str] | None = None,
    service_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`replicas=None` leaves the count to the HPA (so a patch never fights it). `service_annotations`: the
    InferenceService's `metadata.annotations`, copied to the pod template as KServe does (not its controls).
    `service_labels`: its `metadata.labels`, on the Deployment and its pods as KServe puts them (under the
    component's own labels, and ours over both)."""
    source: ComponentSpec | None = revision.predictor if component == "predictor" else revision.transformer
    assert source is not None
    custom = component == "predictor" and revision.predictor.custom_container is not None
    runtime = settings.runtimes.get(revision.name) if component == "predictor" and not custom else None
    if component == "predictor":
        init, volumes, mounts = _storage(revision, settings)
        if custom:
            container = custom_predictor_container(revision, settings)
            user_mounts = container.pop("volumeMounts", [])  # rendered as written: after the model's
            mounts = [
                m for m in mounts if m["name"] == "model"
            ] + user_mounts  # its image's own /tmp, not ours
        else:  # ours, then the runtime's container fields, then the model's (KServe's merge: the model wins)
            container = predictor_container(revision, settings)
            container = with_container_fields(container, runtime_container(revision, settings))
            container = with_container_fields(container, revision.model)
            mounts = mounts + container.pop("volumeMounts", [])
        if mounts:
            container["volumeMounts"] = mounts
    else:
        init, volumes = [], [{"name": "tmp", "emptyDir": {}}]
        assert revision.transformer is not None
        container = with_container_fields(
            {
                **transformer_container(revision, settings),
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            },
            revision.transformer.containers[0],
        )
    main = revision.predictor.custom_container if component == "predictor" else source.containers[0]
    sidecars = [  # KServe runs a component's other containers beside its server (the runtime's first), as written
        user_container(c, settings)
        for c in (*(runtime.spec.sidecars if runtime is not None else ()), *source.containers)
        if c is not main
    ]
    pod: dict[str, Any] = {
        "containers": [container, *sidecars],
        "volumes": volumes,
        "securityContext": (
            {"fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}}  # the user ID is its image's
            if custom
            else {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            }
        ),
        "terminationGracePeriodSeconds": 45,
        "enableServiceLinks": False,
    }
    if init:
        pod["initContainers"] = init
    if settings.image_pull_secrets:  # the runtime's and the component's own are merged over these by name
        pod["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    pod = _with_pod_fields(_with_pod_fields(pod, _runtime_pod_fields(runtime)), _pod_fields(source))
    if custom:
        metrics_port = _custom_predictor_port(revision)
    elif component == "predictor":
        metrics_port = model_ports(revision, runtime_container(revision, settings))[0]
    else:
        metrics_port = transformer_port(revision)
    given = service_annotations or {}
    from_runtime = (runtime.spec.annotations or {}) if runtime is not None else {}
    annotations = {  # KServe's priority: the predictor's over the InferenceService's over the runtime's
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(metrics_port),
        "prometheus.io/path": "/metrics",
        **pod_annotations(from_runtime),
        **scrape_overrides(from_runtime),
        **pod_annotations(given),
        **scrape_overrides(given),
        **source.annotations,
    }
    if not custom and (
        annotations["prometheus.io/port"] == str(metrics_port)
        or annotations["prometheus.io/port"] not in _declared_ports(pod)
    ):  # our server's own /metrics (nothing of ours listens on another port, or answers another path there)
        annotations["prometheus.io/port"], annotations["prometheus.io/path"] = str(metrics_port), "/metrics"
    runtime_labels = (runtime.spec.labels or {}) if runtime is not None else {}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(revision, component)},
        "strategy": _strategy(source),
        "template": {
            "metadata": {
                "labels": {
                    **runtime_labels,
                    **(service_labels or {}),
                    **source.labels,
                    **labels(revision, component),
                },
                "annotations": annotations,
            },
            "spec": pod,
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    meta = _metadata(revision, component, owner)
    meta["labels"] = {**runtime_labels, **(service_labels or {}), **meta["labels"]}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def service(revision: Revision, component: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """Port 80 -> the entry container's `http` port; our predictor also serves gRPC (a custom image: REST)."""
    grpc = component == "predictor" and revision.predictor.custom_container is None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(revision, component, owner),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(revision, component),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
            + (
                [
                    {
                        "name": "grpc",
                        "port": GRPC_PORT,
                        "targetPort": "grpc",
                        "protocol": "TCP",
                        "appProtocol": "kubernetes.io/h2c",
                    }
                ]
                if grpc
                else []
            ),
        },
    }


ENTRY_COMPONENT = "entry"  # LABEL_COMPONENT of a service's in-cluster name (an ExternalName to the router)


def in_cluster_names(isvc: InferenceService) -> tuple[str, ...]:
    """The Service names KServe gives a service in its namespace: NAME, and NAME-predictor where no transformer
    sits in front (with one, a predictor-only address would skip it: not offered)."""
    name = isvc.metadata.name
    return (name,) if isvc.spec.transformer is not None else (name, f"{name}-predictor")


def in_cluster_hosts(isvc: InferenceService, cluster_domain: str) -> tuple[str, ...]:
    """Every Host a pod may send for those names: NAME.NAMESPACE, NAME.NAMESPACE.svc and the full name."""
    namespace = isvc.metadata.namespace
    return tuple(
        host
        for service in in_cluster_names(isvc)
        for host in (
            f"{service}.{namespace}",
            f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.{cluster_domain}",
        )
    )


def entry_services(
    isvc: InferenceService, router_host: str, owner: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """ExternalName Services for `in_cluster_names`, pointing at the router (`router_host`: its Service's DNS
    name), so that `status.address.url` (http://NAME.NAMESPACE.svc.CLUSTER_DOMAIN) answers in the cluster as
    KServe's does; the router knows those Host values as the service's aliases."""
    out = []
    for service_name in in_cluster_names(isvc):
        meta: dict[str, Any] = {
            "name": service_name,
            "namespace": isvc.metadata.namespace,
            "labels": {
                "app.kubernetes.io/name": isvc.metadata.name,
                "app.kubernetes.io/component": ENTRY_COMPONENT,
                "app.kubernetes.io/part-of": "serving",
                "app.kubernetes.io/managed-by": "serving-operator",
                LABEL_ISVC: isvc.metadata.name,
                LABEL_COMPONENT: ENTRY_COMPONENT,
            },
        }
        if owner is not None:
            meta["ownerReferences"] = [owner]
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": {
                    "type": "ExternalName",
                    "externalName": router_host,
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                },
            }
        )
    return out


def revision_objects(
    isvc: InferenceService,
    revision: Revision,
    replicas: int,
    settings: RenderSettings,
    owner: dict[str, Any] | None = None,
    existing: bool = False,
) -> list[dict[str, Any]]:
    """Every object of one revision; `existing=True` omits replicas where an HPA, KEDA or an external
    autoscaler (`serving.kserve.io/autoscalerClass: external`) owns them."""
    components = ["predictor"] + (["transformer"] if revision.transformer_process is not None else [])
    out: list[dict[str, Any]] = []
    for component in components:
        autoscaler = scaler(
            isvc,
            component,
            object_name(revision, component),
            _metadata(revision, component, owner),
            revision.name,
            settings.keda_prometheus_url,
        )
        owned = autoscaler is not None or replicas_left_alone(isvc)  # external: someone else's autoscaler
        count = None if (owned and existing) else _component_replicas(isvc, component, replicas)
        out += [
            deployment(
                revision, component, count, settings, owner, isvc.metadata.annotations, isvc.metadata.labels
            ),
            service(revision, component, owner),
        ]
        if autoscaler is not None:
            out.append(autoscaler)
    return out


def _component_replicas(isvc: InferenceService, component: str, replicas: int) -> int:
    """The revision's replicas (the plan's: scaled, stopped, canary) for the predictor; a transformer that sets
    its own `minReplicas` runs that many while the revision runs (its own Deployment, as in KServe), else as
    many as the predictor."""
    transformer = isvc.spec.transformer
    if component != "transformer" or transformer is None or transformer.min_replicas is None or not replicas:
        return replicas
    return max(transformer.min_replicas, 1)
