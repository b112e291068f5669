"""The Canary document and its pure analysis: verdicts per interval and the phase machine (no servers)."""

from __future__ import annotations

from collections import Counter

import pytest

from serving.canary.analysis import (
    ArmWindow,
    CanaryStatus,
    Outcome,
    Phase,
    advance,
    histogram_quantile,
    judge,
    start,
)
from serving.canary.spec import CanarySpecError, parse_canary
from serving.router.affinity import arm_for

BUCKETS_FAST = ((0.005, 90), (0.01, 100), (0.1, 100), (float("inf"), 100))  # 90 % under 5 ms
BUCKETS_SLOW = ((0.1, 10), (1.0, 50), (2.5, 100), (float("inf"), 100))


def canary(**analysis) -> dict:
    base = {
        "interval": "5s",
        "stepWeights": [10, 25, 50],
        "threshold": 2,
        "minRequests": 20,
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}},
            {"name": "request-duration", "thresholdRange": {"max": 500}},
        ],
    }
    return {
        "apiVersion": "serving.dev/v1alpha1",
        "kind": "Canary",
        "metadata": {"name": "iris"},
        "spec": {"targetRef": {"name": "iris"}, "analysis": base | analysis},
    }


def test_the_issue_example_parses():
    doc = canary(
        mirror=False, sessionAffinity={"header": "x-user-id"}, loadTest={"users": 8, "duration": "30s"}
    )
    parsed = parse_canary(doc)
    assert parsed.spec.analysis.weights == (10, 25, 50)
    assert parsed.spec.analysis.interval_s == 5.0
    assert parsed.target_key == ("default", "iris")


def test_step_weight_and_max_weight_expand():
    doc = canary()
    doc["spec"]["analysis"].pop("stepWeights")
    doc["spec"]["analysis"] |= {"stepWeight": 20, "maxWeight": 60}
    assert parse_canary(doc).spec.analysis.weights == (20, 40, 60)


@pytest.mark.parametrize(
    "change, path",
    [
        ({"stepWeights": [50, 10]}, "spec.analysis"),
        ({"interval": "soon"}, "spec.analysis.interval"),
        ({"metrics": [{"name": "cpu", "thresholdRange": {"max": 1}}]}, "spec.analysis.metrics[0]"),
        (
            {"metrics": [{"name": "request-duration", "thresholdRange": {}}]},
            "spec.analysis.metrics[0].thresholdRange",
        ),
        ({"stepWeigths": [10]}, "spec.analysis.stepWeigths"),
    ],
)
def test_bad_canaries_name_the_field(change, path):
    with pytest.raises(CanarySpecError) as err:
        parse_canary(canary(**change))
    assert err.value.message.startswith(path), err.value.message


def test_histogram_quantile_interpolates_like_prometheus():
    assert histogram_quantile(0.5, BUCKETS_FAST) == pytest.approx(0.005 * 50 / 90)
    assert histogram_quantile(0.99, BUCKETS_SLOW) == pytest.approx(1.0 + 1.5 * 49 / 50)
    assert histogram_quantile(0.99, ()) is None


def test_verdicts():
    analysis = parse_canary(canary()).spec.analysis
    assert judge(ArmWindow(100, 0, BUCKETS_FAST), analysis).outcome is Outcome.ADVANCE
    assert judge(ArmWindow(5, 0, BUCKETS_FAST), analysis).outcome is Outcome.HOLD
    failing = judge(ArmWindow(100, 40, BUCKETS_FAST), analysis)
    assert failing.outcome is Outcome.FAIL and "request-success-rate 60" in failing.reason
    slow = judge(ArmWindow(100, 0, BUCKETS_SLOW), analysis)
    assert slow.outcome is Outcome.FAIL and "request-duration" in slow.reason


def test_too_few_requests_with_too_many_failures_fail_the_check():
    """Below minRequests the interval holds, unless the 5xx already seen sink the success rate whatever the
    missing requests would be: 11 of 11 failing (20 needed, >= 99 %) is a failed check, not a hold."""
    analysis = parse_canary(canary()).spec.analysis
    doomed = judge(ArmWindow(11, 11, BUCKETS_FAST), analysis)
    assert doomed.outcome is Outcome.FAIL, doomed
    assert "request-success-rate at most 45 outside >= 99" in doomed.reason, doomed.reason
    assert "11 of 11 canary requests failed" in doomed.reason
    # one failure in 5 could still end at 19 of 20 = 95 %: also under 99 %, so failed
    assert judge(ArmWindow(5, 1, BUCKETS_FAST), analysis).outcome is Outcome.FAIL
    # none failed yet: nothing to say
    assert judge(ArmWindow(5, 0, BUCKETS_FAST), analysis).outcome is Outcome.HOLD
    lenient = parse_canary(
        canary(metrics=[{"name": "request-success-rate", "thresholdRange": {"min": 90}}])
    ).spec.analysis
    assert judge(ArmWindow(5, 1, BUCKETS_FAST), lenient).outcome is Outcome.HOLD  # 19/20 = 95 % >= 90 %


def test_good_canary_walks_every_step_then_promotes():
    analysis = parse_canary(canary()).spec.analysis
    status = start("iris-b", analysis)
    weights = [status.canary_weight]
    good = judge(ArmWindow(100, 0, BUCKETS_FAST), analysis)
    while status.phase is Phase.PROGRESSING:
        status = advance(status, good, analysis)
        weights.append(status.canary_weight)
    assert weights == [10, 25, 50, 100] and status.phase is Phase.PROMOTING


