"""From a plan to the router's table, written once for both backends; and the small interface of the router
that the control plane calls (`RouteSink`), so neither package imports the other's internals.

The route table (`serving.router.table`) is the contract between the two: pure data, no behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from serving.control.reconcile import STOPPED_MESSAGE, Plan
from serving.router.table import Arm, CanaryRouting, RouteTable, ServiceRoute
from serving.spec import DEFAULT_TIMEOUT_S, InferenceService


class RouteSink(Protocol):
    """What the local control plane needs from a router (`serving.router.app.Router` is one)."""

    def set_table(self, table: RouteTable) -> None:
        """Swap the whole table at once."""

    async def drain(self, endpoints: Sequence[str]) -> None:
        """Return once no request is in flight to these endpoints (they are already out of the table)."""

    def forget(self, isvc: str, namespace: str, revision: str) -> None:
        """Drop per-revision state (metrics series) of a retired revision."""


class CanaryPolicy(Protocol):
    """What the control plane asks of the Canary controller (none: the spec's canaryTrafficPercent rules)."""

    def percent_for(self, key: tuple[str, str]) -> int | None: ...
    def routing_for(self, key: tuple[str, str]) -> CanaryRouting | None: ...


class _NoCanary:
    def percent_for(self, key: tuple[str, str]) -> int | None:
        return None

    def routing_for(self, key: tuple[str, str]) -> CanaryRouting | None:
        return None


NO_CANARY: CanaryPolicy = _NoCanary()


def routes_for(
    isvc: InferenceService,
    p: Plan,
    endpoints: Callable[[str], tuple[str, ...]],
    domain: str,
    default_timeout_s: float = float(DEFAULT_TIMEOUT_S),
    canary: CanaryRouting | None = None,
    aliases: tuple[str, ...] = (),
) -> ServiceRoute:
    """One InferenceService's route: an arm per traffic target, heaviest first; `endpoints(revision)` gives the
    ready entry URLs of a revision (empty: the arm exists but gets no request); `aliases`: other Host values
    that name it (Kubernetes: its in-cluster names)."""
    split = len([t for t in p.traffic if t.percent > 0]) > 1 or any(t.percent == 0 for t in p.traffic)
    stopped = isvc.stopped  # KServe's stop annotation: the split is kept, nothing is sent (503 saying so)
    arms = []
    for target in sorted(p.traffic, key=lambda t: -t.percent):
        role = "canary" if split and target.tag == "latest" else "stable"
        ready = () if stopped else endpoints(target.revision)
        arms.append(Arm(target.revision, target.percent, role, target.tag, ready))
    # No revision rolled out yet: the first one is loading. Its requests are held until it is ready (Knative's
    # activator buffers them too), rather than refused; if it fails, they get the 503 that says why.
    starting = not arms and not stopped and p.state.latest_created is not None and not _failure(p)
    if starting:
        assert p.state.latest_created is not None
        arms.append(Arm(p.state.latest_created, 100, "stable", "latest", ()))
    name, namespace = isvc.metadata.name, isvc.metadata.namespace
    # What answers the client bounds its request, as the first component's Knative timeout does in KServe: the
    # transformer's when there is one (its own wait for the predictor is bounded by the predictor's).
    front = isvc.spec.transformer if isvc.spec.transformer is not None else isvc.spec.predictor
    timeout_s = float(front.timeout) if front.timeout is not None else default_timeout_s
    mirror = None
    if canary is not None and canary.mirror:
        shadow = next((a for a in arms if a.tag == "latest" and a.percent == 0 and a.endpoints), None)
        mirror = Arm(shadow.revision, 0, "mirror", "latest", shadow.endpoints) if shadow else None
    # No arm can serve and the latest revision failed (or the service is stopped): the router's 503 says why
    # (and not to retry).
    failure = STOPPED_MESSAGE if stopped else "" if any(a.endpoints for a in arms) else _failure(p)
    return ServiceRoute(
        name,
        namespace,
        tuple(arms),
        f"{name}.{namespace}.{domain}",
        timeout_s,
        affinity_header=canary.affinity_header if canary else "",
        mirror=mirror,
        # Requests for an arm without a ready replica wait for one (Knative's activator) rather than fail:
        # scaled to zero, or a replica restarting after a crash. Not once the service has failed: that 503 says why.
        activator=not stopped and (isvc.spec.predictor.min_replicas == 0 or not failure),
        failure=failure,
        starting=starting,
        aliases=aliases,
        replica_concurrency=front.container_concurrency or 0,
    )


def _failure(p: Plan) -> str:
    info = p.status.get("modelStatus", {}).get("lastFailureInfo") or {}
    latest = p.status.get("components", {}).get("predictor", {}).get("latestCreatedRevision") or "?"
    return (
        f"revision {latest} failed ({info.get('reason', 'Failed')}): {info['message']}"
        if info.get("message")
        else ""
    )


def route_table(routes: Mapping[tuple[str, str], ServiceRoute], version: int) -> RouteTable:
    return RouteTable(dict(routes), version)
