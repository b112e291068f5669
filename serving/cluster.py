"""The Kubernetes API as the operator and the in-cluster router use it: idempotent create-or-patch of rendered
objects through the official `kubernetes` client, with typed errors. Neutral ground: neither the control
plane nor the router owns it.

JSON merge patches (not server-side apply: it needs field managers the test emulator does not have, and
merge patches replace lists wholesale, which is what a desired-state renderer wants). An object whose live
state already contains every rendered field is not patched at all. API failures become typed errors:
`TemporaryClusterError` (retry with backoff: 5xx, 429, 409, connection) or `PermanentClusterError` (4xx).
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from serving.errors import ServingError
from serving.spec import OUR_GROUP

log = logging.getLogger("serving.k8s")
MERGE = "application/merge-patch+json"
ROUTES_KEY = (
    "routes.json"  # the key of the route table in its ConfigMap: the operator writes it, routers read it
)


class ClusterError(ServingError):
    status_code = 502


class TemporaryClusterError(ClusterError):
    """Worth retrying: the API server was busy, unreachable, or an object changed under us."""


class PermanentClusterError(ClusterError):
    """Retrying will not help: the object is invalid or we are not allowed."""


@dataclass(frozen=True)
class Kind:
    api: str  # attribute of kubernetes.client
    suffix: str  # e.g. "namespaced_deployment"
    list_suffix: str
    group: str = ""  # custom objects only
    version: str = ""
    plural: str = ""

    @property
    def cluster_scoped(self) -> bool:
        return self.suffix.startswith("cluster_")


KINDS = {
    "Deployment": Kind("AppsV1Api", "namespaced_deployment", "namespaced_deployment"),
    "Service": Kind("CoreV1Api", "namespaced_service", "namespaced_service"),
    "ConfigMap": Kind("CoreV1Api", "namespaced_config_map", "namespaced_config_map"),
    "HorizontalPodAutoscaler": Kind(
        "AutoscalingV2Api", "namespaced_horizontal_pod_autoscaler", "namespaced_horizontal_pod_autoscaler"
    ),
    "ScaledObject": Kind(
        "CustomObjectsApi",
        "namespaced_custom_object",
        "namespaced_custom_object",
        "keda.sh",
        "v1alpha1",
        "scaledobjects",
    ),  # listed only when KEDA is enabled
    "InferenceService": Kind(
        "CustomObjectsApi",
        "namespaced_custom_object",
        "namespaced_custom_object",
        OUR_GROUP,
        "v1beta1",
        "inferenceservices",
    ),
    "Pod": Kind(
        "CoreV1Api", "namespaced_pod", "namespaced_pod"
    ),  # the router replicas whose /metrics canaries read
    "Canary": Kind(
        "CustomObjectsApi",
        "namespaced_custom_object",
        "namespaced_custom_object",
        OUR_GROUP,
        "v1alpha1",
        "canaries",
    ),
    # A predictor's storage credentials, read (get only) as KServe's credential builder reads them.
    "ServiceAccount": Kind("CoreV1Api", "namespaced_service_account", "namespaced_service_account"),
    "Secret": Kind("CoreV1Api", "namespaced_secret", "namespaced_secret"),
    # Runtime selection: listed in every namespace (`list_everywhere`), then kept current by the watch.
    "ServingRuntime": Kind(
        "CustomObjectsApi",
        "namespaced_custom_object",
        "namespaced_custom_object",
        OUR_GROUP,
        "v1alpha1",
        "servingruntimes",
    ),
    "ClusterServingRuntime": Kind(
        "CustomObjectsApi",
        "cluster_custom_object",
        "cluster_custom_object",
        OUR_GROUP,
        "v1alpha1",
        "clusterservingruntimes",
    ),
}


def classify(exc: Exception, what: str) -> ClusterError:
    """The typed error for a failed API call."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        reason = f"{what}: {status} {exc.reason or ''}".strip()
        if status in (0, 409, 429) or status >= 500:
            return TemporaryClusterError(reason)
        return PermanentClusterError(f"{reason}: {(exc.body or '')[:300]}")
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return TemporaryClusterError(f"{what}: {exc}")
    return PermanentClusterError(f"{what}: {exc}")


# Fields whose values the API server stores as canonical quantities ("0.5" -> "500m", "1024Mi" -> "1Gi")
QUANTITIES = frozenset({"limits", "requests", "averageValue"})


