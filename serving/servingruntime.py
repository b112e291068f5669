"""KServe's ServingRuntime / ClusterServingRuntime (`serving.kserve.io/v1alpha1`) and its runtime selection.

Selection follows KServe's `GetSupportingRuntimes` exactly, as a pure function: an explicit `runtime:` wins (a
namespace runtime before a cluster one of the same name) if it is enabled and supports the model's format and
protocol; otherwise the candidates are the enabled runtimes whose `supportedModelFormats` list the format with
`autoSelect: true` (and the model's `version`, exact match, when it gives one) and whose `protocolVersions`
include the model's (`v1` when unset); a runtime that lists no `protocolVersions` supports every protocol
(KServe's `IsProtocolVersionSupported`). Namespace runtimes come first, each group ordered by the priority of
the matching format (highest first, unset last); ties go to the runtime whose lowest listed protocol comes first
in v1, v2, grpc-v1, grpc-v2 (no list: last, as KServe's list sort), then by name. `multiModel: true`
(ModelMesh) is refused.

What a runtime changes here: which of our runtimes serves the model (`--runtime` in the container args, or the
format name), extra `serving serve` flags from `containers[0].args`, with `{{.Name}}` templating and KServe's
own flags (`--model_name`, `--model_dir`, `--http_port`, `--grpc_port`) mapped or dropped, and the environment
from `containers[0].env` (under the predictor's own `env`, which wins a name both set: KServe merges the runtime's
container with the predictor's as Kubernetes merges containers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from serving.errors import BadRequest
from serving.spec import EnvVar

API_VERSION = "serving.kserve.io/v1alpha1"
KINDS = ("ServingRuntime", "ClusterServingRuntime")
Protocol = Literal["v1", "v2", "grpc-v1", "grpc-v2"]
OUR_PROTOCOLS: tuple[Protocol, ...] = ("v1", "v2", "grpc-v2")  # what every `serving serve` process speaks
# KServe's ProtocolVersion enum order (selection's tie-break)
PROTOCOL_ORDER: tuple[Protocol, ...] = ("v1", "v2", "grpc-v1", "grpc-v2")
KSERVE_DROPPED_FLAGS = ("--model_dir", "--http_port", "--grpc_port", "--workers")  # the backend decides these
NO_RUNTIME = "No runtime found to support specified framework/version"


class RuntimeSpecError(BadRequest):
    """A ServingRuntime document the user must fix; the message starts with the field path."""


class SelectionError(BadRequest):
    """No runtime can serve this model: the InferenceService is not ready, with KServe's message."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class SupportedModelFormat(_Strict):
    name: str = Field(min_length=1)
    version: str | None = None
    auto_select: bool | None = None
    priority: int | None = Field(default=None, ge=1)


class RuntimeContainer(BaseModel):
    """A pod container: `args`, `command` and `env` are read here; every other field is kept for Kubernetes."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = "kserve-container"
    image: str | None = None
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()


class ServingRuntimeSpec(_Strict):
    supported_model_formats: tuple[SupportedModelFormat, ...] = Field(min_length=1)
    protocol_versions: tuple[Protocol, ...] = ()
    multi_model: bool = False
    disabled: bool = False
    containers: tuple[RuntimeContainer, ...] = ()
    # KServe pod-level fields: accepted and kept for Kubernetes, unused by the local backend
    annotations: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    node_selector: dict[str, str] | None = None
    affinity: dict[str, Any] | None = None
    tolerations: tuple[dict[str, Any], ...] | None = None
    image_pull_secrets: tuple[dict[str, Any], ...] | None = None
    volumes: tuple[dict[str, Any], ...] | None = None
    built_in_adapter: dict[str, Any] | None = None
    storage_helper: dict[str, Any] | None = None
    grpc_endpoint: str | None = None
    grpc_data_endpoint: str | None = None
    http_data_endpoint: str | None = None
    replicas: int | None = None
    host_ipc: bool | None = None

    @field_validator("multi_model")
    @classmethod
    def _single_model(cls, multi: bool) -> bool:
        if multi:
            raise ValueError(
                "multi-model (ModelMesh) runtimes are not supported: one model per InferenceService"
            )
        return multi

    def priority_for(self, format_name: str) -> int | None:
        return next((f.priority for f in self.supported_model_formats if f.name == format_name), None)

    def supports_protocol(self, protocol: str) -> bool:
        """KServe's `IsProtocolVersionSupported`: a runtime that lists no protocolVersions supports them all."""
        return not self.protocol_versions or protocol in self.protocol_versions

    def protocol_rank(self) -> int:
        """KServe's `GetProtocolVersionPriority`: the lowest of v1 < v2 < grpc-v1 < grpc-v2; no list: last."""
        return min((PROTOCOL_ORDER.index(p) for p in self.protocol_versions), default=len(PROTOCOL_ORDER))

    def supports_format(self, name: str, version: str | None, explicit: bool) -> bool:
        """KServe's label match: an explicit runtime counts every format, auto-selection only autoSelect ones."""
        usable = [f for f in self.supported_model_formats if explicit or f.auto_select]
        if version is None:
            return any(f.name == name for f in usable)
        return any(f.name == name and f.version == version for f in usable)


