"""The canary controller over a host double: the host is our own narrow interface (rollout view, router
expositions, status sink); the counters are a real RouterMetrics registry and the clock is driven by the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.canary.analysis import CanaryStatus, Phase
from serving.canary.controller import CanaryController, RolloutView
from serving.canary.spec import parse_canary
from serving.metrics import RouterMetrics

KEY = ("default", "iris")


class Host:
    def __init__(self) -> None:
        self.view = RolloutView("iris-a", "iris-a", True)
        self.metrics = RouterMetrics()
        self.saved: list[CanaryStatus] = []
        self.load_tests: list[str] = []

    def rollout_view(self, key):
        return self.view

    def router_expositions(self):
        return [self.metrics.exposition()]

    def canary_changed(self, key, status, history):
        self.saved.append(status)

    def run_load_test(self, key, revision, load_test):
        self.load_tests.append(revision)

    def traffic(
        self, revision: str, n: int, code: int = 200, seconds: float = 0.003, arm: str = "canary"
    ) -> None:
        for _ in range(n):
            self.metrics.observe_route("iris", "default", revision, arm, code, seconds)


def canary_doc(target: str = "iris", **analysis) -> dict:
    return {
        "apiVersion": "serving.dev/v1alpha1",
        "kind": "Canary",
        "metadata": {"name": target},
        "spec": {
            "targetRef": {"name": target},
            "analysis": {
                "interval": "5s",
                "stepWeights": [10, 25, 50],
                "threshold": 2,
                "minRequests": 20,
                "metrics": [
                    {"name": "request-success-rate", "thresholdRange": {"min": 99}},
                    {"name": "request-duration", "thresholdRange": {"max": 500}},
                ],
            }
            | analysis,
        },
    }


def controller(host: Host, clock: list[float], **analysis) -> CanaryController:
    ctl = CanaryController(host, clock=lambda: clock[0])
    ctl.apply(parse_canary(canary_doc(**analysis)))
    return ctl


def test_good_canary_steps_then_promotes_and_succeeds():
    host, clock = Host(), [0.0]
    ctl = controller(host, clock)
    ctl.tick()
    assert ctl.percent_for(KEY) == 0  # nothing to analyse: the stable revision keeps everything
    host.view = RolloutView("iris-b", "iris-a", True)
    ctl.tick()
    weights = [ctl.percent_for(KEY)]
    for _ in range(3):
        host.traffic("iris-b", 50)
        clock[0] += 5
        ctl.tick()
        weights.append(ctl.percent_for(KEY))
    assert weights == [10, 25, 50, 100]
    assert ctl.tracked[KEY].status.phase is Phase.PROMOTING
    host.view = RolloutView("iris-b", "iris-b", True)
    ctl.tick()
    assert ctl.tracked[KEY].status.phase is Phase.SUCCEEDED and ctl.percent_for(KEY) == 0
    assert [h["phase"] for h in ctl.tracked[KEY].history][-1] == "Succeeded"


def test_a_changed_policy_mid_analysis_judges_a_whole_interval_of_its_own_before_anything_moves():
    """Re-applied with other steps and interval while at 25 %: no check on the partial interval under way (a
    re-apply used to make the next check due at once); the weight stays and, past the new list's last step,
    the next whole interval's verdict promotes. An unchanged re-apply keeps the schedule as it was."""
    host, clock = Host(), [0.0]
    ctl = controller(host, clock)
    host.view = RolloutView("iris-b", "iris-a", True)
    ctl.tick()
    host.traffic("iris-b", 50)
    clock[0] += 5
    ctl.tick()
    assert ctl.percent_for(KEY) == 25
    clock[0] += 2
    ctl.apply(parse_canary(canary_doc()))  # the same policy: its next check still 3 s away
    host.traffic("iris-b", 50)
    ctl.tick()
    assert ctl.percent_for(KEY) == 25
    ctl.apply(parse_canary(canary_doc(stepWeights=[5], interval="7s")))
    clock[0] += 3  # the old policy's check would be due now
    ctl.tick()
    assert (ctl.tracked[KEY].status.phase, ctl.percent_for(KEY)) == (Phase.PROGRESSING, 25)
    host.traffic("iris-b", 50)
    clock[0] += 4  # a whole 7 s interval since the change
    ctl.tick()
    assert ctl.tracked[KEY].status.phase is Phase.PROMOTING