def contains(live: Any, wanted: Any, quantity: bool = False) -> bool:
    """Whether `live` already has every field of `wanted` (extra server-set fields are fine), as the API server
    stores it: an empty list or map is omitted (omitempty), and resource quantities are canonical. Comparing
    literally made every reconcile patch such an object again, for nothing."""
    if isinstance(wanted, dict):
        if live is None and not wanted:
            return True
        return isinstance(live, dict) and all(
            contains(live.get(k), v, quantity or k in QUANTITIES) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        if live is None and not wanted:
            return True
        return isinstance(live, list) and len(live) == len(wanted) and all(map(contains, live, wanted))
    if live != wanted and quantity and live is not None and wanted is not None:
        return _same_quantity(live, wanted)
    return bool(live == wanted)


def _same_quantity(live: Any, wanted: Any) -> bool:
    try:
        same = parse_quantity(live) == parse_quantity(wanted)  # type: ignore[no-untyped-call]
        return bool(same)
    except ValueError:
        return False


class Cluster:
    """A thin, typed-error layer over the generated API classes."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.client = client

    @classmethod
    def from_environment(cls, configuration: kubernetes.client.Configuration | None = None) -> Cluster:
        return cls(kubernetes.client.ApiClient(configuration or load_configuration()))

    def _call(self, verb: str, kind_name: str, *args: Any, **kwargs: Any) -> Any:
        kind = KINDS[kind_name]
        api = getattr(kubernetes.client, kind.api)(self.client)
        suffix = kind.list_suffix if verb == "list" else kind.suffix
        prefix = (
            "get" if kind.group and verb == "read" else verb
        )  # CustomObjectsApi says get, typed APIs read
        method: Callable[..., Any] = getattr(api, f"{prefix}_{suffix}")
        if kind.cluster_scoped:  # callers pass a namespace for every kind; a cluster-scoped one has none
            args = (kind.group, kind.version, kind.plural, *args[1:])
        elif kind.group:
            args = (kind.group, kind.version, *args[:1], kind.plural, *args[1:])
        try:
            result = method(*args, **kwargs)
        except Exception as exc:
            raise classify(exc, f"{verb} {kind_name} {'/'.join(str(a) for a in args[:2])}") from exc
        return self.client.sanitize_for_serialization(result) if result is not None else None  # type: ignore[no-untyped-call]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] | None = self._call("read", kind, *(_order(kind, namespace, name)))
            return found
        except PermanentClusterError as exc:
            if " 404" in exc.message:
                return None
            raise

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        items = self._call("list", kind, namespace, label_selector=selector)["items"]
        # Filtered here too: the test emulator ignores label selectors.
        return [i for i in items if contains(i.get("metadata", {}).get("labels") or {}, labels)]

    def list_everywhere(self, kind: str) -> builtins.list[dict[str, Any]]:
        """Every object of a custom kind: cluster-scoped ones, or a namespaced kind across all namespaces."""
        spec = KINDS[kind]
        api = kubernetes.client.CustomObjectsApi(self.client)
        try:
            found: Any = api.list_cluster_custom_object(spec.group, spec.version, spec.plural)
        except Exception as exc:
            raise classify(exc, f"list {kind}") from exc
        items: builtins.list[dict[str, Any]] = found.get("items") or []
        return items

    def apply(self, obj: dict[str, Any], live: dict[str, Any] | None = None, *, known: bool = False) -> str:
        """Create or merge-patch `obj`; `known=True` means `live` is the current state (None: absent)."""
        kind, meta = obj["kind"], obj["metadata"]
        namespace = meta.get("namespace", "")  # "" for a cluster-scoped kind
        if not known:
            live = self.get(kind, namespace, meta["name"])
        if live is None:
            try:
                self._call("create", kind, namespace, obj)
                return "created"
            except TemporaryClusterError as exc:
                if " 409" not in exc.message:
                    raise
        elif contains(live, obj):
            return "unchanged"
        self.patch(kind, namespace, meta["name"], obj)
        return "configured"

    def patch(self, kind: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        self._call("patch", kind, *_order(kind, namespace, name), body, _content_type=MERGE)

    def patch_status(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        kind = KINDS["InferenceService"]
        api = kubernetes.client.CustomObjectsApi(self.client)
        try:
            api.patch_namespaced_custom_object_status(
                kind.group, kind.version, namespace, kind.plural, name, body, _content_type=MERGE
            )
        except Exception as exc:
            raise classify(exc, f"patch status {namespace}/{name}") from exc

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        try:
            self._call("delete", kind, *_order(kind, namespace, name))
            return True
        except PermanentClusterError as exc:
            if " 404" in exc.message:
                return False
            raise

    def delete_all(self, objects: Iterable[tuple[str, str, str]]) -> int:
        return sum(self.delete(kind, namespace, name) for kind, namespace, name in objects)


def _order(kind: str, namespace: str, name: str) -> tuple[str, ...]:
    # Custom objects take (namespace, name) after group/version/plural; typed APIs take (name, namespace).
    return (namespace, name) if KINDS[kind].group else (name, namespace)


def load_configuration() -> kubernetes.client.Configuration:
    """In-cluster service account, else the current kubeconfig context."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        try:
            kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (kubernetes.config.ConfigException, OSError) as exc:
            raise PermanentClusterError(
                f"no Kubernetes context: not in a cluster and no usable kubeconfig ({exc})"
            ) from exc
    return configuration


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new` (removed keys become null)."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif before != value or key not in old:
            patch[key] = value
    return patch