def test_bad_canary_rolls_back_after_threshold_and_idle_holds():
    analysis = parse_canary(canary()).spec.analysis
    status = start("iris-b", analysis)
    idle = judge(ArmWindow(0, 0), analysis)
    for _ in range(5):
        status = advance(status, idle, analysis)
    assert (status.phase, status.canary_weight, status.failed_checks) == (Phase.PROGRESSING, 10, 0)
    bad = judge(ArmWindow(100, 100), analysis)
    status = advance(status, bad, analysis)
    assert status.phase is Phase.PROGRESSING and status.failed_checks == 1
    status = advance(status, bad, analysis)
    assert (status.phase, status.canary_weight) == (Phase.FAILED, 0)
    assert "rolled back after 2 failed checks" in status.message
    assert CanaryStatus.from_json(status.to_json()) == status


def test_mirror_comes_before_the_first_weighted_step():
    analysis = parse_canary(canary(mirror=True, mirrorIntervals=2)).spec.analysis
    status = start("iris-b", analysis)
    assert (status.phase, status.canary_weight) == (Phase.MIRRORING, 0)
    good = judge(ArmWindow(100, 0, BUCKETS_FAST), analysis)
    status = advance(status, good, analysis)
    assert status.phase is Phase.MIRRORING
    status = advance(status, good, analysis)
    assert (status.phase, status.canary_weight) == (Phase.PROGRESSING, 10)


def test_affinity_is_stable_and_shares_match_weights_within_two_percent():
    weights = (75, 25)
    counts = Counter(arm_for(f"user-{i}", weights) for i in range(10_000))
    assert abs(counts[0] / 10_000 - 0.75) < 0.02 and abs(counts[1] / 10_000 - 0.25) < 0.02
    assert all(arm_for(f"user-{i}", weights) == arm_for(f"user-{i}", weights) for i in range(100))


def test_counters_come_from_real_router_metrics_and_windows_are_deltas():
    from serving.canary.snapshot import interval_window, revision_counters
    from serving.metrics import RouterMetrics

    metrics = RouterMetrics()
    for code, seconds in ((200, 0.004), (200, 0.004), (503, 0.2)):
        metrics.observe_route("iris", "default", "iris-b", "canary", code, seconds)
    metrics.observe_route("iris", "default", "iris-a", "stable", 200, 0.001)
    first = revision_counters([metrics.exposition()], "default", "iris", "iris-b")
    assert (first.requests, first.server_errors) == (3, 1)
    metrics.observe_route("iris", "default", "iris-b", "canary", 200, 0.004)
    second = revision_counters([metrics.exposition(), metrics.exposition()], "default", "iris", "iris-b")
    assert second.requests == 8  # two routers' expositions are summed
    window = interval_window(first, revision_counters([metrics.exposition()], "default", "iris", "iris-b"))
    assert (window.requests, window.server_errors, window.latency_buckets[-1][1]) == (1, 0, 1)


def test_a_canary_that_took_no_part_fails_but_idle_or_low_traffic_holds():
    analysis = parse_canary(canary()).spec.analysis
    hold = [
        ArmWindow(0, 0, share=10, stable_requests=0),  # no traffic at all
        ArmWindow(0, 0, share=10, stable_requests=170),  # its 10 % would be 18.9 requests: fewer than 20
        ArmWindow(5, 0, BUCKETS_FAST, share=10, stable_requests=1000),  # it answered some: too few to judge
    ]
    assert [judge(w, analysis).outcome for w in hold] == [Outcome.HOLD] * 3
    skipped = judge(ArmWindow(0, 0, share=10, stable_requests=180), analysis)
    assert skipped.outcome is Outcome.FAIL and skipped.results == ()
    assert skipped.reason == "no request reached the canary at 10% while the stable revision served 180"
    mirrored = judge(ArmWindow(0, 0, share=100, stable_requests=20), analysis)
    assert mirrored.reason == "no request reached the canary (mirrored) while the stable revision served 20"
    pinned = parse_canary(canary(sessionAffinity={"header": "x-user-id"})).spec.analysis
    assert judge(ArmWindow(0, 0, share=10, stable_requests=1000), pinned).outcome is Outcome.HOLD
    down = judge(ArmWindow(0, 0, ready=False, restarts=2), analysis)
    assert (
        down.reason
        == "the canary restarted 2 times in the interval (crash-looping); the canary revision is not ready"
    )


def test_a_user_the_canary_served_stays_on_it_as_its_weight_steps_up():
    """Session affinity laid the arms' slices out in the route's order, which follows the weights (stable first
    at 75/25, the canary first at 50/50): all 513 users on the canary at 25 % were back on the stable at 50 %
    (audit /tmp/audit-canary3 M1). The canary's slice is now [0, w): it only grows."""
    from serving.router.balancer import Balancer
    from serving.router.table import Arm, ServiceRoute

    def route(stable: int, canary: int, canary_first: bool) -> ServiceRoute:
        arms = (
            Arm("iris-old", stable, "stable", "prev", ("http://127.0.0.1:1",)),
            Arm("iris-new", canary, "canary", "latest", ("http://127.0.0.1:2",)),
        )
        return ServiceRoute("iris", "default", arms[::-1] if canary_first else arms)

    balancer, users = Balancer(), [f"user-{i}" for i in range(2000)]
    at_25 = {u: balancer.choose(route(75, 25, False), u).revision for u in users}  # type: ignore[union-attr]
    at_50 = {u: balancer.choose(route(50, 50, True), u).revision for u in users}  # type: ignore[union-attr]
    on_canary = [u for u in users if at_25[u] == "iris-new"]
    assert 400 < len(on_canary) < 600
    assert all(at_50[u] == "iris-new" for u in on_canary)  # none sent back to the old model
    moved = sum(at_25[u] != at_50[u] for u in users)
    assert abs(moved / 2000 - 0.25) < 0.03  # only the slice that changed hands moves
