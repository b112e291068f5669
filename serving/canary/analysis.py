"""One analysis interval of a canary, judged: a pure verdict, then a pure step of the rollout's phase machine.

`judge(window, analysis)` reads the canary arm's own counters for the interval (requests, 5xx answers, latency
histogram) and says advance / hold (inconclusive: too few requests) / fail; a canary that crashed, was not ready,
or got none of the requests its share of the stable arm's traffic promised fails whatever its counters say.
`advance(status, verdict, analysis)`
moves the phase: Progressing through the step weights, Promoting after the last one passes, Failed (weight 0)
after `threshold` failed checks. No clock, socket or process here: the controller feeds both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from serving.canary.spec import Analysis, MetricCheck


class Outcome(StrEnum):
    ADVANCE = "advance"
    HOLD = "hold"
    FAIL = "fail"


class Phase(StrEnum):
    WAITING = "Waiting"  # no canary revision ready yet
    LOAD_TESTING = "LoadTesting"  # a Locust run against the canary gates the first step
    MIRRORING = "Mirroring"
    PROGRESSING = "Progressing"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    PAUSED = "Paused"


@dataclass(frozen=True, slots=True)
class ArmWindow:
    """The canary arm over one interval: deltas of the router's per-arm counters."""

    requests: int
    server_errors: int  # answers with status >= 500
    latency_buckets: tuple[tuple[float, int], ...] = ()  # cumulative (upper bound seconds, count), +Inf last
    queried: Mapping[str, float] = field(default_factory=dict)  # metric name -> value of its PromQL query
    # Whether the canary took part at all (the router retries on the stable arm what never reached a crashing
    # canary, so its own counters stay at 0 as if there were no traffic):
    share: int = 0  # its percent of user traffic in the interval; 100 while mirrored (a copy of each)
    stable_requests: int = 0  # requests the stable revision served in the interval
    restarts: int = 0  # its replicas' restarts (crashes) in the interval
    ready: bool = True  # it was ready at the end of the interval


@dataclass(frozen=True, slots=True)
class MetricResult:
    name: str
    value: float | None
    passed: bool
    bound: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "passed": self.passed, "threshold": self.bound}


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    results: tuple[MetricResult, ...]
    reason: str


