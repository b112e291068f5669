"""InferenceService: KServe `serving.kserve.io/v1beta1` YAML, accepted as written for the fields we support.

Unknown fields are errors naming their path; Kubernetes-only pod fields are kept (the Kubernetes backend
renders them) and produce a warning on the local backend. The `sklearn:` / `xgboost:` / `onnx:`
shorthands are normalised to `predictor.model.modelFormat` here, once.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel, to_snake

from serving.autoscale.knobs import (
    AutoscaleSpecError,
    knobs_from,
    scaling_warnings,
    unknown_annotations,
    with_bounds,
)
from serving.errors import BadRequest
from serving.spec_suggest import did_you_mean
from serving.var_refs import expand_all, expanded_env

API_VERSIONS = ("serving.kserve.io/v1beta1", "serving.dev/v1beta1")
OUR_GROUP = "serving.dev"
KFSERVING_GROUP = "serving.kubeflow.org"  # KFServing's, renamed serving.kserve.io when it became KServe
SUPPORTED_FORMATS = ("sklearn", "xgboost", "onnx")
KSERVE_ONLY_SCHEMES = frozenset({"hdfs", "webhdfs", "azure", "oci", "hf"})  # accepted; not fetched here
KNOWN_SCHEMES = frozenset({"file", "http", "https", "pvc", "s3", "gs", "az"}) | KSERVE_ONLY_SCHEMES
MULTI_NODE = (  # KServe's workerSpec, on an InferenceService or a ServingRuntime
    "not supported: multi-node serving (a model split across pods by pipeline/tensor parallelism) has no "
    "equivalent here; serve the model from one pod (remove workerSpec)"
)
UNSUPPORTED_FORMATS = ("tensorflow", "pytorch", "triton", "lightgbm", "paddle", "pmml", "huggingface")
# Pod fields KServe's PodSpec takes (inlined in the predictor and the transformer) that only Kubernetes acts on:
# kept as written, rendered into the pod spec (see serving/control/kubernetes/render.py), warned locally.
KUBERNETES_ONLY = (
    "serviceAccountName",
    "nodeSelector",
    "tolerations",
    "affinity",
    "imagePullSecrets",
    "priorityClassName",
    "schedulerName",
    "runtimeClassName",
    "volumes",
    "securityContext",
    "initContainers",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "shareProcessNamespace",
    "dnsPolicy",
    "dnsConfig",
    "hostAliases",
    "topologySpreadConstraints",
    "terminationGracePeriodSeconds",
    "enableServiceLinks",
    "automountServiceAccountToken",
    "readinessGates",
    "preemptionPolicy",
    "os",
)
# Container fields (corev1.Container, inlined in `model:` and in each of `containers:`) that only Kubernetes acts
# on: rendered into the container (see render.py for how they meet ours), warned locally.
KUBERNETES_CONTAINER_ONLY = (
    "ports",
    "readinessProbe",
    "livenessProbe",
    "startupProbe",
    "volumeMounts",
    "securityContext",
    "lifecycle",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "envFrom",
    "workingDir",
)
MODEL_MOUNT = (
    "/mnt/models"  # where a model server finds its model (KServe's storage-initializer puts it there)
)
# Volumes the rendered pod has already (the model, /tmp, a pvc:// claim): a user's volume may not reuse the names.
RESERVED_VOLUMES = ("model", "tmp", "pvc")
GRPC_PORT_NAMES = ("h2c", "grpc")  # KServe's gRPC example names its port h2c (HTTP/2 cleartext)
HTTP_PORT_NAMES = ("http", "http1")


# What a component without `timeout` gets: Knative's revision-timeout-seconds default, the limit a KServe
# InferenceService without `timeout` runs under (its model server sets none of its own).
DEFAULT_TIMEOUT_S = 300
COLLOCATED_TRANSFORMER = "transformer-container"  # KServe's transformer in the predictor's pod
PREDICTOR_CONTAINER = "kserve-container"  # KServe's name for the container that serves (custom predictor)
STORAGE_URI_ENV = (
    "STORAGE_URI"  # a custom predictor's storageUri, as KServe reads it from that container's env
)

# Where a transformer runs, set on `spec.transformer.annotations` (part of the revision: changing it rolls out).
PLACEMENT_ANNOTATION = f"{OUR_GROUP}/placement"
STOP_ANNOTATION = (
    "serving.kserve.io/stop"  # KServe's: "true" stops the service, keeping its spec and revisions
)
SEPARATE, IN_PROCESS = "separate", "in-process"
PLACEMENTS = (SEPARATE, IN_PROCESS)
# A transformer's own process settings, which an in-process one (it runs in the predictor's replicas) has not.
IN_PROCESS_IGNORED = ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "autoScaling")


# KServe fields refused here, with why and what to write instead (else "unknown field").
KSERVE_UNSERVED = {
    **{
        f"spec.{block}": f"belongs on a component: spec.predictor.{block} (or spec.transformer.{block}), where "
        f"KServe reads it"
        for block in ("logger", "batcher")
    },
    "spec.transformer.storageUris": "KServe's, not served here: storageUris fetch the predictor's model files "
    "(spec.predictor.storageUris); a transformer gets its files from its image or its args",
}


def older_name(data: Any, old: str, new: str, why: str) -> Any:
    """A mapping with a field's older name (`old`) read as `new`; both given and different is an error."""
    if not isinstance(data, dict) or old not in data:
        return data
    data = dict(data)
    value = data.pop(old)
    given = data.get(new, data.get(to_snake(new)))
    if given is not None and given != value:
        raise ValueError(f"{old} {value!r} and {new} {given!r} disagree ({why})")
    data.setdefault(new, value)
    return data