def test_a_candidate_that_never_becomes_ready_fails_at_the_progress_deadline():
    """Its model load hangs: the Canary waits, saying how long is left, and past progressDeadlineSeconds
    fails (the stable revision keeps everything), instead of waiting for ever."""
    host, clock = Host(), [0.0]
    ctl = controller(host, clock)
    host.view = RolloutView("iris-b", "iris-a", False)  # starting, not failed
    ctl.tick()
    status = ctl.tracked[KEY].status
    assert status.phase is Phase.WAITING and "fails if it is not within 600 s" in status.message, status
    clock[0] += 599
    ctl.tick()
    assert ctl.tracked[KEY].status.phase is Phase.WAITING
    clock[0] += 2
    ctl.tick()
    status = ctl.tracked[KEY].status
    assert (status.phase, status.revision, ctl.percent_for(KEY)) == (Phase.FAILED, "iris-b", 0), status
    assert "not ready within progressDeadlineSeconds 600" in status.message
    host.view = RolloutView("iris-c", "iris-a", True)  # the next revision is analysed as usual
    ctl.tick()
    assert ctl.tracked[KEY].status.phase is Phase.PROGRESSING


def test_a_first_revision_is_not_analysed_and_the_next_one_is():
    """A service's first revision is ready a moment before it is marked rolled out: nothing stable to
    compare it against then, so it is no candidate (its Progressing status used to outlive it)."""
    host, clock = Host(), [0.0]
    ctl = controller(host, clock)
    host.view = RolloutView("iris-a", None, True)
    ctl.tick()
    assert (ctl.tracked[KEY].status.phase, ctl.tracked[KEY].status.revision) == (Phase.WAITING, None)
    host.view = RolloutView("iris-a", None, False, True, latest_error="storageUri: no such folder")
    ctl.tick()  # a first revision that fails has nothing to roll back to: the InferenceService says why
    assert ctl.tracked[KEY].status.phase is Phase.WAITING and host.saved == []
    host.view = RolloutView("iris-b", "iris-a", True)
    ctl.tick()
    assert (ctl.tracked[KEY].status.phase, ctl.tracked[KEY].status.revision) == (Phase.PROGRESSING, "iris-b")


def test_failing_canary_rolls_back_within_threshold_intervals_and_idle_holds():
    host, clock = Host(), [0.0]
    ctl = controller(host, clock)
    host.view = RolloutView("iris-b", "iris-a", True)
    ctl.tick()
    clock[0] += 5
    ctl.tick()  # no traffic: inconclusive, hold the step
    assert (ctl.tracked[KEY].status.phase, ctl.percent_for(KEY)) == (Phase.PROGRESSING, 10)
    for _ in range(2):
        host.traffic("iris-b", 30, code=500)
        clock[0] += 5
        ctl.tick()
    status = ctl.tracked[KEY].status
    assert (status.phase, ctl.percent_for(KEY)) == (Phase.FAILED, 0)
    assert "request-success-rate 0" in status.message
    assert host.saved[-1] == status  # every change reaches the host (persisted there)


def _at_the_second_step(host: Host, clock: list[float]) -> CanaryController:
    """A canary iris-b over iris-a that passed its first check: at 25 %."""
    ctl = controller(host, clock)
    host.view = RolloutView("iris-b", "iris-a", True)
    ctl.tick()
    host.traffic("iris-b", 50)
    clock[0] += 5
    ctl.tick()
    assert ctl.percent_for(KEY) == 25
    return ctl


