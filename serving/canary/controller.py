"""The canary controller: every interval, judge the canary revision from the routers' counters and move the split.

It owns no process and no route: it tells the control plane which canary weight `plan()` should use
(`percent_for`), and the control plane reports back what its rollout looks like (`RolloutView`). The same
controller runs inside `serving up` and inside the operator; only the host (where counters come from, where
status is kept) differs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from serving.canary.analysis import (
    CanaryStatus,
    Phase,
    advance,
    after_load_test,
    judge,
    judge_load_test,
    start,
)
from serving.canary.promql import render
from serving.canary.snapshot import RevisionCounters, interval_window, revision_counters
from serving.canary.spec import Canary, LoadTest
from serving.errors import NotFound
from serving.router.table import CanaryRouting

log = logging.getLogger("serving.canary")
Key = tuple[str, str]  # (namespace, InferenceService name)
# Phases in which an analysis of `status.revision` is under way (a re-apply of the stable spec ends it)
ANALYSING = (Phase.LOAD_TESTING, Phase.MIRRORING, Phase.PROGRESSING, Phase.PAUSED)
UNDO = "undo to"  # how `skip_to`'s message starts: its Succeeded says the user went back, not "promoted"
HISTORY_LIMIT = 50


@dataclass(frozen=True, slots=True)
class RolloutView:
    """What the control plane knows of the target's rollout right now."""

    latest: str | None
    rolled_out: str | None
    latest_ready: bool
    latest_failed: bool = False  # it will not become ready (its model failed to load): the canary fails
    latest_error: str = ""  # why, when the host knows
    latest_restarts: int = 0  # restarts (crashes) of its replicas so far, when the host knows
    latest_retrying: bool = False  # failed, and the host tries it again (a store that may come back)


def policy_percent(status: CanaryStatus) -> int:
    """The canary weight a Canary in `status` gives `plan()` (`CanaryController.percent_for`)."""
    return 0 if status.phase is Phase.SUCCEEDED else status.canary_weight


class CanaryHost(Protocol):
    def rollout_view(self, key: Key) -> RolloutView | None: ...
    def router_expositions(self) -> Sequence[bytes]: ...
    def canary_changed(self, key: Key, status: CanaryStatus, history: list[dict[str, Any]]) -> None: ...
    def run_load_test(self, key: Key, revision: str, load_test: LoadTest) -> None:
        """Start a Locust run against the canary; call `load_test_finished` when it ends (never block)."""


@dataclass
class Tracked:
    canary: Canary
    status: CanaryStatus = field(default_factory=CanaryStatus)
    history: list[dict[str, Any]] = field(default_factory=list)
    counters: RevisionCounters | None = None
    next_check_s: float = 0.0
    load_test_for: str | None = None  # the revision whose load test was started
    stable_counters: RevisionCounters | None = None  # the stable revision's, at the last check (None: unread)
    restarts: int | None = None  # the canary's replica restarts at the last check (None: unread)
    failing: tuple[str, float] | None = None  # (candidate, since when) failing while its host retries it
    # restored by a restart mid-analysis, when: the canary's replicas are starting again, so "not ready" is no
    # verdict until it is ready once more (or progressDeadlineSeconds passes)
    restored_s: float | None = None


class CanaryMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        registry = registry or CollectorRegistry()
        self.transitions = Counter(
            "serving_canary_transitions",
            "Canary phase transitions.",
            ["isvc", "namespace", "phase"],
            registry=registry,
        )
        self.weight = Gauge(
            "serving_canary_weight",
            "Traffic percent the canary controller gives the canary.",
            ["isvc", "namespace"],
            registry=registry,
        )