class SpecError(BadRequest):
    """An InferenceService the user must fix; the message starts with the field path."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class EnvVar(Strict):
    name: str
    value: str = ""
    value_from: dict[str, Any] | None = (
        None  # Kubernetes: all rendered; locally a secretKeyRef only (applied Secrets)
    )


class Resources(Strict):
    limits: dict[str, str | int | float] = Field(default_factory=dict)
    requests: dict[str, str | int | float] = Field(default_factory=dict)


class ModelFormat(Strict):
    name: str
    version: str | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        name = name.lower()
        if name in ("scikit-learn", "sklearn"):
            return "sklearn"
        if name not in SUPPORTED_FORMATS:
            raise ValueError(
                f"model format {name!r} is not supported; use one of {', '.join(SUPPORTED_FORMATS)} "
                "(or your own runtime class: runtime: module:Class)"
            )
        return name


class KubernetesContainer(Strict):
    """corev1.Container fields KServe accepts that only Kubernetes acts on (KUBERNETES_CONTAINER_ONLY)."""

    ports: tuple[dict[str, Any], ...] = ()
    readiness_probe: dict[str, Any] | None = None
    liveness_probe: dict[str, Any] | None = None
    startup_probe: dict[str, Any] | None = None
    volume_mounts: tuple[dict[str, Any], ...] = ()
    security_context: dict[str, Any] | None = None
    lifecycle: dict[str, Any] | None = None
    termination_message_path: str | None = None
    termination_message_policy: Literal["File", "FallbackToLogsOnError"] | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    env_from: tuple[dict[str, Any], ...] = ()
    working_dir: str | None = None


class StorageSpec(Strict):
    """KServe's `storage:`: a path in the bucket an entry (`key`) of the `storage-config` Secret describes
    (`serving.kserve.io/storageSecretName` names another Secret); `parameters` override that entry's values."""

    key: str | None = None
    # the model's path in the bucket; none beside a storageUri (s3://, hdfs://, webhdfs://), which the entry
    # then only gives credentials for, as in KServe
    path: str | None = None
    parameters: dict[str, str] = Field(default_factory=dict)
    schema_path: str | None = None  # ModelMesh's model schema: no effect here (warned)

    @field_validator("path")
    @classmethod
    def _path(cls, path: str | None) -> str | None:
        if path is not None and (not path.strip() or any(ord(c) < 32 for c in path)):
            raise ValueError(f"{path!r} is not a path in a bucket (empty, or contains control characters)")
        return path


def checked_storage_uri(uri: str) -> str:
    """Malformed URIs are refused here; a well-formed one we cannot fetch fails its revision, with the reason in
    the status (so KServe's documented YAML with gs:// or s3:// is still accepted)."""
    if not uri.strip() or any(ord(c) < 32 for c in uri):
        raise ValueError(f"{uri!r} is not a storage URI (empty, or contains control characters)")
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme and scheme not in KNOWN_SCHEMES:
        raise ValueError(
            f"storage scheme '{scheme}://' is unknown; use a path, file://, http(s)://, pvc://, s3://, gs://, az:// "
            f"(or KServe's {', '.join(s + '://' for s in sorted(KSERVE_ONLY_SCHEMES))})"
        )
    return uri


class StorageUri(Strict):
    """One item of KServe's `storageUris`: `uri` fetched into `mountPath` (default /mnt/models, where the model
    server reads its model). `path`, the name KServe's docs first gave that field, is read as `mountPath`."""

    uri: str
    mount_path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _path_alias(cls, data: Any) -> Any:
        return older_name(data, "path", "mountPath", "path is mountPath's older name")

    @field_validator("uri")
    @classmethod
    def _uri(cls, uri: str) -> str:
        return checked_storage_uri(uri)

    @field_validator("mount_path")
    @classmethod
    def _mount_path(cls, path: str | None) -> str | None:
        """Absolute, no `..`, and under /mnt/models: the one folder our model server (like KServe's runtimes,
        whose args say --model_dir=/mnt/models) reads; KServe's rule that all paths share a root other than `/`
        follows."""
        if path is None:
            return None
        if not path.startswith("/") or any(ord(c) < 32 for c in path):
            raise ValueError(f"mountPath {path!r}: must be an absolute path (under {MODEL_MOUNT})")
        if ".." in path.split("/"):
            raise ValueError(f"mountPath {path!r}: must not contain '..'")
        normal = posixpath.normpath(path)
        if normal != MODEL_MOUNT and not normal.startswith(MODEL_MOUNT + "/"):
            raise ValueError(
                f"mountPath {path!r}: outside {MODEL_MOUNT}, the folder the model server reads its model from; "
                f"give a path under {MODEL_MOUNT} (e.g. {MODEL_MOUNT}/preprocessing)"
            )
        return normal

    @property
    def subpath(self) -> str:
        """Where it goes inside the model folder ("" for the folder itself)."""
        return (self.mount_path or MODEL_MOUNT)[len(MODEL_MOUNT) :].lstrip("/")


class FrameworkSpec(KubernetesContainer):
    """KServe's `sklearn:` / `xgboost:` / `onnx:` shorthand (and the fields `model:` shares with it)."""

    storage_uri: str | None = None
    storage: StorageSpec | None = None
    storage_uris: tuple[StorageUri, ...] | None = None

    @model_validator(mode="after")
    def _one_location(self) -> FrameworkSpec:
        if self.storage is not None:
            problem = storage_location_problem(self.storage.path is not None, self.storage_uri)
            if problem:
                raise ValueError(problem)
        if self.storage_uris is not None:
            problem = many_locations_problem(self.storage_uris, self.storage_uri, self.storage)
            if problem:
                raise ValueError(problem)
        return self

    @field_validator("storage_uri")
    @classmethod
    def _storage_uri(cls, uri: str | None) -> str | None:
        return None if uri is None else checked_storage_uri(uri)

    def with_storage_uris(self, items: tuple[StorageUri, ...] | None) -> Any:
        """This model fetching `items` (KServe's `storageUris`); one item into /mnt/models itself is written
        `storageUri`, which KServe's docs call the same (so it is the same revision, fetched the same way)."""
        if items and len(items) == 1 and not items[0].subpath:
            return self.model_copy(update={"storage_uri": items[0].uri, "storage_uris": None})
        return self.model_copy(update={"storage_uris": items})

    protocol_version: Literal["v1", "v2", "grpc-v2"] | None = None
    runtime_version: str | None = None

    @field_validator("protocol_version", mode="before")
    @classmethod
    def _served_protocol(cls, value: Any) -> Any:
        if value == "grpc-v1":  # in KServe's enum; no runtime of its serves it for these formats either
            raise ValueError(
                "'grpc-v1' (V1 over gRPC) is not served here; use v1 or v2 (REST) or grpc-v2 (the Open "
                "Inference Protocol over gRPC)"
            )
        return value

    args: tuple[str, ...] = ()

    @field_validator("args")
    @classmethod
    def _serve_flags(cls, args: tuple[str, ...]) -> tuple[str, ...]:
        """Appended to `serving serve`: KServe's flags are translated, anything it would refuse is refused now
        (args with a `$(VAR)` once the env is known: `_expanded_args`)."""
        if args and not any("$(" in arg for arg in args):  # the check imports the model server's parser
            from serving.model_args import check

            check(args)
        return args

    env: tuple[EnvVar, ...] = ()
    resources: Resources | None = None
    name: str | None = None
    image: str | None = None

    @model_validator(mode="after")
    def _listener_ports(self) -> FrameworkSpec:
        listener_ports(self.ports, self.protocol_version)  # refused now, not when rendered
        return self

    @property
    def expanded_args(self) -> list[str]:
        """`args` as the kubelet runs them: `$(VAR)` expanded from the env's plain values (serving/var_refs.py);
        one from a `valueFrom` stays as written (known only where the process starts)."""
        return expand_all(
            self.args, expanded_env((e.name, e.value) for e in self.env if e.value_from is None)
        )

    @model_validator(mode="after")
    def _checked_expanded_args(self) -> FrameworkSpec:
        if any("$(" in arg for arg in self.args):
            from serving.model_args import check

            try:
                check(self.expanded_args)
            except ValueError as exc:
                raise ValueError(f"args (with $(VAR) expanded from env): {exc}") from None
        return self