def test_manual_control_wins_and_restart_resumes_at_the_same_step():
    host, clock = Host(), [0.0]
    ctl = _at_the_second_step(host, clock)
    ctl.pause(KEY)
    host.traffic("iris-b", 50)
    clock[0] += 5
    ctl.tick()
    assert (ctl.tracked[KEY].status.phase, ctl.percent_for(KEY)) == (Phase.PAUSED, 25)
    ctl.resume(KEY)
    persisted = CanaryStatus.from_json(ctl.tracked[KEY].status.to_json())
    again = controller(host, clock)  # a restarted `serving up` with the persisted status
    again.apply(again.tracked[KEY].canary, persisted)
    assert again.percent_for(KEY) == 25 and again.tracked[KEY].status.step == 1
    assert again.promote(KEY).canary_weight == 100


def test_a_restart_mid_analysis_holds_while_the_canary_starts_again_and_fails_past_the_deadline():
    """A restarted `serving up` restores the canary's replicas: "not ready" then is no verdict (a good canary was
    rolled back 2.6 s before its replica was ready again), until it is ready once more or progressDeadlineSeconds
    passes; the first check after the restore is a whole interval away."""
    host, clock = Host(), [0.0]
    ctl = _at_the_second_step(host, clock)
    persisted = CanaryStatus.from_json(ctl.tracked[KEY].status.to_json())
    again = CanaryController(host, clock=lambda: clock[0])  # the restart
    again.apply(ctl.tracked[KEY].canary, persisted)
    host.view = RolloutView("iris-b", "iris-a", False)  # its replica is being restored
    again.tick()
    assert again.tracked[KEY].next_check_s == clock[0] + 5, "a whole interval first"
    for _ in range(3):  # threshold 2: this failed it before
        clock[0] += 5
        again.tick()
    status = again.tracked[KEY].status
    assert (status.phase, status.canary_weight, status.failed_checks) == (Phase.PROGRESSING, 25, 0), (
        status.message
    )
    host.view = RolloutView("iris-b", "iris-a", True)
    host.traffic("iris-b", 50)
    clock[0] += 5
    again.tick()
    assert again.percent_for(KEY) == 50, again.tracked[KEY].status.message
    stuck = CanaryController(host, clock=lambda: clock[0])  # a canary that never comes back: the deadline
    stuck.apply(ctl.tracked[KEY].canary, CanaryStatus.from_json(again.tracked[KEY].status.to_json()))
    host.view = RolloutView("iris-b", "iris-a", False)
    deadline = stuck.tracked[KEY].canary.spec.progress_deadline_seconds
    clock[0] += deadline + 5
    for _ in range(2):
        stuck.tick()
        clock[0] += 5
    assert stuck.tracked[KEY].status.phase is Phase.FAILED


def test_a_promql_check_is_judged_only_with_its_own_queries_evaluated():
    """The host evaluates the due PromQL checks (each query up to 10 s), then ticks: a Canary whose check
    fell due while those queries ran was not queried, and must wait for the next pass, not fail on no data."""
    host, clock = Host(), [0.0]
    query = [{"name": "error-budget", "thresholdRange": {"max": 1}, "query": 'x{revision="{{ revision }}"}'}]
    ctl = CanaryController(host, clock=lambda: clock[0])
    a, b = ("default", "a"), ("default", "b")
    ctl.apply(parse_canary(canary_doc("a", metrics=query, minRequests=0)))
    host.view = RolloutView("iris-b", "iris-a", True)
    ctl.tick()  # a starts: due at 5
    clock[0] = 1.0
    ctl.apply(parse_canary(canary_doc("b", metrics=query, minRequests=0)))
    ctl.tick()  # b starts: due at 6
    clock[0] = 5.5
    due = ctl.due_queries()
    assert set(due) == {a} and due[a] == {"error-budget": 'x{revision="iris-b"}'}
    clock[0] = 7.0  # the queries took 1.5 s: b is due now, its query never ran
    ctl.tick({a: {"error-budget": 0.5}})
    assert ctl.tracked[a].status.canary_weight == 25
    held = ctl.tracked[b].status
    assert (held.canary_weight, held.failed_checks, held.iterations) == (10, 0, 0), held.message
    due = ctl.due_queries()
    assert set(due) == {b}
    ctl.tick({b: {"error-budget": 0.5}})
    assert ctl.tracked[b].status.canary_weight == 25
    clock[0] = 20.0
    ctl.due_queries()
    ctl.tick({})  # asked, but Prometheus had nothing: no data still fails
    assert all(ctl.tracked[k].status.failed_checks == 1 for k in (a, b))


