"""The immutable route table the router reads; swapped atomically by whoever owns the control plane.

Both backends produce it: the local control plane from its processes' ports, the Kubernetes operator from
Services (serialised with `to_json` into a ConfigMap that the in-cluster router watches).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Arm:
    """One revision's share of an InferenceService's traffic."""

    revision: str
    percent: int
    role: str  # "stable" or "canary"
    tag: str  # "latest" or "prev"
    endpoints: tuple[str, ...]  # base URLs of the entry component (transformer if any, else predictor)
    grpc_endpoints: tuple[str, ...] = ()  # host:port of the predictor's gRPC listeners; () = REST only
    # `x-serving-revision`'s value, encoded once (every routed answer carries it)
    revision_header: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "revision_header", self.revision.encode())

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "revision": self.revision,
            "percent": self.percent,
            "role": self.role,
            "tag": self.tag,
            "endpoints": list(self.endpoints),
        }
        if self.grpc_endpoints:
            data["grpcEndpoints"] = list(self.grpc_endpoints)
        return data


@dataclass(frozen=True, slots=True)
class CanaryRouting:
    """What a Canary policy asks of the router for one service (becomes fields of its ServiceRoute)."""

    affinity_header: str = ""  # requests with this header stick to one arm (hash of its value)
    mirror: bool = False  # shadow stable requests to the 0 % canary arm


@dataclass(frozen=True, slots=True)
class ServiceRoute:
    name: str
    namespace: str
    arms: tuple[Arm, ...]  # arms with percent > 0 first; 0 % arms stay reachable by tag or revision name
    host: str = ""  # "<name>.<namespace>.<domain>"
    timeout_s: float = 60.0  # the spec's `timeout`: the router answers 504 after it
    affinity_header: str = ""  # lower-case header name: one value sticks to one arm while the split holds
    mirror: Arm | None = None  # a 0 % canary arm that gets a shadow copy of stable requests
    activator: bool = False  # minReplicas 0: requests for an arm without endpoints wait for one (not 503)
    failure: str = (
        ""  # why the latest revision cannot serve (its load failed): a 503 says so, without Retry-After
    )
    # Its first revision is loading (no revision rolled out yet): requests wait for it in the activator, while
    # readiness asks answer "not ready" at once
    starting: bool = False
    # Other Host values that name this service: on Kubernetes its in-cluster DNS names (NAME.NAMESPACE.svc.
    # CLUSTER_DOMAIN and shorter), which the operator points at the router with ExternalName Services
    aliases: tuple[str, ...] = ()
    # The front component's containerConcurrency (0: no limit): the activator lets at most this many requests
    # per ready replica go on at once, as Knative's does, holding the rest
    replica_concurrency: int = 0
    # The arms the split chooses from, found once per table rather than per request: a share above 0 %, and a
    # replica (or, with the activator, none needed: the request is held)
    weighted: tuple[Arm, ...] = field(init=False, repr=False, compare=False)
    # The same arms in the order session affinity lays their slices out: the latest (canary) first, so its
    # slice [0, w) only grows as its weight steps up, and a user it has served stays on it (the order of
    # `weighted` follows the weights, which moved every canary user back to the stable at the next step)
    by_affinity: tuple[Arm, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        weighted = tuple(a for a in self.arms if a.percent > 0 and (a.endpoints or self.activator))
        object.__setattr__(self, "weighted", weighted)
        object.__setattr__(self, "by_affinity", tuple(sorted(weighted, key=lambda a: a.tag != "latest")))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "host": self.host,
            "timeoutSeconds": self.timeout_s,
            "arms": [a.to_json() for a in self.arms],
        }
        if self.affinity_header:
            data["affinityHeader"] = self.affinity_header
        if self.mirror is not None:
            data["mirror"] = self.mirror.to_json()
        if self.activator:
            data["activator"] = True
        if self.failure:
            data["failure"] = self.failure
        if self.starting:
            data["starting"] = True
        if self.aliases:
            data["aliases"] = list(self.aliases)
        if self.replica_concurrency:
            data["replicaConcurrency"] = self.replica_concurrency
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceRoute:
        arms = tuple(_arm(a) for a in data["arms"])
        mirror = _arm(data["mirror"]) if data.get("mirror") else None
        return cls(
            data["name"],
            data["namespace"],
            arms,
            data.get("host", ""),
            float(data.get("timeoutSeconds", 60.0)),
            affinity_header=str(data.get("affinityHeader", "")).lower(),
            mirror=mirror,
            activator=bool(data.get("activator", False)),
            failure=str(data.get("failure", "")),
            starting=bool(data.get("starting", False)),
            aliases=tuple(str(a) for a in data.get("aliases", ())),
            replica_concurrency=int(data.get("replicaConcurrency", 0)),
        )


def _arm(a: dict[str, Any]) -> Arm:
    return Arm(
        a["revision"],
        int(a["percent"]),
        a["role"],
        a["tag"],
        tuple(a["endpoints"]),
        tuple(a.get("grpcEndpoints", ())),
    )


@dataclass(frozen=True, slots=True)
class RouteTable:
    services: dict[tuple[str, str], ServiceRoute] = field(default_factory=dict)  # (namespace, name) -> route
    version: int = 0

    def by_host(self) -> dict[str, ServiceRoute]:
        """Each service by its Host, and by its aliases (a service's own host wins over another's alias)."""
        hosts = {alias: s for s in self.services.values() for alias in s.aliases}
        return hosts | {s.host: s for s in self.services.values() if s.host}

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "services": [s.to_json() for s in self.services.values()]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RouteTable:
        routes = [ServiceRoute.from_json(s) for s in data.get("services", [])]
        return cls({(r.namespace, r.name): r for r in routes}, int(data.get("version", 0)))
