"""Weighted arm choice per InferenceService: smooth weighted round-robin, so the observed split is exact
(20 % means 2 of every 10 requests, interleaved), not merely right on average."""

from __future__ import annotations

from serving.router.affinity import arm_for
from serving.router.table import Arm, RouteTable, ServiceRoute


class Balancer:
    def __init__(self) -> None:
        self._current: dict[tuple[str, str], dict[str, int]] = {}

    def choose(self, route: ServiceRoute, affinity: str | None = None) -> Arm | None:
        """`affinity`: the value of the route's affinity header, if the request has one (same value, same arm)."""
        # With the activator on (minReplicas 0), an arm scaled to zero still gets its share: the request is held.
        arms = route.weighted
        if not arms:
            return None
        if len(arms) == 1:
            return arms[0]
        if affinity is not None:
            ordered = route.by_affinity
            return ordered[arm_for(affinity, [a.percent for a in ordered])]
        current = self._current.setdefault((route.namespace, route.name), {})
        total = 0
        best: Arm | None = None
        for arm in arms:
            weight = current.get(arm.revision, 0) + arm.percent
            current[arm.revision] = weight
            total += arm.percent
            if best is None or weight > current[best.revision]:
                best = arm
        assert best is not None
        current[best.revision] -= total
        return best

    def retain(self, table: RouteTable) -> None:
        """Forget state of services or arms that left the table."""
        for key in list(self._current):
            route = table.services.get(key)
            if route is None:
                del self._current[key]
            else:
                keep = {a.revision for a in route.arms}
                self._current[key] = {r: w for r, w in self._current[key].items() if r in keep}