def test_resume_returns_to_the_phase_it_was_paused_in_and_the_analysis_goes_on():
    host, clock = Host(), [0.0]
    ctl = controller(host, clock, mirror=True)
    host.view = RolloutView("iris-b", "iris-a", True)
    ctl.tick()
    assert ctl.tracked[KEY].status.phase is Phase.MIRRORING
    ctl.pause(KEY)
    clock[0] += 5
    ctl.tick()
    assert ctl.tracked[KEY].status.phase is Phase.PAUSED and not ctl.routing_for(KEY).mirror
    # `serving up` restarted while paused: the persisted status says where to go back to
    again = controller(host, clock, mirror=True)
    again.apply(again.tracked[KEY].canary, CanaryStatus.from_json(ctl.tracked[KEY].status.to_json()))
    for c in (ctl, again):
        resumed = c.resume(KEY)
        assert (resumed.phase, c.percent_for(KEY), c.routing_for(KEY).mirror) == (Phase.MIRRORING, 0, True)
    host.traffic("iris-b", 30)
    clock[0] += 5
    ctl.tick()
    assert (ctl.tracked[KEY].status.phase, ctl.percent_for(KEY)) == (Phase.PROGRESSING, 10)
    # paused during the gating load test: a run that ends meanwhile is not judged; resume runs it again
    ctl = controller(host, clock, loadTest={"users": 2, "duration": "2s"})
    ctl.tick()
    assert ctl.tracked[KEY].status.phase is Phase.LOAD_TESTING and host.load_tests == ["iris-b"]
    ctl.pause(KEY)
    ctl.load_test_finished(KEY, "iris-b", {"requests": 10, "failures": 0, "p99_ms": 5}, "report")
    assert ctl.tracked[KEY].status.phase is Phase.PAUSED
    assert ctl.resume(KEY).phase is Phase.LOAD_TESTING
    ctl.tick()
    assert host.load_tests == ["iris-b", "iris-b"]
    ctl.load_test_finished(KEY, "iris-b", {"requests": 10, "failures": 0, "p99_ms": 5}, "report")
    assert (ctl.tracked[KEY].status.phase, ctl.percent_for(KEY)) == (Phase.PROGRESSING, 10)


def test_a_candidate_that_fails_to_load_fails_the_canary_at_once():
    host, clock = Host(), [0.0]
    ctl = controller(host, clock)
    host.view = RolloutView("iris-b", "iris-a", False)
    ctl.tick()
    assert ctl.tracked[KEY].status.phase is Phase.WAITING  # still loading: wait for it
    host.view = RolloutView("iris-b", "iris-a", False, True, latest_error="storageUri: no such folder")
    ctl.tick()
    status = ctl.tracked[KEY].status
    assert (status.phase, status.revision, ctl.percent_for(KEY)) == (Phase.FAILED, "iris-b", 0)
    assert status.message == "rolled back: revision iris-b failed to load: storageUri: no such folder"
    assert ctl.tracked[KEY].history[-1]["phase"] == "Failed"
    ctl.tick()
    assert host.saved[-1] is status  # failed once, not again on every pass
    host.view = RolloutView("iris-c", "iris-a", True)  # the next revision gets its own analysis
    ctl.tick()
    assert (ctl.tracked[KEY].status.phase, ctl.percent_for(KEY)) == (Phase.PROGRESSING, 10)


