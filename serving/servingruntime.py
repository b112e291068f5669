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

What a runtime changes here: which of our runtimes serves the model (`--runtime` in its main container's args,
or the format name), extra `serving serve` flags from those args, and the environment from its `env` (under the
predictor's own `env`, which wins a name both set: KServe merges the runtime's container with the predictor's as
Kubernetes merges containers). The main container is the one named kserve-container (KServe's), else the first.
The args go through `serving.model_args`, the one translation `model.args` get: KServe's `--model_name` and
our `--runtime` are read here, the backend's own flags (ports, model folder, either spelling) dropped with a
warning, anything `serving serve` would refuse refused when the runtime is applied (so a runtime of another
model server, e.g. KServe's Triton one, is refused then, never crashing its services later). KServe's
placeholders (`{{.Name}}`, `{{.Namespace}}`, `{{.Labels.KEY}}`, `{{.Annotations.KEY}}`, `{{index .Labels
"KEY"}}`) are filled in from the InferenceService (`bind`); any other template is refused at apply. Its pod
fields and the main container's Kubernetes fields are merged into the predictor's pod on Kubernetes
(`serving.control.kubernetes.render`), its other containers run there as sidecars; what has no effect where
is said by `serving.runtime_effects`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from serving.errors import BadRequest
from serving.model_args import BACKEND_FLAGS, ArgsError, _pairs, check, dropped, translate
from serving.spec import MULTI_NODE, PREDICTOR_CONTAINER, RESERVED_VOLUMES, Container, EnvVar, listener_ports
from serving.spec_suggest import did_you_mean

API_VERSION = "serving.kserve.io/v1alpha1"
KINDS = ("ServingRuntime", "ClusterServingRuntime")
Protocol = Literal["v1", "v2", "grpc-v1", "grpc-v2"]
OUR_PROTOCOLS: tuple[Protocol, ...] = ("v1", "v2", "grpc-v2")  # what every `serving serve` process speaks
# KServe's ProtocolVersion enum order (selection's tie-break)
PROTOCOL_ORDER: tuple[Protocol, ...] = ("v1", "v2", "grpc-v1", "grpc-v2")
# Read here, not passed on: which of our runtimes serves (`runtime_implementation`); the name is the backend's
OWN_FLAGS = ("--runtime", "--model_name")
# KServe's standard runtimes carry these: dropped like any backend flag, but said only with another value
STANDARD_FLAGS = {"--model_dir": "/mnt/models", "--http_port": "8080", "--grpc_port": "8081"}
OUR_COMMANDS = ((), ("serving",), ("serving", "serve"))  # what runs in the main container (`serving serve`)
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


class RuntimeContainer(Container):
    """A pod container (corev1.Container's fields, as an InferenceService's containers take them)."""

    name: str | None = PREDICTOR_CONTAINER


class ServingRuntimeSpec(_Strict):
    supported_model_formats: tuple[SupportedModelFormat, ...] = Field(min_length=1)
    protocol_versions: tuple[Protocol, ...] = ()
    multi_model: bool = False
    disabled: bool = False
    containers: tuple[RuntimeContainer, ...] = ()
    # KServe's ServingRuntimePodSpec: merged into the predictor's pod on Kubernetes, warned locally
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
    host_ipc: bool | None = Field(default=None, alias="hostIPC")

    @field_validator("multi_model")
    @classmethod
    def _single_model(cls, multi: bool) -> bool:
        if multi:
            raise ValueError(
                "multi-model (ModelMesh) runtimes are not supported: one model per InferenceService"
            )
        return multi

    @field_validator("volumes")
    @classmethod
    def _volume_names(cls, volumes: tuple[dict[str, Any], ...] | None) -> tuple[dict[str, Any], ...] | None:
        for i, volume in enumerate(volumes or ()):
            if volume.get("name") in RESERVED_VOLUMES:
                raise ValueError(
                    f"volume {volume['name']!r} (item {i}): the predictor's pod has a volume of that name already "
                    "(model: the model, tmp: /tmp, pvc: a pvc:// claim); give yours another name"
                )
        return volumes

    @model_validator(mode="after")
    def _our_server(self) -> ServingRuntimeSpec:
        """The main container runs `serving serve`: another command, args it would refuse, a port it cannot
        listen on or a placeholder KServe does not fill are refused now (not when a service selects it)."""
        if not self.containers:
            return self
        index, main = main_container_index(self.containers), self.main_container
        assert main is not None
        where = f"containers[{index}]"
        if main.command not in OUR_COMMANDS:
            raise ValueError(
                f"{where}.command: {list(main.command)} is not our model server: every revision runs `serving "
                "serve` (a runtime picks which of our runtimes serves, --runtime in its args, and adds serve "
                "flags); drop command"
            )
        for i, text in enumerate(main.args):
            _check_templates(text, f"{where}.args[{i}]")
        for i, env in enumerate(main.env):
            _check_templates(env.value, f"{where}.env[{i}].value")
        args = _without_own([_TEMPLATE.sub("0", a) for a in main.args])
        if args and not args[0].startswith("-"):
            raise ValueError(
                f"{where}.args: {args[0]!r} is another model server's command: a runtime here extends our "
                "model server (`serving serve`: --runtime NAME|module:Class and its flags), it cannot run another"
            )
        if translate(args):  # the serve parser is imported only when there is something to check
            try:
                check(args)
            except ArgsError as exc:
                raise ValueError(f"{where}.args: {exc}") from exc
        try:
            listener_ports(main.ports, None)
        except ValueError as exc:
            raise ValueError(f"{where}.{exc}") from exc
        return self

    @property
    def main_container(self) -> RuntimeContainer | None:
        """KServe's: the container named kserve-container (else, as here before, the first)."""
        return self.containers[main_container_index(self.containers)] if self.containers else None

    @property
    def sidecars(self) -> tuple[RuntimeContainer, ...]:
        """The other containers: beside the model server in the predictor's pod on Kubernetes."""
        main = self.main_container
        return tuple(c for c in self.containers if c is not main)

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
    _bound: bool = PrivateAttr(default=False)  # set by `bind`: its placeholders are filled in

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
    """A ServingRuntime / ClusterServingRuntime, or `RuntimeSpecError` with every problem's field path (an
    unknown field with the closest known name)."""
    try:
        return ServingRuntime.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        meta = document.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        builtin = next(
            (r for r in BUILTIN_RUNTIMES if (r.kind, r.name) == (document.get("kind"), name)), None
        )
        formats = (
            sorted({f.name for f in builtin.spec.supported_model_formats}) if builtin is not None else []
        )
        hint = (
            f" ({name} is built in here, serving {', '.join(formats)} with our model server: leave this document "
            "out to use it)"
            if builtin is not None
            else ""
        )
        kind = document.get("kind", "ServingRuntime")
        raise RuntimeSpecError(f"{kind}{f' {name}' if name else ''}: {problems}{hint}") from exc


def _problem(error: Any) -> str:
    path = ".".join(str(p) for p in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if message.startswith("containers["):  # a check of the whole spec, naming its own field
        return f"{path}.{message}"
    if error["type"] == "extra_forbidden" and tuple(error["loc"]) in KNOWN_UNSERVED:
        return f"{path}: {KNOWN_UNSERVED[tuple(error['loc'])]}"
    suggestion = did_you_mean(ServingRuntime, error["loc"]) if error["type"] == "extra_forbidden" else ""
    return f"{path}: {message}{suggestion}"


# KServe's ServingRuntime fields that are refused because nothing here does what they ask (not typos)
KNOWN_UNSERVED = {("spec", "workerSpec"): MULTI_NODE}


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


def priority_conflict(
    new: ServingRuntime, existing: Iterable[ServingRuntime], builtin: Iterable[str] = ()
) -> str | None:
    """Why KServe's ServingRuntime validating webhook (servingruntime_webhook.go) would deny `new`, else None:
    why a tie is not left to selection. `existing`: the runtimes of its scope (its namespace's ServingRuntimes,
    or every ClusterServingRuntime; `builtin` names those of ours). A disabled `new` is admitted; otherwise it
    is denied when one of its autoSelect formats has two priorities, or when an enabled runtime of another name
    shares a protocolVersion with it (as listed: a runtime listing none shares none) and an autoSelect format
    of the same name (any case) and version (both unset, or equal) at the same priority (both set)."""
    if new.spec.disabled:
        return None
    kind, scope = new.kind.lower(), "" if new.cluster_scoped else f" in namespace {new.namespace}"
    first: dict[str, SupportedModelFormat] = {}
    for fmt in (f for f in new.spec.supported_model_formats if f.auto_select):
        had = first.setdefault(fmt.name, fmt)
        if had.priority is not None and fmt.priority is not None and had.priority != fmt.priority:
            return (
                f"{new.kind} {new.name}: different priorities assigned for the model format {fmt.name} under the "
                f"{kind} {new.name} ({_format_words(had)} at priority {had.priority}, {_format_words(fmt)} at "
                f"{fmt.priority}): KServe's webhook refuses this; give every autoSelect {fmt.name} entry one priority"
            )
    builtins = set(builtin)
    for other in sorted(existing, key=lambda r: r.name):
        shared = [p for p in other.spec.protocol_versions if p in new.spec.protocol_versions]
        if other.name == new.name or other.spec.disabled or not shared:
            continue
        for theirs in (f for f in other.spec.supported_model_formats if f.auto_select):
            for ours in (f for f in new.spec.supported_model_formats if f.auto_select):
                same = theirs.name.casefold() == ours.name.casefold() and theirs.version == ours.version
                if same and theirs.priority is not None and theirs.priority == ours.priority:
                    which = f"{other.name} (built in)" if other.name in builtins else other.name
                    return (
                        f"{new.kind} {new.name}: same priority assigned for the model format {ours.name} in the "
                        f"{kind}s {which} and {new.name}{scope}: both autoSelect {_format_words(ours)} at priority "
                        f"{ours.priority} and list {', '.join(shared)}, so which one serves it would be arbitrary "
                        "(KServe's webhook refuses this); give one another priority, autoSelect: false or disabled: "
                        "true"
                    )
    return None


def _format_words(fmt: SupportedModelFormat) -> str:
    return f'{fmt.name} version "{fmt.version}"' if fmt.version is not None else f"{fmt.name} (no version)"


def failure_reason(message: str) -> str:
    """KServe's `modelStatus.lastFailureInfo.reason` for a selection message of `select_runtime`."""
    if message.startswith("No ServingRuntimes or ClusterServingRuntimes with the name"):
        return "RuntimeNotRecognized"
    if message.endswith("is disabled"):
        return "RuntimeDisabled"
    return "NoSupportingRuntime"


MLSERVER_IMPLEMENTATION_ENV = (
    "MLSERVER_MODEL_IMPLEMENTATION"  # KServe's kserve-mlserver: {{.Labels.modelClass}}
)


def runtime_implementation(runtime: ServingRuntime, format_name: str) -> str:
    """Which of our runtimes serves it: `--runtime X` in the main container's args (a name or `module:Class`),
    else the MLServer class its env names (`MLSERVER_MODEL_IMPLEMENTATION`, placeholders filled in: what
    MLServer loads, whatever the format), else the model's format name."""
    args = _container_args(runtime)
    for i, arg in enumerate(args):
        if arg.startswith("--runtime="):
            return arg.split("=", 1)[1]
        if arg == "--runtime" and i + 1 < len(args):
            return args[i + 1]
    main = runtime.spec.main_container
    named = [e.value for e in main.env if e.name == MLSERVER_IMPLEMENTATION_ENV] if main is not None else []
    # set, its placeholders filled in (a label the service lacks leaves Go's "<no value>", as in KServe)
    value = named[-1] if named else ""
    if value not in ("", "<no value>") and "{{" not in value:
        from serving.mlserver_settings import IMPLEMENTATIONS

        ours = IMPLEMENTATIONS.get(value)
        if ours is None:
            raise BadRequest(
                f"{runtime.kind} {runtime.name}: {MLSERVER_IMPLEMENTATION_ENV} {value!r} is an MLServer class "
                f"not served here (served: {', '.join(IMPLEMENTATIONS)})"
            )
        return ours
    return format_name


@dataclass(frozen=True)
class ServiceMeta:
    """What KServe's placeholders read: the InferenceService's metadata."""

    name: str
    namespace: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, metadata: Any) -> ServiceMeta:
        """From an InferenceService's `metadata` (our spec model)."""
        return cls(metadata.name, metadata.namespace, dict(metadata.labels), dict(metadata.annotations))


_TEMPLATE = re.compile(r"\{\{(.*?)\}\}")
_FIELD = re.compile(r"\.(Name|Namespace)")
_KEY = re.compile(r"\.(Labels|Annotations)\.([A-Za-z_][A-Za-z0-9_]*)")  # Go's field syntax on a map
_INDEX = re.compile(r'index\s+\.(Labels|Annotations)\s+"([^"\\]*)"')
NO_VALUE = "<no value>"  # what Go's text/template prints for a missing map key reached as a field


def _check_templates(text: str, where: str) -> None:
    for found in _TEMPLATE.finditer(text):
        expression = found.group(1).strip()
        if not any(p.fullmatch(expression) for p in (_FIELD, _KEY, _INDEX)):
            raise ValueError(
                f"{where}: {found.group(0)} is not a placeholder KServe fills in here: use {{{{.Name}}}}, "
                '{{.Namespace}}, {{.Labels.KEY}}, {{.Annotations.KEY}} or {{index .Annotations "KEY"}}'
            )


def fill(text: str, meta: ServiceMeta) -> str:
    """KServe's `ReplacePlaceholders` (Go text/template over the InferenceService's metadata), for the
    expressions it is used with: `.Labels.KEY` of a missing key prints `<no value>` as Go does, `index` of one
    nothing. The expressions were checked when the runtime was parsed."""

    def one(found: re.Match[str]) -> str:
        expression = found.group(1).strip()
        if field_match := _FIELD.fullmatch(expression):
            return meta.name if field_match.group(1) == "Name" else meta.namespace
        if key := _KEY.fullmatch(expression):
            return _map(meta, key.group(1)).get(key.group(2), NO_VALUE)
        if index := _INDEX.fullmatch(expression):
            return _map(meta, index.group(1)).get(index.group(2), "")
        return found.group(0)

    return _TEMPLATE.sub(one, text)


def _map(meta: ServiceMeta, which: str) -> Mapping[str, str]:
    return meta.labels if which == "Labels" else meta.annotations


def bind(runtime: ServingRuntime, meta: ServiceMeta) -> ServingRuntime:
    """The runtime for one InferenceService: its main container's args, command and env with the placeholders
    filled in (as KServe fills the merged container). `serve_flags` and `runtime_env` use it as it is."""
    spec, main = runtime.spec, runtime.spec.main_container
    if main is None or runtime._bound:
        return runtime
    filled = main.model_copy(
        update={
            "args": tuple(fill(a, meta) for a in main.args),
            "command": tuple(fill(c, meta) for c in main.command),
            "env": tuple(e.model_copy(update={"value": fill(e.value, meta)}) for e in main.env),
        }
    )
    containers = tuple(filled if c is main else c for c in spec.containers)
    bound = runtime.model_copy(update={"spec": spec.model_copy(update={"containers": containers})})
    bound._bound = True
    return bound


def _meta(meta: ServiceMeta | str) -> ServiceMeta:
    return ServiceMeta(meta) if isinstance(meta, str) else meta


def serve_flags(runtime: ServingRuntime, meta: ServiceMeta | str) -> list[str]:
    """Extra `serving serve` flags from the main container's args (`meta`: the InferenceService, or its name):
    placeholders filled in, `--runtime` (read by `runtime_implementation`) and `--model_name` (the backend names
    the model) left out, the rest as `model.args` are translated (the backend's own flags dropped)."""
    return translate(_without_own(_container_args(bind(runtime, _meta(meta)))))


def _without_own(args: Sequence[str]) -> list[str]:
    return [written for flag, _, said in _pairs(args) if flag not in OWN_FLAGS for written in said]


def dropped_flags(runtime: ServingRuntime) -> list[str]:
    """One warning per flag of the main container's args the backend drops, unless it says what the backend
    does anyway (KServe's standard `--model_dir=/mnt/models`, `--http_port=8080`)."""
    main = runtime.spec.main_container
    if main is None:
        return []
    said = [
        written
        for flag, values, written_args in _pairs(_without_own(main.args))
        if flag in BACKEND_FLAGS and STANDARD_FLAGS.get(flag) != (values[0] if len(values) == 1 else None)
        for written in written_args
    ]
    return dropped(said, f"spec.containers[{main_container_index(runtime.spec.containers)}].args")


def runtime_env(runtime: ServingRuntime | None, meta: ServiceMeta | str) -> tuple[EnvVar, ...]:
    """The main container's `env`, placeholders filled in as in the args; the predictor's own `env` goes over
    it (`serving.control.process_args.merge_env`)."""
    if runtime is None or runtime.spec.main_container is None:
        return ()
    main = bind(runtime, _meta(meta)).spec.main_container
    assert main is not None
    return main.env


def main_container_index(containers: Sequence[RuntimeContainer]) -> int:
    return next((i for i, c in enumerate(containers) if c.name == PREDICTOR_CONTAINER), 0)


def _container_args(runtime: ServingRuntime) -> tuple[str, ...]:
    main = runtime.spec.main_container
    return main.args if main is not None else ()


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