class RuntimeMetadata(_Strict):
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True, frozen=True)
    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    namespace: str | None = None


class ServingRuntime(_Strict):
    api_version: Literal["serving.kserve.io/v1alpha1", "serving.dev/v1alpha1"]
    kind: Literal["ServingRuntime", "ClusterServingRuntime"]
    metadata: RuntimeMetadata
    spec: ServingRuntimeSpec
    status: dict[str, Any] | None = None

    @property
    def cluster_scoped(self) -> bool:
        return self.kind == "ClusterServingRuntime"

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return None if self.cluster_scoped else (self.metadata.namespace or "default")


def parse_runtime(document: dict[str, Any]) -> ServingRuntime:
    """A ServingRuntime / ClusterServingRuntime, or `RuntimeSpecError` with every problem's field path."""
    try:
        return ServingRuntime.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise RuntimeSpecError(f"{document.get('kind', 'ServingRuntime')}: {problems}") from exc


@dataclass(frozen=True)
class ModelRequest:
    """What selection reads from a predictor's `model:`."""

    format_name: str
    format_version: str | None = None
    protocol: str | None = None  # protocolVersion; KServe's default is v1
    runtime: str | None = None  # explicit `runtime:` name


def select_runtime(
    model: ModelRequest,
    namespace_runtimes: Sequence[ServingRuntime],
    cluster_runtimes: Sequence[ServingRuntime],
) -> ServingRuntime:
    """The runtime KServe would pick for `model`, or `SelectionError` with KServe's message."""
    protocol = model.protocol or "v1"
    if model.runtime is not None:
        return _explicit(model, protocol, namespace_runtimes, cluster_runtimes)
    for group in (namespace_runtimes, cluster_runtimes):
        candidates = [
            r
            for r in sorted(group, key=lambda r: r.name)
            if not r.spec.disabled
            and r.spec.supports_protocol(protocol)
            and r.spec.supports_format(model.format_name, model.format_version, explicit=False)
        ]
        if candidates:
            return sorted(candidates, key=lambda r: _priority_key(r, model.format_name))[0]
    raise SelectionError(NO_RUNTIME)


def _priority_key(runtime: ServingRuntime, format_name: str) -> tuple[int, int, int]:
    priority = runtime.spec.priority_for(format_name)
    rank = runtime.spec.protocol_rank()
    return (1, 0, rank) if priority is None else (0, -priority, rank)


def _explicit(
    model: ModelRequest,
    protocol: str,
    namespace_runtimes: Sequence[ServingRuntime],
    cluster_runtimes: Sequence[ServingRuntime],
) -> ServingRuntime:
    found = next((r for r in [*namespace_runtimes, *cluster_runtimes] if r.name == model.runtime), None)
    if found is None:
        raise SelectionError(f"No ServingRuntimes or ClusterServingRuntimes with the name: {model.runtime}")
    if found.spec.disabled:
        raise SelectionError(f"Specified runtime {model.runtime} is disabled")
    if not found.spec.supports_format(model.format_name, model.format_version, explicit=True):
        raise SelectionError(
            f"Specified runtime {model.runtime} does not support specified framework/version"
        )
    if not found.spec.supports_protocol(protocol):
        raise SelectionError(f"Specified runtime {model.runtime} does not support specified protocol version")
    return found