def listener_ports(
    ports: tuple[dict[str, Any], ...], protocol_version: str | None
) -> tuple[int | None, int | None, list[dict[str, Any]]]:
    """Our model server's (HTTP port, gRPC port) as `model.ports` gives them, and the other ports as written.

    A port named h2c or grpc is the gRPC listener (KServe's gRPC example); http or http1 the REST one; an
    unnamed one is gRPC under `protocolVersion: grpc-v2`, else REST; any other name is declared as written."""
    http = grpc = None
    others: list[dict[str, Any]] = []
    for i, port in enumerate(ports):
        number = port.get("containerPort")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
            raise ValueError(f"ports[{i}].containerPort: required, a port number (1-65535)")
        name = port.get("name")
        role = (
            "grpc"
            if name in GRPC_PORT_NAMES or (name is None and protocol_version == "grpc-v2")
            else "http"
            if name in HTTP_PORT_NAMES or name is None
            else None
        )
        if role is None:
            others.append(dict(port))
        elif (grpc if role == "grpc" else http) is not None:
            raise ValueError(
                f"ports[{i}]: a second {'gRPC' if role == 'grpc' else 'HTTP'} port; the model server listens on one "
                "of each (name a port h2c/grpc for gRPC, http/http1 for REST)"
            )
        elif role == "grpc":
            grpc = number
        else:
            http = number
    if http is not None and http == grpc:
        raise ValueError(f"ports: HTTP and gRPC cannot share port {http}")
    return http, grpc, others


class ModelSpec(FrameworkSpec):
    model_format: ModelFormat | None = None
    runtime: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _own_class_names_its_format(cls, data: Any) -> Any:
        """The user's own runtime class (`runtime: module:Class`) serves whatever format its author names
        (`modelFormat: {name: custom}`): no runtime is selected by it, so it is kept as written, not checked
        against the formats our runtimes serve."""
        if not isinstance(data, dict):
            return data
        runtime, written = data.get("runtime"), data.get("modelFormat", data.get("model_format"))
        if isinstance(runtime, str) and ":" in runtime and isinstance(written, dict):
            name, version = written.get("name"), written.get("version")
            if isinstance(name, str) and name.lower() not in (*SUPPORTED_FORMATS, "scikit-learn"):
                if set(written) <= {"name", "version"} and isinstance(version, str | None):
                    own = ModelFormat.model_construct(name=name.lower(), version=version)
                    data = {k: v for k, v in data.items() if k not in ("modelFormat", "model_format")}
                    data["modelFormat"] = own
        return data


class Batcher(Strict):
    max_batch_size: int = Field(default=32, ge=1, le=65536)
    max_latency: int = Field(default=500, ge=1, le=600_000, description="milliseconds")
    timeout: int | None = Field(default=None, ge=1)


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
# Kubernetes' annotation key: an optional DNS-subdomain prefix and "/", then a name of up to 63 characters
_ANNOTATION_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)


def _all_match(items: list[str], pattern: re.Pattern[str], what: str) -> list[str]:
    for item in items:
        if not pattern.fullmatch(item):
            raise ValueError(f"{item!r} is not {what}")
    return items


class Logger(Strict):
    # KServe's payload logger: CloudEvents to an http(s) receiver, or JSON Lines to a file:/// path.
    # (A comment, not a docstring: the docstring would become the CRD field's description.)
    mode: Literal["all", "request", "response"] = "all"
    url: str | None = None
    # request headers copied into each event's `metadata` extension (JSON: name -> values), as KServe's
    metadata_headers: list[str] = Field(default_factory=list, max_length=64)
    # InferenceService annotations copied into each event's `annotations` extension (JSON: key -> value), as
    # KServe's agent does; keys the InferenceService does not have are left out
    metadata_annotations: list[str] = Field(default_factory=list, max_length=64)

    @field_validator("metadata_annotations")
    @classmethod
    def _annotation_keys(cls, keys: list[str]) -> list[str]:
        return _all_match(keys, _ANNOTATION_KEY, "an annotation key ([prefix/]name)")

    @field_validator("metadata_headers")
    @classmethod
    def _header_names(cls, names: list[str]) -> list[str]:
        return _all_match(names, _HEADER_NAME, "an HTTP header name")

    @field_validator("url")
    @classmethod
    def _sink_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://", "file:///")):
            raise ValueError(f"{url!r}: use http(s)://receiver/path or file:///path/events.jsonl")
        return url


class Container(KubernetesContainer):
    name: str | None = None
    image: str | None = None
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    resources: Resources | None = None


class RollingUpdate(Strict):
    """Kubernetes' RollingUpdateDeployment: a count or a percentage ("25%"); a count written as a string ("0",
    as KServe's example writes it) is taken as the count."""

    max_unavailable: int | str | None = None
    max_surge: int | str | None = None

    @field_validator("max_unavailable", "max_surge")
    @classmethod
    def _count_or_percent(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, str):
            if value.isdigit():
                return int(value)
            if not (value.endswith("%") and value[:-1].isdigit()):
                raise ValueError(f"{value!r} is neither a count nor a percentage like '25%'")
        elif isinstance(value, int) and value < 0:
            raise ValueError("must be 0 or more")
        return value