def test_a_candidate_failing_while_retried_waits_until_the_progress_deadline():
    """A failure the host retries (a store that may come back) is Flagger's progressDeadlineSeconds case: the
    Canary waits, saying so, and fails only once the deadline passes without the candidate ready; one that
    recovers in time gets its analysis."""
    host, clock = Host(), [0.0]
    ctl = CanaryController(host, clock=lambda: clock[0])
    doc = canary_doc()
    doc["spec"]["progressDeadlineSeconds"] = 60
    ctl.apply(parse_canary(doc))
    retried = RolloutView("iris-b", "iris-a", False, True, "HTTP 503", latest_retrying=True)
    host.view = retried
    ctl.tick()
    status = ctl.tracked[KEY].status
    assert status.phase is Phase.WAITING and "is retried: HTTP 503" in status.message, status.message
    assert "within 60 s" in status.message and ctl.percent_for(KEY) == 0
    saved = len(host.saved)
    clock[0] += 59
    ctl.tick()
    assert ctl.tracked[KEY].status.phase is Phase.WAITING
    assert len(host.saved) == saved  # the countdown is not a new status on every pass
    clock[0] += 2
    ctl.tick()
    status = ctl.tracked[KEY].status
    assert (status.phase, status.revision) == (Phase.FAILED, "iris-b")
    assert "progressDeadlineSeconds 60" in status.message
    host.view = RolloutView("iris-c", "iris-a", False, True, "HTTP 503", latest_retrying=True)
    ctl.tick()  # a new candidate gets its own deadline
    assert ctl.tracked[KEY].status.phase is Phase.WAITING
    clock[0] += 30
    host.view = RolloutView("iris-c", "iris-a", True)  # the store came back in time
    ctl.tick()
    assert (ctl.tracked[KEY].status.phase, ctl.percent_for(KEY)) == (Phase.PROGRESSING, 10)
    clock[0] += 100  # long after: it fails again and is retried, with a whole deadline of its own
    host.view = RolloutView("iris-c", "iris-a", False, True, "HTTP 503", latest_retrying=True)
    ctl.tick()
    assert ctl.tracked[KEY].status.phase is Phase.WAITING, ctl.tracked[KEY].status.message


@pytest.mark.asyncio
async def test_local_host_reports_a_canary_revision_whose_model_failed_to_load(tmp_path: Path):
    """`serving up`'s host over the real local control plane (in-process fake replicas): the failed load
    reaches the controller, which fails the Canary, records it in the rollout history and keeps the stable
    revision at 100 %."""
    from serving.control.local.canaries import LocalCanaries
    from serving.spec import parse
    from tests.test_control_local import FakeReplica, Sink, _doc, _plane, _until

    good, broken = tmp_path / "good", tmp_path / "broken-model"
    for path in (good, broken):
        path.mkdir()
        (path / "model.joblib").write_bytes(b"")
    FakeReplica.failing.add("broken-model")
    control = _plane(tmp_path, Sink())
    canaries = LocalCanaries(control, lambda: [])
    await control.start()
    try:
        canaries.apply(canary_doc())
        await control.apply(parse(_doc(good)), _doc(good))
        await _until(lambda: control.get("default", "iris").rollout.rolled_out is not None)
        stable = control.get("default", "iris").rollout.rolled_out
        await control.apply(parse(_doc(broken)), _doc(broken))
        service = control.get("default", "iris")
        await _until(
            lambda: control.runners[("default", service.rollout.latest_created)].failure() is not None
        )
        canaries.controller.tick()
        status = canaries.controller.tracked[KEY].status
        latest = service.rollout.latest_created
        assert (status.phase, status.revision) == (Phase.FAILED, latest), status
        assert status.message == f"rolled back: revision {latest} failed to load: model failed to load"
        events = control.history.load("default", "iris")["events"]
        assert (events[-1]["revision"], events[-1]["event"]) == (latest, "rolled back")
        await control.reconcile()
        traffic = service.status["components"]["predictor"]["traffic"]
        assert [(t["revisionName"], t["percent"]) for t in traffic if t["percent"]] == [(stable, 100)]
    finally:
        FakeReplica.failing.discard("broken-model")
        await control.shutdown()