def failure_reason(message: str) -> str:
    """KServe's `modelStatus.lastFailureInfo.reason` for a selection message of `select_runtime`."""
    if message.startswith("No ServingRuntimes or ClusterServingRuntimes with the name"):
        return "RuntimeNotRecognized"
    if message.endswith("is disabled"):
        return "RuntimeDisabled"
    return "NoSupportingRuntime"


def runtime_implementation(runtime: ServingRuntime, format_name: str) -> str:
    """Which of our runtimes serves it: `--runtime X` in the container args (a name or `module:Class`),
    else the model's format name."""
    args = _container_args(runtime)
    for i, arg in enumerate(args):
        if arg.startswith("--runtime="):
            return arg.split("=", 1)[1]
        if arg == "--runtime" and i + 1 < len(args):
            return args[i + 1]
    return format_name


def serve_flags(runtime: ServingRuntime, isvc_name: str) -> list[str]:
    """Extra `serving serve` flags from `containers[0].args`: `{{.Name}}` filled in, KServe's model-server
    flags mapped (`--model_name` -> `--name`) or dropped (dir, ports: the backend sets them), `--runtime` read
    by `runtime_implementation`."""
    out: list[str] = []
    args = [a.replace("{{.Name}}", isvc_name) for a in _container_args(runtime)]
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        flag, has_value, _ = arg.partition("=")
        if flag in (*KSERVE_DROPPED_FLAGS, "--model_name", "--runtime"):
            skip = not has_value and i + 1 < len(args) and not args[i + 1].startswith("--")
            continue
        out.append(arg)
    return out


def runtime_env(runtime: ServingRuntime | None, isvc_name: str) -> tuple[EnvVar, ...]:
    """`containers[0].env`, `{{.Name}}` filled in as in the args; the predictor's own `env` goes over it
    (`serving.control.process_args.merge_env`)."""
    if runtime is None or not runtime.spec.containers:
        return ()
    return tuple(
        e.model_copy(update={"value": e.value.replace("{{.Name}}", isvc_name)})
        for e in runtime.spec.containers[0].env
    )


def _container_args(runtime: ServingRuntime) -> tuple[str, ...]:
    return runtime.spec.containers[0].args if runtime.spec.containers else ()


def _builtin(
    name: str,
    formats: Iterable[dict[str, Any]],
    implementation: str | None,
    protocols: Iterable[str] = OUR_PROTOCOLS,
) -> ServingRuntime:
    """`implementation` None: the model's format names our runtime (one built-in for several formats)."""
    return ServingRuntime.model_validate(
        {
            "apiVersion": API_VERSION,
            "kind": "ClusterServingRuntime",
            "metadata": {"name": name},
            "spec": {
                "supportedModelFormats": list(formats),
                "protocolVersions": list(protocols),
                "containers": [
                    {
                        "name": "kserve-container",
                        "args": [
                            "--model_name={{.Name}}",
                            "--model_dir=/mnt/models",
                            "--http_port=8080",
                            *([f"--runtime={implementation}"] if implementation else []),
                        ],
                    }
                ],
            },
        }
    )


BUILTIN_RUNTIMES: tuple[ServingRuntime, ...] = (
    _builtin(
        "kserve-sklearnserver",
        [{"name": "sklearn", "version": "1", "autoSelect": True, "priority": 1}],
        "sklearn",
    ),
    _builtin(
        "kserve-xgbserver",
        [
            {"name": "xgboost", "version": "1", "autoSelect": True, "priority": 1},
            {"name": "xgboost", "version": "2", "autoSelect": True, "priority": 1},
        ],
        "xgboost",
    ),
    _builtin(
        "kserve-tritonserver", [{"name": "onnx", "version": "1", "autoSelect": True, "priority": 1}], "onnx"
    ),
    # KServe's MLServer runtime, for the formats we serve (its lightgbm and mlflow we do not): chosen by name
    # only (`runtime: kserve-mlserver`), so a v2 service does not change runtime name under our users' feet.
    _builtin(
        "kserve-mlserver",
        [
            {"name": "sklearn", "version": "0", "autoSelect": False, "priority": 2},
            {"name": "sklearn", "version": "1", "autoSelect": False, "priority": 2},
            {"name": "xgboost", "version": "1", "autoSelect": False, "priority": 2},
            {"name": "xgboost", "version": "2", "autoSelect": False, "priority": 2},
        ],
        None,
        ("v2", "grpc-v2"),
    ),
)