def histogram_quantile(q: float, buckets: Sequence[tuple[float, int]]) -> float | None:
    """Prometheus' histogram_quantile on cumulative buckets (linear inside a bucket); None with no samples."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower_bound
            span = count - lower_count
            return lower_bound + (upper - lower_bound) * ((rank - lower_count) / span if span else 0.0)
        lower_bound, lower_count = upper, count
    return lower_bound


def measure(check: MetricCheck, window: ArmWindow) -> float | None:
    """The metric's value for the interval: success rate in %, duration in ms, or the query's value."""
    if check.query is not None:
        return window.queried.get(check.name)
    if check.name == "request-success-rate":
        return 100.0 * (window.requests - window.server_errors) / window.requests if window.requests else None
    seconds = histogram_quantile(check.percentile / 100.0, window.latency_buckets)
    return None if seconds is None else seconds * 1000.0


NO_ANSWER_MIN_SHARE = 10  # canary requests its share must have promised before "none reached it" fails


def judge(window: ArmWindow, analysis: Analysis) -> Verdict:
    """Advance when every metric is inside its range; hold when there is too little traffic to say; fail an
    unhealthy canary (`unhealthy`) even with too few requests of its own to judge its metrics."""
    unhealthy = _unhealthy(window, analysis)
    needed = max(analysis.min_requests, 1)
    too_few = window.requests < needed and any(m.query is None for m in analysis.metrics)
    if too_few and not unhealthy:
        doomed = _fails_whatever_comes(window, analysis, needed)
        if doomed:
            return Verdict(Outcome.FAIL, (), doomed)
        return Verdict(
            Outcome.HOLD, (), f"{window.requests} canary requests in the interval; {needed} needed to judge"
        )
    results = []
    for check in () if too_few else analysis.metrics:
        value = measure(check, window)
        bounds = check.threshold_range
        passed = (
            value is not None
            and (bounds.min is None or value >= bounds.min)
            and (bounds.max is None or value <= bounds.max)
        )
        results.append(MetricResult(check.name, value, passed, _bound_text(check)))
    failed = [f"{r.name} {_value_text(r.value)} outside {r.bound}" for r in results if not r.passed]
    if failed or unhealthy:
        return Verdict(Outcome.FAIL, tuple(results), "; ".join(failed + unhealthy))
    return Verdict(Outcome.ADVANCE, tuple(results), "every metric within its range")


def _fails_whatever_comes(window: ArmWindow, analysis: Analysis, needed: int) -> str:
    """Too few requests to judge, yet already too many 5xx: even if every request still missing to reach
    `needed` succeeded, the success rate would be under its minimum. That is a failed check (a canary failing
    all of its small share is never "inconclusive"); '' when the interval may still pass."""
    for check in analysis.metrics:
        minimum = check.threshold_range.min
        if check.query is not None or check.name != "request-success-rate" or minimum is None:
            continue
        best = 100.0 * (needed - window.server_errors) / needed
        if best < minimum:
            return (
                f"request-success-rate at most {_value_text(best)} outside {_bound_text(check)}: "
                f"{window.server_errors} of {window.requests} canary requests failed, and {needed} are "
                "needed to judge"
            )
    return ""


def _unhealthy(window: ArmWindow, analysis: Analysis) -> list[str]:
    """Why the canary failed the interval whatever its metrics (Flagger: a canary that is not healthy fails its
    checks): it restarted (crash-looping), it is not ready, or none of the requests its share of the stable
    revision's traffic promised (at least max(minRequests, 10)) reached it. No traffic at all says nothing;
    with session affinity a weighted share is per header value, not per request: that test is not made."""
    why = []
    if window.restarts:
        times = "time" if window.restarts == 1 else "times"
        why.append(f"the canary restarted {window.restarts} {times} in the interval (crash-looping)")
    if not window.ready:
        why.append("the canary revision is not ready")
    share, served = window.share, window.stable_requests
    if window.requests == 0 and 0 < share and (share >= 100 or analysis.session_affinity is None):
        promised = served if share >= 100 else served * share / (100 - share)
        if promised >= max(analysis.min_requests, NO_ANSWER_MIN_SHARE):
            where = "(mirrored)" if share >= 100 else f"at {share}%"
            why.append(f"no request reached the canary {where} while the stable revision served {served}")
    return why


@dataclass(frozen=True, slots=True)
class CanaryStatus:
    """What persists with the service: where the rollout is and why."""

    phase: Phase = Phase.WAITING
    revision: str | None = None  # the canary revision under analysis
    step: int = -1  # index into the weights; -1 before the first step
    canary_weight: int = 0
    failed_checks: int = 0
    iterations: int = 0
    mirror_intervals: int = 0
    message: str = ""
    last_results: tuple[MetricResult, ...] = ()
    load_test_report: str = ""  # the folder of the gating Locust run's report
    paused_from: Phase | None = None  # while Paused: the phase `resume` goes back to

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": str(self.phase),
            "revision": self.revision,
            "step": self.step,
            "canaryWeight": self.canary_weight,
            "failedChecks": self.failed_checks,
            "iterations": self.iterations,
            "mirrorIntervals": self.mirror_intervals,
            "message": self.message,
            "lastResults": [r.to_json() for r in self.last_results],
            "loadTestReport": self.load_test_report,
            "pausedFrom": None if self.paused_from is None else str(self.paused_from),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CanaryStatus:
        results = tuple(
            MetricResult(r["name"], r.get("value"), r["passed"], r.get("threshold", ""))
            for r in data.get("lastResults", ())
        )
        return cls(
            Phase(data.get("phase", Phase.WAITING)),
            data.get("revision"),
            data.get("step", -1),
            data.get("canaryWeight", 0),
            data.get("failedChecks", 0),
            data.get("iterations", 0),
            data.get("mirrorIntervals", 0),
            data.get("message", ""),
            results,
            data.get("loadTestReport", ""),
            Phase(data["pausedFrom"]) if data.get("pausedFrom") else None,
        )


def start(revision: str, analysis: Analysis, load_tested: bool = False) -> CanaryStatus:
    """A new canary revision is ready: load-test it, then mirror if asked, else take the first step."""
    if analysis.load_test is not None and not load_tested:
        return CanaryStatus(
            Phase.LOAD_TESTING,
            revision,
            -1,
            0,
            message=(
                f"load test: {analysis.load_test.users} users for {analysis.load_test.duration} against the canary"
            ),
        )
    if analysis.mirror:
        return CanaryStatus(
            Phase.MIRRORING, revision, -1, 0, message="mirroring stable traffic to the canary"
        )
    first = analysis.weights[0]
    return CanaryStatus(Phase.PROGRESSING, revision, 0, first, message=f"step 1: {first}% to the canary")


def judge_load_test(summary: Mapping[str, Any], analysis: Analysis) -> Verdict:
    """The gating Locust run judged by the same metrics: success rate from its failures, durations from its
    percentiles (p50/p95/p99 of Locust's own report; p90 is read as p95, the nearest it reports)."""
    requests = int(summary.get("requests", 0))
    if requests == 0:
        return Verdict(Outcome.FAIL, (), "the load test sent no request")
    results = []
    for check in analysis.metrics:
        value: float | None
        if check.query is not None:
            value = None
        elif check.name == "request-success-rate":
            value = 100.0 * (requests - int(summary.get("failures", 0))) / requests
        else:
            value = float(summary.get({50: "p50_ms", 90: "p95_ms", 99: "p99_ms"}[check.percentile], 0.0))
        bounds = check.threshold_range
        passed = check.query is not None or (
            value is not None
            and (bounds.min is None or value >= bounds.min)
            and (bounds.max is None or value <= bounds.max)
        )
        results.append(MetricResult(check.name, value, passed, _bound_text(check)))
    failed = [r for r in results if not r.passed]
    if failed:
        return Verdict(
            Outcome.FAIL,
            tuple(results),
            "load test: " + "; ".join(f"{r.name} {_value_text(r.value)} outside {r.bound}" for r in failed),
        )
    return Verdict(Outcome.ADVANCE, tuple(results), f"load test passed ({requests} requests)")


def after_load_test(status: CanaryStatus, verdict: Verdict, analysis: Analysis, report: str) -> CanaryStatus:
    """A passed load test starts the analysis proper; a failed one rolls the canary back at once."""
    if status.phase is not Phase.LOAD_TESTING or status.revision is None:
        return status
    if verdict.outcome is not Outcome.ADVANCE:
        return replace(
            status,
            phase=Phase.FAILED,
            canary_weight=0,
            last_results=verdict.results,
            load_test_report=report,
            message=f"rolled back: {verdict.reason}",
        )
    started = start(status.revision, analysis, load_tested=True)
    return replace(
        started,
        last_results=verdict.results,
        load_test_report=report,
        message=f"{verdict.reason}; {started.message}",
    )


def advance(status: CanaryStatus, verdict: Verdict, analysis: Analysis) -> CanaryStatus:
    """The next status after one judged interval (only Mirroring and Progressing move)."""
    if status.phase not in (Phase.MIRRORING, Phase.PROGRESSING):
        return status
    status = replace(status, iterations=status.iterations + 1, last_results=verdict.results)
    if verdict.outcome is Outcome.HOLD:
        return replace(status, message=f"holding at {status.canary_weight}%: {verdict.reason}")
    if verdict.outcome is Outcome.FAIL:
        failed = status.failed_checks + 1
        if failed >= analysis.threshold:
            return replace(
                status,
                phase=Phase.FAILED,
                canary_weight=0,
                failed_checks=failed,
                message=f"rolled back after {failed} failed checks: {verdict.reason}",
            )
        return replace(
            status,
            failed_checks=failed,
            message=f"check failed ({failed}/{analysis.threshold}): {verdict.reason}",
        )
    return _next_step(status, analysis)


def _next_step(status: CanaryStatus, analysis: Analysis) -> CanaryStatus:
    weights = analysis.weights
    if status.phase is Phase.MIRRORING:
        mirrored = status.mirror_intervals + 1
        if mirrored < analysis.mirror_intervals:
            return replace(status, mirror_intervals=mirrored, message=f"mirrored interval {mirrored} passed")
        return replace(
            status,
            phase=Phase.PROGRESSING,
            mirror_intervals=mirrored,
            step=0,
            canary_weight=weights[0],
            message=f"mirror passed; step 1: {weights[0]}% to the canary",
        )
    step = status.step + 1
    if step >= len(weights):
        return replace(
            status,
            phase=Phase.PROMOTING,
            canary_weight=100,
            message=f"all {len(weights)} steps passed; promoting",
        )
    return replace(
        status,
        step=step,
        canary_weight=weights[step],
        message=f"step {step + 1}: {weights[step]}% to the canary",
    )


def _bound_text(check: MetricCheck) -> str:
    low, high = check.threshold_range.min, check.threshold_range.max
    unit = (
        "%"
        if check.name == "request-success-rate" and check.query is None
        else ("ms" if check.name == "request-duration" and check.query is None else "")
    )
    if low is not None and high is not None:
        return f"[{low:g}{unit}, {high:g}{unit}]"
    return f">= {low:g}{unit}" if low is not None else f"<= {high:g}{unit}"


def _value_text(value: float | None) -> str:
    return "no data" if value is None else f"{value:.4g}"