def test_a_canary_that_answers_nothing_crashes_or_is_down_fails_its_checks_and_idle_still_holds():
    """The router retries on the stable arm what never reached a crashing canary, so the canary's own counters
    stay at 0: that is not "too little traffic" when the stable arm served its share, nor when the canary
    restarted or was not ready in the interval."""
    host, clock = Host(), [0.0]
    ctl = controller(host, clock)
    host.view = RolloutView("iris-b", "iris-a", True)
    ctl.tick()
    host.traffic("iris-a", 500, arm="stable")  # no stable reading before it: not judged on that
    clock[0] += 5
    ctl.tick()  # the first interval: nothing at all (the stable arm's earlier traffic is not in it)
    assert "0 canary requests in the interval" in ctl.tracked[KEY].status.message
    host.traffic("iris-a", 100, arm="stable")  # at 10 %, the canary's share would be 11: fewer than 20
    clock[0] += 5
    ctl.tick()
    assert (ctl.tracked[KEY].status.failed_checks, ctl.percent_for(KEY)) == (0, 10)  # low traffic: hold
    host.traffic("iris-a", 200, arm="stable")
    clock[0] += 5
    ctl.tick()
    status = ctl.tracked[KEY].status
    assert status.failed_checks == 1 and ctl.percent_for(KEY) == 10
    assert status.message == (
        "check failed (1/2): no request reached the canary at 10% while the stable revision served 200"
    )
    host.view = RolloutView("iris-b", "iris-a", False, latest_restarts=3)  # crash-looping, down right now
    clock[0] += 5
    ctl.tick()
    status = ctl.tracked[KEY].status
    assert (status.phase, ctl.percent_for(KEY)) == (Phase.FAILED, 0)
    assert status.message == (
        "rolled back after 2 failed checks: the canary restarted 3 times in the interval (crash-looping); "
        "the canary revision is not ready"
    )
    # A crash that still left enough answers to judge fails too, with the metrics' verdicts beside it.
    host, clock = Host(), [0.0]
    ctl = controller(host, clock)
    host.view = RolloutView("iris-b", "iris-a", True, latest_restarts=1)
    ctl.tick()
    host.view = RolloutView("iris-b", "iris-a", True, latest_restarts=2)
    host.traffic("iris-b", 50)
    clock[0] += 5
    ctl.tick()
    status = ctl.tracked[KEY].status
    assert status.failed_checks == 1 and len(status.last_results) == 2
    assert status.message.endswith("the canary restarted 1 time in the interval (crash-looping)")


@pytest.mark.asyncio
async def test_local_host_reports_the_canary_revisions_restarts_and_readiness(tmp_path: Path):
    from serving.control.local.canaries import LocalCanaries
    from serving.control.local.processes import ReplicaState
    from serving.spec import parse
    from tests.test_control_local import Sink, _doc, _plane, _until

    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    for path in (v1, v2):
        path.mkdir()
        (path / "model.joblib").write_bytes(b"")
    clock = [0.0]
    control = _plane(tmp_path, Sink())
    canaries = LocalCanaries(control, lambda: [])
    canaries.controller.clock = lambda: clock[0]
    await control.start()
    try:
        canaries.apply(canary_doc())
        await control.apply(parse(_doc(v1)), _doc(v1))
        await _until(lambda: control.get("default", "iris").rollout.rolled_out is not None)
        await control.apply(parse(_doc(v2)), _doc(v2))
        latest = control.get("default", "iris").rollout.latest_created
        await _until(lambda: control.revision_ready("default", latest))
        canaries.controller.tick()
        assert canaries.controller.tracked[KEY].status.phase is Phase.PROGRESSING
        (replica,) = control.runners[("default", latest)].predictors
        replica.restarts, replica.state = 2, ReplicaState.STARTING  # as processes.Replica after crashes
        clock[0] += 5
        canaries.controller.tick()
        status = canaries.controller.tracked[KEY].status
        assert status.failed_checks == 1, status
        assert status.message == (
            "check failed (1/2): the canary restarted 2 times in the interval (crash-looping); "
            "the canary revision is not ready"
        )
    finally:
        await control.shutdown()