class DeploymentStrategy(Strict):
    """KServe's `deploymentStrategy` (Kubernetes' DeploymentStrategy), for its Standard (raw) deployment mode:
    how the component's Deployment replaces its pods."""

    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rolling_update: RollingUpdate | None = None

    @model_validator(mode="after")
    def _recreate_has_no_rolling_update(self) -> DeploymentStrategy:
        if self.type == "Recreate" and self.rolling_update is not None:
            raise ValueError(
                "rollingUpdate: only with type RollingUpdate (Kubernetes refuses it with Recreate)"
            )
        return self


class ComponentSpec(Strict):
    """Fields KServe's predictor and transformer share (ComponentExtensionSpec + a few pod fields)."""

    min_replicas: int | None = Field(default=None, ge=0, le=1000)
    max_replicas: int | None = Field(default=None, ge=0, le=1000)
    scale_target: int | None = Field(default=None, ge=1)
    scale_metric: Literal["cpu", "memory", "concurrency", "rps"] | None = None
    # KServe's MetricTargetType; which ones mean something depends on the metric (autoscale.knobs checks)
    scale_metric_type: Literal["Utilization", "AverageValue", "Value"] | None = None
    canary_traffic_percent: int | None = Field(default=None, ge=0, le=100)
    container_concurrency: int | None = Field(default=None, ge=0)
    auto_scaling: dict[str, Any] | None = (
        None  # KServe's `autoScaling: {metrics: [...]}`; checked by autoscale.knobs
    )
    timeout: int | None = Field(default=None, ge=1, description="seconds")
    deployment_strategy: DeploymentStrategy | None = None
    batcher: Batcher | None = None
    logger: Logger | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    containers: tuple[Container, ...] = ()
    service_account_name: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] | None = None
    image_pull_secrets: tuple[dict[str, Any], ...] = ()
    priority_class_name: str | None = None
    scheduler_name: str | None = None
    runtime_class_name: str | None = None
    volumes: tuple[dict[str, Any], ...] = ()
    security_context: dict[str, Any] | None = None
    init_containers: tuple[dict[str, Any], ...] = ()
    host_network: bool | None = None
    host_pid: bool | None = Field(default=None, alias="hostPID")
    host_ipc: bool | None = Field(default=None, alias="hostIPC")
    share_process_namespace: bool | None = None
    dns_policy: Literal["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"] | None = None
    dns_config: dict[str, Any] | None = None
    host_aliases: tuple[dict[str, Any], ...] = ()
    topology_spread_constraints: tuple[dict[str, Any], ...] = ()
    termination_grace_period_seconds: int | None = Field(default=None, ge=0)
    enable_service_links: bool | None = None
    automount_service_account_token: bool | None = None
    readiness_gates: tuple[dict[str, Any], ...] = ()
    preemption_policy: Literal["Never", "PreemptLowerPriority"] | None = None
    os: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _service_account_alias(cls, data: Any) -> Any:
        """`serviceAccount` (the pod spec's deprecated alias, in KServe's older docs) is `serviceAccountName`."""
        return older_name(
            data,
            "serviceAccount",
            "serviceAccountName",
            "serviceAccount is the deprecated name of serviceAccountName: give one",
        )

    @field_validator("volumes")
    @classmethod
    def _volume_names(cls, volumes: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        for i, volume in enumerate(volumes):
            name = volume.get("name")
            if name in RESERVED_VOLUMES or (isinstance(name, str) and re.fullmatch(r"pvc-\d+", name)):
                raise ValueError(
                    f"volume {volume['name']!r} (item {i}): the pod has a volume of that name already (model: the "
                    "model, tmp: /tmp, pvc and pvc-N: the pvc:// claims); give yours another name"
                )
        return volumes

    @model_validator(mode="after")
    def _replica_bounds(self) -> ComponentSpec:
        if self.min_replicas is not None and self.max_replicas is not None and self.max_replicas:
            if self.max_replicas < self.min_replicas:
                raise ValueError(f"maxReplicas {self.max_replicas} is below minReplicas {self.min_replicas}")
        return self

    @property
    def replicas(self) -> int:
        return 1 if self.min_replicas is None else max(self.min_replicas, 1)


class PredictorSpec(ComponentSpec):
    model: ModelSpec | None = None
    sklearn: FrameworkSpec | None = None
    xgboost: FrameworkSpec | None = None
    onnx: FrameworkSpec | None = None
    # KServe's `storageUris` on the component (its docs also show it under `model:`): normalised into the model
    storage_uris: tuple[StorageUri, ...] | None = None

    @model_validator(mode="after")
    def _one_model(self) -> PredictorSpec:
        given = [f for f in ("model", *SUPPORTED_FORMATS) if getattr(self, f) is not None]
        if len(given) > 1:
            raise ValueError(f"give exactly one of model, sklearn, xgboost, onnx (found {', '.join(given)})")
        if not given and not self.containers:
            raise ValueError(
                "needs a model: set model (with modelFormat and storageUri) or sklearn/xgboost/onnx, "
                f"or containers with a {PREDICTOR_CONTAINER} (a custom predictor image, Kubernetes only)"
            )
        if self.storage_uris is not None:
            if not given:
                raise ValueError(
                    "storageUris beside a custom predictor container: not served here (give the container its "
                    f"model with the {STORAGE_URI_ENV} env, or serve a model: with storageUris)"
                )
            if not self.storage_uris:
                raise ValueError(many_locations_problem((), None, None))
            section: FrameworkSpec = getattr(self, given[0])
            if section.storage_uris is not None:
                raise ValueError(f"storageUris is given twice (here and in {given[0]}): give it once")
            problem = many_locations_problem(self.storage_uris, section.storage_uri, section.storage)
            if problem:
                raise ValueError(f"{problem} (storageUris here, the rest in {given[0]})")
        return self

    @property
    def custom_container(self) -> Container | None:
        """KServe's custom predictor: with no model, the container named kserve-container (else the first)."""
        if self.model or self.sklearn or self.xgboost or self.onnx or not self.containers:
            return None
        named = [c for c in self.containers if c.name == PREDICTOR_CONTAINER]
        return named[0] if named else self.containers[0]

    @property
    def custom_storage_uri(self) -> str | None:
        """A custom predictor's model location: KServe reads `STORAGE_URI` from its container's env."""
        main = self.custom_container
        found = [e.value for e in main.env if e.name == STORAGE_URI_ENV and e.value] if main else []
        return found[0] if found else None

    def normalised_model(self) -> ModelSpec:
        """The `model:` form, whichever way it was written (a component's `storageUris` moved into it)."""
        model = self.model
        for fmt in SUPPORTED_FORMATS:
            short: FrameworkSpec | None = getattr(self, fmt)
            if short is not None:
                fields = short.model_dump(exclude_none=True)
                model = ModelSpec(model_format=ModelFormat(name=fmt), **fields)
        if model is not None:
            items = self.storage_uris if self.storage_uris is not None else model.storage_uris
            return model if items is None else model.with_storage_uris(items)
        if self.custom_container is not None:
            raise SpecError(
                "spec.predictor.containers: a custom predictor container has no model for our model server"
            )
        raise SpecError("spec.predictor: no model")


class TransformerSpec(ComponentSpec):
    @model_validator(mode="after")
    def _has_container(self) -> TransformerSpec:
        if not self.containers:
            raise ValueError(
                "a transformer needs containers (with args, as KServe writes a custom transformer)"
            )
        placement = self.annotations.get(PLACEMENT_ANNOTATION, SEPARATE)
        if placement not in PLACEMENTS:
            raise ValueError(
                f"annotations.{PLACEMENT_ANNOTATION}: {placement!r} is unknown; use one of {', '.join(PLACEMENTS)}"
            )
        if is_serving_transform(self.argv):  # refused now, not by the process when it starts
            from serving.commands.transform import check_args

            argv = self.argv[1:] if self.argv[:1] == ["serving"] else self.argv
            try:
                check_args(argv, "containers[0].args")
            except BadRequest as exc:
                raise SpecError(f"spec.transformer.{exc.message}") from None
        if placement == IN_PROCESS and not is_serving_transform(self.argv):
            raise ValueError(
                f"annotations.{PLACEMENT_ANNOTATION}: {IN_PROCESS} runs our `serving transform ...` inside the "
                "predictor's process; a custom transformer image runs as its own process (remove the annotation)"
            )
        return self

    @property
    def argv(self) -> list[str]:
        """The first container's command + args as written."""
        container = self.containers[0]
        return list(container.command) + list(container.args)

    @property
    def model_name(self) -> str | None:
        """The model name its args give (`--model_name` / `--model-name`): served here. For a custom image,
        KServe looks in `args` only (a name in `command` is followed by the one KServe appends)."""
        ours = is_serving_transform(self.argv)
        return flag_value(
            self._expanded(self.argv if ours else self.containers[0].args), "--model_name", "--model-name"
        )

    def _expanded(self, args: Sequence[str]) -> list[str]:
        """`$(VAR)` in args from the container's plain env, as the kubelet expands them (serving/var_refs.py)."""
        env = self.containers[0].env
        return expand_all(args, expanded_env((e.name, e.value) for e in env if e.value_from is None))

    @property
    def called_model(self) -> str | None:
        """The model it calls on its predictor, if its args name one: ours may say `--predictor-model`,
        else (ours and KServe's alike) a transformer calls the predictor's model by its own name."""
        ours = is_serving_transform(self.argv)
        return (
            flag_value(self._expanded(self.argv), "--predictor-model") if ours else None
        ) or self.model_name

    @property
    def in_process(self) -> bool:
        """Run inside the predictor's process (opt-in): tensors handed over, no HTTP hop between them."""
        return self.annotations.get(PLACEMENT_ANNOTATION) == IN_PROCESS


def is_serving_transform(argv: list[str]) -> bool:
    return argv[:2] == ["serving", "transform"] or argv[:1] == ["transform"]


def flag_value(argv: list[str] | tuple[str, ...], *names: str) -> str | None:
    """The value of the last of `names` in argv, written `--flag value` or `--flag=value` (as argparse reads it)."""
    found = None
    for i, arg in enumerate(argv):
        flag, sep, value = arg.partition("=")
        if flag in names:
            found = value if sep else (argv[i + 1] if i + 1 < len(argv) else found)
    return found


class InferenceServiceSpec(Strict):
    predictor: PredictorSpec
    transformer: TransformerSpec | None = None


class Metadata(Strict):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=45)
    namespace: str = Field(default="default", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    # Server-managed fields that `kubectl get -o yaml` output carries: accepted and ignored.
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: str | None = None
    finalizers: tuple[str, ...] = ()  # KServe's controller adds one
    managed_fields: tuple[dict[str, Any], ...] = ()
    self_link: str | None = None

    @field_validator("annotations", mode="before")
    @classmethod
    def _knative_legacy_keys(cls, value: Any) -> Any:
        """Knative still reads its older camelCase scaling keys (minScale...), the new name first."""
        if not isinstance(value, dict) or not any(k in value for k in KNATIVE_LEGACY):
            return value
        out = dict(value)
        for old, new in KNATIVE_LEGACY.items():
            if old in out:
                out.setdefault(new, out.pop(old))
        return out


KNATIVE_LEGACY = {
    f"autoscaling.knative.dev/{old}": f"autoscaling.knative.dev/{new}"
    for old, new in (
        ("minScale", "min-scale"),
        ("maxScale", "max-scale"),
        ("initialScale", "initial-scale"),
        ("panicWindowPercentage", "panic-window-percentage"),
        ("panicThresholdPercentage", "panic-threshold-percentage"),
        ("targetUtilizationPercentage", "target-utilization-percentage"),
        ("scaleToZeroPodRetentionPeriod", "scale-to-zero-pod-retention-period"),
    )
}


class InferenceService(Strict):
    api_version: str
    kind: Literal["InferenceService"]
    metadata: Metadata
    spec: InferenceServiceSpec
    status: dict[str, Any] | None = None

    @field_validator("api_version")
    @classmethod
    def _api(cls, value: str) -> str:
        problem = api_version_problem(value, "InferenceService")
        if problem:
            raise ValueError(problem)
        return value

    @property
    def stopped(self) -> bool:
        """KServe's stop annotation: nothing runs or is routed (503 naming it) until it is "false" again."""
        return self.metadata.annotations.get(STOP_ANNOTATION, "").strip().lower() == "true"

    @property
    def key(self) -> tuple[str, str]:
        return (self.metadata.namespace, self.metadata.name)

    def warnings(self, *, grpc_routed: bool | None = None) -> list[str]:
        """Fields that are safe to ignore on this machine, said out loud (see serving/spec_effects.py).
        `grpc_routed`: whether this `serving up` routes gRPC (`--grpc-port`); False warns a grpc-v2 service."""
        from serving.spec_effects import (  # the table imports this module
            component_annotations,
            grpc_warnings,
            no_local_effect,
            unsupported_annotations,
        )

        annotations = self.metadata.annotations
        out = no_local_effect(self) + unknown_annotations(annotations) + unsupported_annotations(annotations)
        out += component_annotations(self)
        out += concurrency_per_worker(self.spec.predictor) + dropped_logger(self)
        out += batcher_defeated(self.spec.predictor)
        if grpc_routed is not None:
            out += grpc_warnings(self, grpc_routed)
        out += scaling_warnings(self.spec.predictor, self.metadata.annotations)
        transformer = self.spec.transformer
        if transformer is not None and transformer.in_process:
            out += [
                f"spec.transformer.{name}: no effect with {PLACEMENT_ANNOTATION}: {IN_PROCESS} (the transformer "
                "runs in every predictor replica and scales with it; set it on spec.predictor)"
                for name in IN_PROCESS_IGNORED
                if getattr(transformer, to_snake(name)) not in (None, {}, ())
            ]
            if any(c.resources is not None for c in transformer.containers):
                out.append(
                    f"spec.transformer.containers[].resources: no effect with {PLACEMENT_ANNOTATION}: {IN_PROCESS} "
                    "(no container of its own: the predictor's resources cover both)"
                )
        out += model_args_warnings(self.spec.predictor)
        for component, spec in (("predictor", self.spec.predictor), ("transformer", self.spec.transformer)):
            if spec is None:
                continue
            for env in _env_vars(spec):
                if env.value_from is not None and "secretKeyRef" not in env.value_from:
                    out.append(
                        f"spec.{component}: env {env.name} uses valueFrom "
                        f"({', '.join(env.value_from)}), which applies on Kubernetes only; it is not set locally "
                        "(a secretKeyRef is: from the Secrets applied with serving apply -f)"
                    )
            if spec.logger is not None and not spec.logger.url:
                out.append(
                    f"spec.{component}.logger: no url; events go to the default sink (`serving up "
                    "--logger-url`, the chart's logger.defaultUrl), and are not logged without one"
                )
        return out


def api_version_problem(api_version: Any, kind: Any) -> str | None:
    """What is wrong with an InferenceService's apiVersion (None: nothing). KFServing's older APIs are named as
    such, with what to write instead: a user with an old file learns what changed, not just "not supported"."""
    if api_version in API_VERSIONS and kind != "KFService":
        return None
    use = f"use {' or '.join(API_VERSIONS)}"
    if not isinstance(api_version, str) or not api_version:
        return f"required; {use}"
    group, _, version = api_version.rpartition("/")
    old = (group == KFSERVING_GROUP and version.startswith("v1alpha")) or version == "v1alpha2"
    if kind == "KFService" or old:
        return (
            f"{api_version} (kind {kind}) is the old KFServing API, not served here; write it as apiVersion: "
            "serving.kserve.io/v1beta1, kind: InferenceService, with the model under spec.predictor (KFServing's "
            "spec.default.sklearn.modelUri or spec.default.predictor.sklearn.storageUri becomes "
            "spec.predictor.sklearn.storageUri)"
        )
    if group == KFSERVING_GROUP:
        return (
            f"{api_version} is KFServing's API group, renamed serving.kserve.io when KFServing became KServe (the "
            "v1beta1 spec is the same): write apiVersion: serving.kserve.io/v1beta1"
        )
    return f"{api_version!r} is not supported; {use}"


def check_api_version(document: dict[str, Any]) -> None:
    """The apiVersion first, alone: under another API the rest of the spec means something else, so its errors
    would only mislead. (A kind that is not an InferenceService's is left to the full validation, which names
    both.) Shared by `serving apply`, `up`, `render` and `convert` through `parse`."""
    kind = document.get("kind")
    problem = api_version_problem(document.get("apiVersion"), kind)
    if problem is not None and kind in ("InferenceService", "KFService", None):
        raise SpecError(f"apiVersion: {problem}")


def dropped_logger(isvc: InferenceService) -> list[str]:
    """Both components' `logger` with an in-process transformer: one process answers the clients, and it
    logs with the transformer's block."""
    transformer = isvc.spec.transformer
    if (
        transformer is None
        or not transformer.in_process
        or not transformer.logger
        or not isvc.spec.predictor.logger
    ):
        return []
    return [
        f"spec.predictor.logger: no effect with {PLACEMENT_ANNOTATION}: {IN_PROCESS} when spec.transformer.logger "
        "is set (one process answers the clients and logs their payloads with the transformer's block); place "
        "the transformer separately to log both"
    ]


def concurrency_per_worker(predictor: PredictorSpec) -> list[str]:
    """containerConcurrency with `--workers N` in model.args: each worker process keeps its own limit."""
    field = next((f for f in ("model", *SUPPORTED_FORMATS) if getattr(predictor, f) is not None), None)
    limit = predictor.container_concurrency
    if field is None or not limit:
        return []
    workers = flag_value(predictor.normalised_model().args, "--workers")
    if workers is None or not workers.isdigit() or int(workers) < 2:
        return []
    return [
        f"spec.predictor.containerConcurrency: {limit} holds per worker process with {field}.args --workers "
        f"{workers}: up to {limit * int(workers)} requests in flight per replica (drop --workers for an exact "
        "limit; replicas scale instead)"
    ]


def batcher_defeated(predictor: PredictorSpec) -> list[str]:
    """Settings beside a `batcher` block that keep its batches smaller than it says, said out loud: a
    containerConcurrency under maxBatchSize (no more requests than that reach the batcher at once), and the
    batching flags in model.args (which win over the block)."""
    batcher = predictor.batcher
    if batcher is None:
        return []
    out = []
    limit = predictor.container_concurrency
    if limit and limit < batcher.max_batch_size:
        out.append(
            f"spec.predictor.batcher.maxBatchSize: {batcher.max_batch_size}, but containerConcurrency: {limit} lets "
            f"at most {limit} request(s) reach the batcher at once, so no batch holds more (raise "
            "containerConcurrency, or leave it unset, for batches to fill)"
        )
    field = next((f for f in ("model", *SUPPORTED_FORMATS) if getattr(predictor, f) is not None), None)
    if field is not None:
        args = predictor.normalised_model().args
        for flag, name in (("--max-batch-size", "maxBatchSize"), ("--max-latency-ms", "maxLatency")):
            value = flag_value(args, flag)
            if value is not None:
                out.append(
                    f"spec.predictor.{field}.args: {flag} {value} overrides spec.predictor.batcher.{name} "
                    "(your args win over the block)"
                )
    return out


def model_args_warnings(predictor: PredictorSpec) -> list[str]:
    """KServe's port and model-folder flags in `model.args`: dropped (the backend sets them), said out loud."""
    field = next((f for f in ("model", *SUPPORTED_FORMATS) if getattr(predictor, f) is not None), None)
    if field is None:
        return []
    from serving.model_args import dropped

    return dropped(predictor.normalised_model().args, f"spec.predictor.{field}.args")


def _env_vars(spec: ComponentSpec) -> list[EnvVar]:
    found = [e for c in spec.containers for e in c.env]
    if isinstance(spec, PredictorSpec) and (spec.model or spec.sklearn or spec.xgboost or spec.onnx):
        found += list(spec.normalised_model().env)
    return found


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("function-after", "function-before") and not str(part).startswith("function-"):
            out += ("." if out else "") + str(part)
    return out


def parse(document: dict[str, Any]) -> InferenceService:
    """Validate one document; a SpecError names every wrong field by its path."""
    if not isinstance(document, dict):
        raise SpecError("an InferenceService document must be a mapping")
    check_api_version(document)
    _reject_unsupported_components(document)
    _reject_two_locations(document)
    try:
        isvc = InferenceService.model_validate(document)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = KSERVE_UNSERVED.get(_path(err["loc"])) or (
                    "unknown field (not supported)" + did_you_mean(InferenceService, err["loc"])
                )
            problems.append(f"{_path(err['loc'])}: {message}")
        raise SpecError("; ".join(problems)) from exc
    isvc = _check_scaling(isvc)
    _check_predictor_containers(isvc.spec.predictor)
    _check_predictor_model(isvc)
    if PLACEMENT_ANNOTATION in isvc.metadata.annotations:
        raise SpecError(
            f"metadata.annotations.{PLACEMENT_ANNOTATION}: set it on spec.transformer.annotations (it belongs "
            "to the revision, so changing it rolls out like any spec change)"
        )
    return isvc


STORAGE_SPEC_SCHEMES = ("s3", "hdfs", "webhdfs")  # what a storage Secret's entry can describe (KServe's)


def many_locations_problem(
    items: tuple[StorageUri, ...], storage_uri: str | None, storage: StorageSpec | None
) -> str:
    """Why KServe's `storageUris` cannot be served as written ("" when it can): as in KServe, it and
    `storageUri` are mutually exclusive; a `storage:` entry names a single model too."""
    if not items:
        return "storageUris: empty; give at least one {uri, mountPath} (or use storageUri)"
    if storage_uri is not None:
        return (
            "storageUri and storageUris are both set: give one (an item of storageUris without mountPath is "
            "storageUri)"
        )
    if storage is not None:
        return "storage and storageUris are both set: give one (storage: names one model in a bucket)"
    return ""


def storage_location_problem(has_path: bool, storage_uri: str | None) -> str:
    """Why a model's `storage:` and `storageUri` do not go together ("" when they do). As in KServe: a
    storage.path, or a storageUri (s3://, hdfs://, webhdfs://) whose credentials the entry gives, not both."""
    if storage_uri is None:
        return (
            "" if has_path else "storage.path: required (the model's path in the bucket), or give storageUri"
        )
    if has_path:
        return (
            "storage.path and storageUri are both set: give one (storage: {key, path} reads the bucket from the "
            "storage-config Secret; storageUri names the model directly, and storage.key then gives its "
            "credentials)"
        )
    scheme = storage_uri.split("://", 1)[0].lower() if "://" in storage_uri else ""
    if scheme not in STORAGE_SPEC_SCHEMES:
        return (
            f"storage beside storageUri {storage_uri!r}: a storage Secret's entry gives credentials only for "
            f"{', '.join(s + '://' for s in STORAGE_SPEC_SCHEMES)} URIs"
        )
    return ""


def _reject_two_locations(document: dict[str, Any]) -> None:
    """`storage` and `storageUri` that do not go together in one model: refused naming the model's fields."""
    spec = document.get("spec")
    predictor = spec.get("predictor") if isinstance(spec, dict) else None
    if not isinstance(predictor, dict):
        return
    for name in ("model", *SUPPORTED_FORMATS):
        section = predictor.get(name)
        storage = section.get("storage") if isinstance(section, dict) else None
        if not isinstance(storage, dict) or not isinstance(section, dict):
            continue
        uri = section.get("storageUri")
        problem = storage_location_problem("path" in storage, uri if isinstance(uri, str) else None)
        if problem:
            raise SpecError(f"spec.predictor.{name}.{problem}")


def _check_predictor_containers(predictor: PredictorSpec) -> None:
    """KServe's rules for `spec.predictor.containers`: a kserve-container is the predictor (so not with a model),
    every other container is named, and a custom predictor's container has an image to run."""
    given = next((f for f in ("model", *SUPPORTED_FORMATS) if getattr(predictor, f) is not None), None)
    for i, container in enumerate(predictor.containers):
        where = f"spec.predictor.containers[{i}]"
        if given and container.name == COLLOCATED_TRANSFORMER:
            raise SpecError(
                f"{where}: KServe's collocated transformer ({COLLOCATED_TRANSFORMER} beside a model, one pod) "
                "is not served here; write it as spec.transformer (its containers, args as written) and add "
                f"the annotation {PLACEMENT_ANNOTATION}: {IN_PROCESS} on spec.transformer to run our `serving "
                "transform` inside the predictor's process, as collocation does (a custom image runs as its own "
                "process on Kubernetes)"
            )
        if given and container.name == PREDICTOR_CONTAINER:  # KServe: exactly one predictor implementation
            raise SpecError(
                f"{where}: a container named {PREDICTOR_CONTAINER} is a custom predictor; give either it or "
                f"spec.predictor.{given}, not both (other containers run beside the model server on Kubernetes)"
            )
        if (i or given) and not container.name:  # only a custom predictor's own may go unnamed
            raise SpecError(f"{where}.name: required (each container of a pod has a name)")
    main = predictor.custom_container
    if main is not None and not main.image:
        raise SpecError(
            f"spec.predictor.containers[{predictor.containers.index(main)}].image: a custom predictor container "
            "needs the image to run (or serve a model with our server: spec.predictor.model)"
        )


def _check_predictor_model(isvc: InferenceService) -> None:
    """What a transformer needs of its predictor, refused now rather than found out by a revision that never
    gets ready: an in-process one needs our model server, and the model it calls must be the one served."""
    predictor, transformer = isvc.spec.predictor, isvc.spec.transformer
    if transformer is None:
        return
    if transformer.in_process and predictor.custom_container is not None:
        raise SpecError(
            f"spec.transformer.annotations.{PLACEMENT_ANNOTATION}: {IN_PROCESS} runs the transformer inside our "
            "model server, and spec.predictor.containers is a custom predictor image (remove the annotation)"
        )
    called = transformer.called_model
    if transformer.in_process or predictor.custom_container is not None or called is None:
        return
    from serving.model_args import model_name

    model = predictor.normalised_model()
    named = model_name(model.expanded_args)
    if named is not None and named != called:
        field = next(f for f in ("model", *SUPPORTED_FORMATS) if getattr(predictor, f) is not None)
        raise SpecError(
            f"spec.predictor.{field}.args: names the predictor's model {named!r}, but the transformer calls "
            f"{called!r} (spec.transformer.containers[0].args); give one name (or drop the predictor's: it "
            "then serves the name the transformer calls)"
        )


def _check_scaling(isvc: InferenceService) -> InferenceService:
    """Autoscaling knobs (fields, `autoscaling.knative.dev/*` and KServe's scaling annotations) parse, or the
    apply is refused; Knative's min-scale/max-scale become the predictor's minReplicas/maxReplicas when unset."""
    try:
        predictor = with_bounds(isvc.spec.predictor, isvc.metadata.annotations)
        for component, spec in (("predictor", predictor), ("transformer", isvc.spec.transformer)):
            if spec is not None:
                knobs_from(spec, isvc.metadata.annotations, f"spec.{component}")
    except AutoscaleSpecError as exc:
        raise SpecError(exc.message) from exc
    if predictor is isvc.spec.predictor:
        return isvc
    return isvc.model_copy(update={"spec": isvc.spec.model_copy(update={"predictor": predictor})})


def _reject_unsupported_components(document: dict[str, Any]) -> None:
    spec = document.get("spec")
    if not isinstance(spec, dict):
        return
    if "explainer" in spec:
        raise SpecError("spec.explainer: explainers are not supported")
    predictor = spec.get("predictor")
    if isinstance(predictor, dict) and "workerSpec" in predictor:
        raise SpecError(f"spec.predictor.workerSpec: {MULTI_NODE}")
    if isinstance(predictor, dict):
        for fmt in UNSUPPORTED_FORMATS:
            if fmt in predictor:
                raise SpecError(
                    f"spec.predictor.{fmt}: model format {fmt!r} is not supported; use one of {', '.join(SUPPORTED_FORMATS)}"
                )


def load_documents(text: str, source: str | None = None) -> list[InferenceService]:
    """Every InferenceService in a (multi-document) YAML string; errors name `source` (the file) if given."""
    placed = placed_documents(text, source)
    if not placed:
        raise SpecError(
            f"{source}: no InferenceService document found"
            if source
            else "no InferenceService document found"
        )
    out = []
    for where, doc in placed:
        try:
            out.append(parse(doc))
        except SpecError as exc:
            raise SpecError(located(source, where) + exc.message) from exc
    return out


def located(source: str | None, where: str) -> str:
    """`FILE: document 2: ` (each part only when there is one) before a message about one document."""
    return "".join(f"{w}: " for w in (source, where) if w)


def placed_documents(text: str, source: str | None = None) -> list[tuple[str, Any]]:
    """(where, document) for each non-empty YAML document, the items of a `kind: List` (what `kubectl get -o
    yaml` writes and `kubectl apply` takes) each in its own place; `where` is `document 2` or `document 1,
    items[3]`, empty for a file of one document. A syntax error names the file, the document and the line."""
    loaded: list[Any] = []
    try:
        for doc in yaml.safe_load_all(text):
            loaded.append(doc)
    except yaml.YAMLError as exc:
        detail = str(exc).replace('"<unicode string>"', repr(source) if source else "the YAML")
        raise SpecError(
            f"{source or 'YAML'}: document {len(loaded) + 1} is not valid YAML: {detail}"
        ) from exc
    placed: list[tuple[str, Any]] = []
    for index, doc in enumerate(loaded):
        if doc is not None:
            placed += _expanded(f"document {index + 1}", doc)
    if len(placed) == 1 and placed[0][0].count(",") == 0:
        return [("", placed[0][1])]
    return placed


def is_list(doc: Any) -> bool:
    """Kubernetes' `kind: List` (or a typed `InferenceServiceList`...), and `serving get -o yaml`'s `{items:}`."""
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        return False
    kind = doc.get("kind")
    if kind is None:
        return "apiVersion" not in doc and set(doc) <= {"items", "metadata"}
    return isinstance(kind, str) and kind.endswith("List")


def _expanded(where: str, doc: Any) -> list[tuple[str, Any]]:
    if not is_list(doc):
        return [(where, doc)]
    out: list[tuple[str, Any]] = []
    for i, item in enumerate(doc["items"]):
        if item is not None:
            out += _expanded(f"{where}, items[{i}]", item)
    return out


def yaml_documents(text: str, source: str | None = None) -> list[Any]:
    """The non-empty YAML documents of a file (List items expanded), syntax errors named as in `load_documents`."""
    return [doc for _, doc in placed_documents(text, source)]


def load_file(path: Path) -> list[InferenceService]:
    return load_documents(path.read_text(), str(path))
