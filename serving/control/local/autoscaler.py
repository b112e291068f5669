"""One autoscaler loop per running revision on this machine: sample the scale metric, ask the KPA rule
(`serving.autoscale.kpa`) for a count, and wake the reconcile loop when it changes.

What is observed: the router's own counts (`LoadSource`: in flight + held by the activator for concurrency,
the started-requests counter for rps) or the replicas' processes (psutil: CPU % and RSS) for cpu/memory.
The reconcile loop reads `replicas()` instead of the fixed minReplicas; it never waits on this module.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from serving.autoscale.knobs import Knobs
from serving.autoscale.kpa import KPA, Decision, Sample
from serving.autoscale.metrics import ScalingMetrics
from serving.control.local.process_usage import ProcessUsage

log = logging.getLogger("serving.autoscaler")
SAMPLE_INTERVAL_S = 0.5
Key = tuple[str, str]  # (namespace, revision)


class LoadSource(Protocol):
    """What the router tells the autoscaler (`serving.router.load.RevisionLoad` is one)."""

    def concurrency(self, namespace: str, revision: str) -> float: ...
    def requests(self, namespace: str, revision: str) -> int: ...
    def waiting(self, namespace: str, revision: str) -> int: ...


@dataclass(frozen=True, slots=True)
class Fleet:
    """A revision's replicas as the autoscaler needs them: how many are ready, how many run, their pids."""

    ready: int
    running: int
    pids: tuple[int, ...] = ()
    starting: int = 0  # started and not ready yet (loading its model), not failed


@dataclass
class RevisionScaler:
    """The KPA state and recent samples of one revision; `desired` is what the reconcile loop runs."""

    isvc: str
    knobs: Knobs
    desired: int
    kpa: KPA
    samples: deque[Sample] = field(default_factory=deque)
    # Knative's initial-scale (inside the bounds): the ready replicas a revision reaches before it is Ready
    initial: int = 1
    ever_ready: bool = False  # reached its initial scale once (Knative: the revision became Ready)
    hold_until_s: float = 0.0  # ... and keeps that scale until then: one stable window
    last_count: tuple[float, int] | None = None  # (time, started requests) for rps
    decision: Decision | None = None
    ready_before: int = 0  # ready replicas at the last decision
    woken_until_s: float = 0.0  # woken from zero: its replica kept until then (one window after it is ready)

    def sample(self, now_s: float, value: float) -> None:
        self.samples.append(Sample(now_s, value))
        horizon = now_s - self.knobs.stable_window_s
        while self.samples and self.samples[0].time_s <= horizon:
            self.samples.popleft()

    def reached_initial_scale(self, fleet: Fleet) -> bool:
        """Knative: initial-scale 0 (min-scale 0) is Ready at once with no replica; the activator wakes it."""
        return self.ever_ready or fleet.ready >= self.initial

    def decide(self, now_s: float, fleet: Fleet, waiting: int) -> Decision:
        if not self.ever_ready and self.reached_initial_scale(fleet):
            self.ever_ready = True  # a fresh revision keeps its initial scale for one window (0: none)
            if self.initial:
                self.hold_until_s = now_s + self.knobs.stable_window_s
                self.kpa.last_traffic_s = self.hold_until_s
        decision = self.kpa.decide(self.samples, fleet.ready, now_s)
        if waiting and decision.desired < 1:  # the activator holds requests: never zero under them
            decision = replace(decision, desired=1, reason=f"{waiting} request(s) held by the activator")
        if self.ever_ready and fleet.ready and not self.ready_before:
            # Woken from zero, its replica just ready: kept one window, as a fresh revision keeps its initial
            # scale, so the next sparse request finds it (the one that woke it may have left while it loaded)
            self.woken_until_s = now_s + self.knobs.stable_window_s
        self.ready_before = fleet.ready
        if now_s < self.woken_until_s and decision.desired < 1:
            window = self.knobs.stable_window_s
            reason = f"woken from zero: its replica kept one window ({window:g}s) after it became ready"
            decision = replace(decision, desired=1, reason=reason)
        if not fleet.ready and fleet.starting > decision.desired:
            # Woken from zero by a request that left (it timed out) before its replica was ready: that replica
            # is kept until it is, and the window decides after; stopped while loading, the next request
            # would wake another that would be stopped the same way, and the service would never answer.
            decision = replace(
                decision,
                desired=fleet.starting,
                reason=f"{fleet.starting} replica(s) still starting: none is stopped before it is ready",
            )
        if not self.ever_ready:  # nothing to measure yet: keep starting what was asked
            reason = f"initial scale not reached yet ({fleet.ready}/{self.initial} ready)"
            decision = replace(decision, desired=max(decision.desired, self.desired), reason=reason)
        elif now_s < self.hold_until_s and decision.desired < self.initial:
            keep = min(self.initial, self.knobs.max_replicas or self.initial)  # a re-apply may lower max
            reason = f"initial scale {self.initial} kept for one window ({self.knobs.stable_window_s:g}s)"
            decision = replace(decision, desired=max(decision.desired, keep), reason=reason)
        self.decision, self.desired = decision, decision.desired
        return decision