def test_the_stable_spec_applied_again_mid_analysis_ends_it_without_failing():
    """A user re-applies the stable revision's spec while a canary is analysed: the candidate is drained, and
    the analysis ends (Waiting, naming why) instead of failing the gone revision for "no request reached it"."""
    host, clock = Host(), [0.0]
    ctl = controller(host, clock)
    host.view = RolloutView("iris-b", "iris-a", True)
    ctl.tick()
    host.traffic("iris-b", 50)
    host.traffic("iris-a", 450, arm="stable")
    clock[0] += 5
    ctl.tick()
    assert (ctl.tracked[KEY].status.phase, ctl.percent_for(KEY)) == (Phase.PROGRESSING, 25)
    host.view = RolloutView("iris-a", "iris-a", True)  # the stable spec again: latest is the stable one
    for _ in range(4):  # stable keeps serving, the gone candidate none: was a failed check each interval
        host.traffic("iris-a", 500, arm="stable")
        clock[0] += 5
        ctl.tick()
    status = ctl.tracked[KEY].status
    assert status.phase is Phase.WAITING and ctl.percent_for(KEY) == 0, status
    assert "iris-b ended: iris-a was applied again" in status.message
    assert all(h["phase"] != "Failed" for h in ctl.tracked[KEY].history)
    host.view = RolloutView("iris-c", "iris-a", True)  # the next revision is analysed as usual
    ctl.tick()
    assert (ctl.tracked[KEY].status.phase, ctl.tracked[KEY].status.revision) == (Phase.PROGRESSING, "iris-c")


def test_an_undo_ends_as_the_users_undo_not_as_a_promotion():
    from serving.commands.rollout import format_status

    host, clock = Host(), [0.0]
    ctl = controller(host, clock)
    host.view = RolloutView("iris-b", "iris-b", True)
    ctl.skip_to(KEY, "iris-a", "by the user")
    host.view = RolloutView("iris-a", "iris-a", True)
    ctl.tick()
    status = ctl.tracked[KEY].status
    assert status.phase is Phase.SUCCEEDED and status.message == "undo to iris-a by the user: done"
    shown = format_status({"name": "iris", **status.to_json(), "steps": [10, 25, 50], "threshold": 2})
    assert "3/3 of [10, 25, 50]" in shown  # past the last step, never "4/3"


def test_a_pause_while_waiting_holds_the_candidate_until_resume():
    """`rollout pause` while the Canary waits for its candidate was undone at the next tick (Paused -> Waiting
    in 0.17 s) and the candidate, once ready, was stepped up and promoted with no `resume` (audit
    /tmp/audit-canary3 H2): manual control wins; it waits paused at 0 %, and resume takes the analysis up."""
    host, clock = Host(), [0.0]
    ctl = controller(host, clock)
    host.view = RolloutView("iris-b", "iris-a", False)  # still loading
    ctl.tick()
    assert ctl.tracked[KEY].status.phase is Phase.WAITING
    assert ctl.pause(KEY).phase is Phase.PAUSED
    host.view = RolloutView("iris-b", "iris-a", True)  # ready now
    for _ in range(3):
        clock[0] += 5
        ctl.tick()
        assert (ctl.tracked[KEY].status.phase, ctl.percent_for(KEY)) == (Phase.PAUSED, 0)
    assert ctl.resume(KEY).phase is Phase.WAITING
    ctl.tick()
    assert (ctl.tracked[KEY].status.phase, ctl.percent_for(KEY)) == (Phase.PROGRESSING, 10)