class CanaryController:
    def __init__(
        self,
        host: CanaryHost,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.host = host
        self.metrics = CanaryMetrics(registry)
        self.clock = clock or time.monotonic
        self.tracked: dict[Key, Tracked] = {}  # by the target InferenceService
        # The analyses whose PromQL the host was last asked to evaluate (`due_queries`), until the next `tick`:
        # a check that fell due while those queries ran waits for the next pass instead of being judged
        # without its values. None: the host evaluates no PromQL (each due check is judged as it is).
        self._asked: set[Key] | None = None

    # -- documents ---------------------------------------------------------------------------------
    def apply(
        self, canary: Canary, status: CanaryStatus | None = None, history: list[dict[str, Any]] | None = None
    ) -> None:
        """Track a Canary (a re-apply keeps the running analysis; a restart passes the persisted status)."""
        key = canary.target_key
        old = self.tracked.get(key)
        kept = status or (old.status if old else CanaryStatus())
        tracked = self.tracked[key] = Tracked(
            canary,
            kept,
            history if history is not None else (old.history if old else []),
            old.counters if old else None,
        )
        if (
            status is not None and kept.phase in ANALYSING
        ):  # a restart: a whole interval before the next check
            now = self.clock()
            tracked.next_check_s, tracked.restored_s = now + canary.spec.analysis.interval_s, now
        elif old is not None and status is None:  # a re-apply: the running analysis goes on where it was
            tracked.next_check_s, tracked.load_test_for = old.next_check_s, old.load_test_for
            tracked.stable_counters, tracked.restarts = old.stable_counters, old.restarts
            tracked.failing, tracked.restored_s = old.failing, old.restored_s
            analysis = canary.spec.analysis
            if analysis != old.canary.spec.analysis and kept.phase in ANALYSING:
                # a changed policy judges a whole interval of its own before anything moves (Flagger restarts
                # the analysis); the weight stays, its step no further than the new list's last
                tracked.next_check_s = self.clock() + analysis.interval_s
                if kept.step >= len(analysis.weights):
                    tracked.status = replace(kept, step=len(analysis.weights) - 1)

    def remove(self, key: Key) -> None:
        self.tracked.pop(key, None)

    def percent_for(self, key: Key) -> int | None:
        """The canary weight `plan()` must use for this service, or None when no Canary drives it. After a
        promotion 0, not the spec's percent: a revision that appears next waits at 0 % until its analysis starts
        (ready before the next tick, it would otherwise be promoted unjudged); with one revision it changes nothing."""
        tracked = self.tracked.get(key)
        return None if tracked is None else policy_percent(tracked.status)

    def routing_for(self, key: Key) -> CanaryRouting | None:
        """Session affinity (header, lower-case) and whether to mirror stable traffic now, or None."""
        tracked = self.tracked.get(key)
        if tracked is None:
            return None
        affinity = tracked.canary.spec.analysis.session_affinity
        return CanaryRouting(
            affinity_header=affinity.header.lower() if affinity else "",
            mirror=tracked.status.phase is Phase.MIRRORING,
        )

    # -- manual control (wins over the analysis) --------------------------------------------------------
    def promote(self, key: Key) -> CanaryStatus:
        return self._set(key, Phase.PROMOTING, 100, "promoted by the user")

    def rollback(self, key: Key) -> CanaryStatus:
        return self._set(key, Phase.FAILED, 0, "rolled back by the user")

    def pause(self, key: Key) -> CanaryStatus:
        tracked = self._tracked(key)
        status = tracked.status
        if status.phase not in (Phase.PROGRESSING, Phase.MIRRORING, Phase.LOAD_TESTING, Phase.WAITING):
            return status
        self._transition(
            key,
            tracked,
            replace(
                status,
                phase=Phase.PAUSED,
                paused_from=status.phase,
                message=f"paused by the user (was {status.phase})",
            ),
        )
        return tracked.status

    def skip_to(self, key: Key, revision: str, why: str) -> None:
        """Go to `revision` without analysis (an undo): the controller only watches it become rolled out."""
        tracked = self.tracked.get(key)
        if tracked is not None:
            status = CanaryStatus(
                Phase.PROMOTING,
                revision,
                len(tracked.canary.spec.analysis.weights),
                100,
                message=f"{UNDO} {revision} {why}",
            )
            self._transition(key, tracked, status)

    def resume(self, key: Key) -> CanaryStatus:
        """Back to the phase it was paused in (Mirroring, LoadTesting, Progressing or Waiting), at the same
        weight; the next check judges a whole interval from now."""
        tracked = self._tracked(key)
        status = tracked.status
        if status.phase is not Phase.PAUSED:
            return status
        phase = status.paused_from or _paused_from(status)
        tracked.next_check_s = self.clock() + tracked.canary.spec.analysis.interval_s
        tracked.stable_counters = tracked.restarts = None  # what happened while paused is not judged
        self._transition(
            key, tracked, replace(status, phase=phase, paused_from=None, message="resumed by the user")
        )
        return tracked.status

    # -- the loop body -------------------------------------------------------------------------------
    def due_queries(self) -> dict[Key, dict[str, str]]:
        """The PromQL metrics (name -> rendered query) of every analysis whose check is due now. The next
        `tick` judges a check with PromQL metrics only if it was named here (its queries evaluated)."""
        now, due = self.clock(), {}
        for key, tracked in self.tracked.items():
            status, analysis = tracked.status, tracked.canary.spec.analysis
            if status.phase not in (Phase.PROGRESSING, Phase.MIRRORING) or now < tracked.next_check_s:
                continue
            values = {
                "namespace": key[0],
                "target": key[1],
                "revision": status.revision or "",
                "interval": analysis.interval,
            }
            queries = {m.name: render(m.query, values) for m in analysis.metrics if m.query is not None}
            if queries:
                due[key] = queries
        self._asked = set(due)
        return due

    def tick(self, queried: Mapping[Key, Mapping[str, float]] | None = None) -> None:
        """One pass over every tracked Canary: start analyses, judge those whose interval is due.
        `queried`: the values of the due PromQL metrics, evaluated by the host beforehand (`due_queries`); a
        check with PromQL metrics that became due since then is judged on a later pass, with its values."""
        now = self.clock()
        asked, self._asked = self._asked, None
        expositions: Sequence[bytes] | None = None
        for key, tracked in list(self.tracked.items()):
            view = self.host.rollout_view(key)
            if view is None:
                continue
            self._follow_rollout(key, tracked, view, now)
            self._load_test(key, tracked)
            if tracked.status.phase not in (Phase.PROGRESSING, Phase.MIRRORING) or now < tracked.next_check_s:
                continue
            if (
                asked is not None
                and key not in asked
                and any(m.query is not None for m in tracked.canary.spec.analysis.metrics)
            ):
                continue  # due only since the host queried: judging it now would be judging "no data"
            expositions = expositions if expositions is not None else self.host.router_expositions()
            self._check(key, tracked, view, expositions, now, (queried or {}).get(key, {}))

    def _follow_rollout(self, key: Key, tracked: Tracked, view: RolloutView, now: float) -> None:
        status = tracked.status
        if status.phase is Phase.PAUSED:  # manual control wins: nothing starts, waits or fails until resume
            return
        # No candidate before a first revision is rolled out: with nothing stable to compare it against or
        # fall back to, a service's first revision is not analysed (it was, in the moment between it becoming
        # ready and being marked rolled out, and its stale Progressing status then described the next canary).
        candidate = (
            view.latest if view.latest and view.rolled_out and view.latest != view.rolled_out else None
        )
        if status.phase is Phase.PROMOTING and view.rolled_out == status.revision:
            undone = status.message.startswith(UNDO)  # skip_to: nothing was promoted, the user went back
            message = f"{status.message}: done" if undone else "promoted"
            self._transition(key, tracked, replace(status, phase=Phase.SUCCEEDED, message=message))
        elif candidate and candidate != status.revision and view.latest_ready:
            tracked.failing = None  # ready: a later failure of it gets a whole deadline again
            analysis = tracked.canary.spec.analysis
            tracked.counters = tracked.stable_counters = None
            tracked.restarts = view.latest_restarts
            tracked.next_check_s = now + analysis.interval_s
            self._transition(key, tracked, start(candidate, analysis))
        elif (
            candidate
            and view.latest_failed
            and (status.phase is not Phase.FAILED or status.revision != candidate)
        ):
            why = f": {view.latest_error}" if view.latest_error else ""
            deadline_s = tracked.canary.spec.progress_deadline_seconds
            if view.latest_retrying:  # as Flagger's progressDeadlineSeconds: a store may come back
                if tracked.failing is None or tracked.failing[0] != candidate:
                    tracked.failing = (candidate, now)
                left_s = deadline_s - (now - tracked.failing[1])
                if left_s > 0:
                    waiting = (
                        f"waiting for {candidate}, which failed and is retried{why}; the Canary fails if it"
                    )
                    waiting += f" is not ready within {left_s:.0f} s (progressDeadlineSeconds {deadline_s})"
                    if (
                        status.phase is not Phase.WAITING
                        or status.message.split(";")[0] != waiting.split(";")[0]
                    ):
                        self._transition(key, tracked, CanaryStatus(Phase.WAITING, None, message=waiting))
                    return
                why += f" (not ready within progressDeadlineSeconds {deadline_s})"
            message = f"rolled back: revision {candidate} failed to load{why}"
            failed = (
                replace(status, phase=Phase.FAILED, canary_weight=0, paused_from=None, message=message)
                if status.revision == candidate
                else CanaryStatus(Phase.FAILED, candidate, message=message)
            )
            self._transition(key, tracked, failed)
        elif candidate and candidate != status.revision and not view.latest_failed:
            # Still starting (its model loading): as Flagger's progressDeadlineSeconds, a candidate that does
            # not become ready in time fails the Canary, rather than leaving it waiting for ever.
            if tracked.failing is None or tracked.failing[0] != candidate:
                tracked.failing = (candidate, now)
            deadline_s = tracked.canary.spec.progress_deadline_seconds
            left_s = deadline_s - (now - tracked.failing[1])
            if left_s <= 0:
                message = (
                    f"rolled back: revision {candidate} not ready within progressDeadlineSeconds {deadline_s} "
                    "(still starting: its model did not finish loading)"
                )
                self._transition(key, tracked, CanaryStatus(Phase.FAILED, candidate, message=message))
                return
            waiting = f"waiting for {candidate} to be ready; the Canary fails if it is not within "
            waiting += f"{left_s:.0f} s (progressDeadlineSeconds {deadline_s})"
            if status.phase is not Phase.WAITING or status.message.split(";")[0] != waiting.split(";")[0]:
                self._transition(key, tracked, CanaryStatus(Phase.WAITING, None, message=waiting))
        elif (
            candidate is None
            and status.revision is not None
            and status.revision != view.rolled_out
            and status.phase in ANALYSING
        ):
            # The stable spec was applied again mid-analysis: the candidate is gone (drained), there is
            # nothing left to judge, promote or roll back. Judging it on would fail it for "no request".
            message = (
                f"analysis of {status.revision} ended: {view.rolled_out} was applied again and serves 100 %; "
                "waiting for the next revision"
            )
            tracked.counters = tracked.stable_counters = tracked.restarts = None
            self._transition(key, tracked, CanaryStatus(Phase.WAITING, None, message=message))

    def _load_test(self, key: Key, tracked: Tracked) -> None:
        status, load_test = tracked.status, tracked.canary.spec.analysis.load_test
        if (
            status.phase is Phase.LOAD_TESTING
            and load_test is not None
            and tracked.load_test_for != status.revision
        ):
            assert status.revision is not None
            tracked.load_test_for = status.revision
            self.host.run_load_test(key, status.revision, load_test)

    def load_test_finished(self, key: Key, revision: str, summary: dict[str, Any], report: str) -> None:
        """The host's Locust run ended (`summary`: its summary.json; empty when it could not run)."""
        tracked = self.tracked.get(key)
        if tracked is None or tracked.status.revision != revision:
            return
        if tracked.status.phase is Phase.PAUSED:  # not judged while paused: resume runs it again
            tracked.load_test_for = None
            return
        analysis = tracked.canary.spec.analysis
        tracked.next_check_s = self.clock() + analysis.interval_s
        tracked.counters = tracked.stable_counters = None
        self._transition(
            key,
            tracked,
            after_load_test(tracked.status, judge_load_test(summary, analysis), analysis, report),
        )

    def _check(
        self,
        key: Key,
        tracked: Tracked,
        view: RolloutView,
        expositions: Sequence[bytes],
        now: float,
        queried: Mapping[str, float],
    ) -> None:
        analysis = tracked.canary.spec.analysis
        status = tracked.status
        assert status.revision is not None
        counters = revision_counters(expositions, key[0], key[1], status.revision)
        window = replace(
            interval_window(tracked.counters, counters),
            queried=dict(queried),
            share=100 if status.phase is Phase.MIRRORING else status.canary_weight,
            stable_requests=self._stable_requests(key, tracked, view, expositions),
        )
        if view.latest == status.revision and tracked.restored_s is not None:
            deadline_s = tracked.canary.spec.progress_deadline_seconds
            if view.latest_ready:
                tracked.restored_s = None
            elif now - tracked.restored_s < deadline_s:
                log.info(
                    "canary %s/%s %s at %d%%: hold (restored: its replicas are starting again)",
                    key[0],
                    key[1],
                    status.revision,
                    status.canary_weight,
                )
                tracked.counters = counters
                tracked.next_check_s = now + analysis.interval_s
                return
        if view.latest == status.revision:  # what the host says of the canary revision's replicas
            before, tracked.restarts = tracked.restarts, view.latest_restarts
            restarts = 0 if before is None else max(view.latest_restarts - before, 0)
            window = replace(window, restarts=restarts, ready=view.latest_ready)
        tracked.counters = counters
        tracked.next_check_s = now + analysis.interval_s
        verdict = judge(window, analysis)
        log.info(
            "canary %s/%s %s at %d%%: %s (%s)",
            key[0],
            key[1],
            status.revision,
            status.canary_weight,
            verdict.outcome,
            verdict.reason,
        )
        self._transition(key, tracked, advance(status, verdict, analysis))

    @staticmethod
    def _stable_requests(key: Key, tracked: Tracked, view: RolloutView, expositions: Sequence[bytes]) -> int:
        """Requests the stable revision served since the last check (0 at the first: no reading before it)."""
        if view.rolled_out is None or view.rolled_out == tracked.status.revision:
            return 0
        before, now = tracked.stable_counters, revision_counters(expositions, key[0], key[1], view.rolled_out)
        tracked.stable_counters = now
        return 0 if before is None or now.requests < before.requests else now.requests - before.requests

    def _set(self, key: Key, phase: Phase, weight: int, message: str) -> CanaryStatus:
        tracked = self._tracked(key)
        self._transition(
            key,
            tracked,
            replace(tracked.status, phase=phase, canary_weight=weight, message=message, paused_from=None),
        )
        return tracked.status

    def _tracked(self, key: Key) -> Tracked:
        tracked = self.tracked.get(key)
        if tracked is None:
            raise NotFound(f"no Canary targets InferenceService {key[0]}/{key[1]}")
        return tracked

    def _transition(self, key: Key, tracked: Tracked, status: CanaryStatus) -> None:
        old = tracked.status
        tracked.status = status
        if (
            status.phase is not old.phase
            or status.canary_weight != old.canary_weight
            or status.revision != old.revision
        ):
            tracked.history.append(
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "phase": str(status.phase),
                    "revision": status.revision,
                    "canaryWeight": status.canary_weight,
                    "message": status.message,
                }
            )
            del tracked.history[:-HISTORY_LIMIT]
            self.metrics.transitions.labels(key[1], key[0], str(status.phase)).inc()
            log.info(
                "canary %s/%s: %s -> %s, weight %d%%: %s",
                key[0],
                key[1],
                old.phase,
                status.phase,
                status.canary_weight,
                status.message,
            )
        self.metrics.weight.labels(key[1], key[0]).set(status.canary_weight)
        if status != old:
            self.host.canary_changed(key, status, tracked.history)


def _paused_from(status: CanaryStatus) -> Phase:
    """The phase a Paused status without `pausedFrom` (persisted by an older version) was paused in: those
    could pause only while Waiting (no revision), Mirroring (no step yet) or Progressing."""
    if status.revision is None:
        return Phase.WAITING
    return Phase.PROGRESSING if status.step >= 0 else Phase.MIRRORING