def initial_replicas(knobs: Knobs) -> int:
    """Knative's initial-scale, inside min/max (and at least activation-scale unless it is zero)."""
    count = max(knobs.initial_scale, knobs.min_replicas)
    count = max(count, knobs.activation_scale) if count else 0
    return min(count, knobs.max_replicas) if knobs.max_replicas else count


def local_bounds(knobs: Knobs, default_max_replicas: int) -> Knobs:
    """No upper bound (KServe's maxReplicas unset) is `default_max_replicas` on this machine (`serving up
    --default-max-replicas`, default the CPU count), never below minReplicas; activation-scale stays inside."""
    if knobs.max_replicas:
        return knobs
    ceiling = max(default_max_replicas, knobs.min_replicas, 1)
    return replace(knobs, max_replicas=ceiling, activation_scale=min(knobs.activation_scale, ceiling))


def machine_max_replicas() -> int:
    """`serving up --default-max-replicas`'s default: one replica per CPU."""
    return os.cpu_count() or 1


def stable_floor(stable_percent: int, desired: Mapping[str, int]) -> int:
    """During a canary the stable arm never has fewer replicas than its share of the arms' total."""
    return math.ceil(stable_percent / 100 * sum(desired.values()))


class Autoscalers:
    """Scalers by (namespace, revision), each with its sampling task."""

    def __init__(
        self,
        load: LoadSource | None,
        fleet: Callable[[str, str], Fleet],
        on_change: Callable[[], None],
        *,
        metrics: ScalingMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = SAMPLE_INTERVAL_S,
    ) -> None:
        self.load, self.fleet, self.on_change = load, fleet, on_change
        self.metrics, self.clock, self.interval_s = metrics, clock, interval_s
        self.scalers: dict[Key, RevisionScaler] = {}
        self.usage = ProcessUsage()
        self._tasks: dict[Key, asyncio.Task[None]] = {}

    def replicas(self, key: Key, isvc: str, knobs: Knobs) -> int:
        """The count to run now; the first call for a revision starts its loop at the initial scale."""
        scaler = self.scalers.get(key)
        if scaler is None:
            kpa = KPA(_kpa_knobs(knobs), last_traffic_s=self.clock())
            initial = initial_replicas(knobs)
            scaler = self.scalers[key] = RevisionScaler(isvc, knobs, initial, kpa, initial=initial)
            self._tasks[key] = asyncio.create_task(self._run(key, scaler), name=f"autoscaler-{key[1]}")
        elif scaler.knobs != knobs:  # a re-apply changed min/max/target: same revision, new knobs
            scaler.knobs, scaler.kpa.knobs = knobs, _kpa_knobs(knobs)
        return scaler.desired

    def reached_initial_scale(self, key: Key) -> bool:
        """Whether the revision may be Ready (Knative: once its initial-scale replicas were ready, not before);
        a revision without an autoscaler has no initial scale to wait for."""
        scaler = self.scalers.get(key)
        return scaler is None or scaler.reached_initial_scale(self.fleet(*key))

    def scaled_to_zero(self, key: Key) -> bool:
        """Idle at zero on purpose: still serving (the activator wakes it), not failed or starting."""
        scaler = self.scalers.get(key)
        return (
            scaler is not None
            and (scaler.ever_ready or scaler.initial == 0)
            and scaler.knobs.min_replicas == 0
        )

    def activate(self, namespace: str, revision: str) -> None:
        """The activator holds a request for this revision: one replica now, whatever the window says."""
        scaler = self.scalers.get((namespace, revision))
        if scaler is None or scaler.desired >= 1:
            return
        scaler.desired = max(scaler.knobs.activation_scale, 1)  # Knative's activation-scale (default 1)
        scaler.kpa.last_traffic_s = self.clock() + scaler.knobs.stable_window_s
        log.info("autoscaler %s: 0 -> %d (a request is waiting in the activator)", revision, scaler.desired)
        self.on_change()

    def retain(self, keys: set[Key]) -> None:
        """Stop the loops of revisions that no longer run."""
        for key in [k for k in self.scalers if k not in keys]:
            scaler = self.scalers.pop(key)
            self._tasks.pop(key).cancel()
            if self.metrics is not None:
                self.metrics.forget(scaler.isvc, key[1])

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run(self, key: Key, scaler: RevisionScaler) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.tick(key, scaler)
            except Exception:  # a bad reading must not end the loop
                log.exception("autoscaler %s: tick failed", key[1])

    def tick(self, key: Key, scaler: RevisionScaler) -> Decision:
        """One sample and one decision (the loop calls this; tests may too)."""
        now, fleet = self.clock(), self.fleet(*key)
        scaler.sample(now, self._observe(key, scaler, fleet, now))
        waiting = self.load.waiting(*key) if self.load is not None else 0
        before, was_panic = scaler.desired, scaler.decision.panic if scaler.decision else False
        decision = scaler.decide(now, fleet, waiting)
        if self.metrics is not None:
            # actual: replicas ready or on their way (Knative's actual_pods), not ones that failed to load
            actual = fleet.ready + fleet.starting
            self.metrics.decided(scaler.isvc, key[1], decision.desired, actual, decision.panic)
        inputs = (
            f"metric={scaler.knobs.metric} stable={decision.stable_value:.2f} panic={decision.panic_value:.2f} "
            f"target={scaler.knobs.target:g}x{scaler.knobs.utilization:g} ready={fleet.ready} "
            f"running={fleet.running} held={waiting}"
        )
        if decision.desired != before or decision.panic != was_panic:
            log.info(
                "autoscaler %s: %d -> %d (%s; %s)", key[1], before, decision.desired, decision.reason, inputs
            )
            self.on_change()
        else:
            log.debug("autoscaler %s: keep %d (%s; %s)", key[1], decision.desired, decision.reason, inputs)
        return decision

    def _observe(self, key: Key, scaler: RevisionScaler, fleet: Fleet, now: float) -> float:
        metric = scaler.knobs.metric
        if metric == "cpu":
            return self.usage.cpu_percent(fleet.pids)
        if metric == "memory":
            return self.usage.memory_percent(fleet.pids)
        if self.load is None:
            return 0.0
        if metric == "concurrency":
            return self.load.concurrency(*key)
        count = self.load.requests(*key)
        last, scaler.last_count = scaler.last_count, (now, count)
        if last is None or now <= last[0]:
            return 0.0
        return (count - last[1]) / (now - last[0])


def _kpa_knobs(knobs: Knobs) -> Knobs:
    """cpu/memory targets are utilisation already (HPA semantics): Knative's target-utilization applies to
    concurrency and rps only."""
    return knobs if knobs.metric in ("concurrency", "rps") else replace(knobs, utilization=1.0)
