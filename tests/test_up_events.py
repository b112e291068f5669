"""`serving up` says what happens, one line per event naming the service and revision (serving.control.events):
the status differ is pure and tested here on KServe-shaped statuses."""

from __future__ import annotations

import logging
from pathlib import Path

from serving.control.events import status_events
from tests.support import wait_until
from tests.up_support import cli, isvc_yaml, serving_up


def status(
    created: str | None = None,
    ready: str | None = None,
    traffic: dict[str, int] | None = None,
    failure: str | None = None,
) -> dict:
    out: dict = {
        "components": {
            "predictor": {
                "latestCreatedRevision": created,
                "latestReadyRevision": ready,
                "traffic": [{"revisionName": r, "percent": p} for r, p in (traffic or {}).items()],
            }
        }
    }
    if failure:
        out["modelStatus"] = {"lastFailureInfo": {"reason": "ModelLoadFailed", "message": failure}}
    return out


def test_a_first_revision_is_created_then_ready_then_takes_traffic() -> None:
    assert status_events({}, status("r1")) == [(logging.INFO, "revision r1 created")]
    assert status_events(status("r1"), status("r1", "r1", {"r1": 100})) == [
        (logging.INFO, "revision r1 ready"),
        (logging.INFO, "traffic r1 100%"),
    ]
    assert status_events(status("r1", "r1", {"r1": 100}), status("r1", "r1", {"r1": 100})) == []


def test_a_canary_split_and_a_failed_revision_are_said_once() -> None:
    stable = status("r1", "r1", {"r1": 100})
    canary = status("r2", "r2", {"r1": 80, "r2": 20})
    assert status_events(stable, canary) == [
        (logging.INFO, "revision r2 created"),
        (logging.INFO, "revision r2 ready"),
        (logging.INFO, "traffic r1 80%, r2 20%"),
    ]
    broken = status("r3", "r1", {"r1": 100}, failure="no model file in /m")
    assert status_events(stable, broken) == [
        (logging.INFO, "revision r3 created"),
        (logging.WARNING, "revision r3 failed: no model file in /m"),
    ]
    assert status_events(broken, broken) == []
    # The stable spec applied again (a revert, an undo): its revision is not created anew
    assert status_events(canary, status("r1", "r1", {"r1": 100, "r2": 0}))[0] == (
        logging.INFO,
        "revision r1 is the latest again",
    )


def test_up_logs_each_event_with_service_and_revision_and_quiet_keeps_failures(tmp_path: Path) -> None:
    from tests.support import train_iris_sklearn

    model = train_iris_sklearn(tmp_path / "model")
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(isvc_yaml("evented", model))
    bad.write_text(isvc_yaml("evented-bad", tmp_path / "missing"))
    with serving_up(tmp_path / "state") as up:
        cli(up, tmp_path / "state", "apply", "-f", str(good), "--wait=60s")
        cli(up, tmp_path / "state", "apply", "-f", str(bad), "--wait=60s", check=False)
        cli(up, tmp_path / "state", "delete", "isvc", "evented", "evented-bad")
        wait_until(lambda: "drained and stopped" in up.log(), 30, what="the drain line")
        log = up.log()
    for line in (
        "inferenceservice/evented created (generation 1)",
        "inferenceservice/evented: revision evented-",
        " ready",
        "inferenceservice/evented: traffic evented-",
        "inferenceservice/evented-bad: revision evented-bad-",
        "failed: ",
        "inferenceservice/evented deleted",
        "drained and stopped",
    ):
        assert line in log, (line, log)
    with serving_up(tmp_path / "quiet", extra=("--quiet",)) as up:
        cli(up, tmp_path / "quiet", "apply", "-f", str(bad), "--wait=60s", check=False)
        log = up.log()
    assert "created (generation 1)" not in log and "failed: " in log, log


def test_a_canary_names_the_previous_rolled_out_revision_in_status() -> None:
    """KServe's PREVROLLEDOUTREVISION column during a canary: the revision taking the rest of the traffic."""
    from serving.control.reconcile import Observed, RolloutState, plan
    from serving.revision import Revision
    from serving.spec import parse

    def isvc(uri: str, canary: int | None = None) -> object:
        predictor: dict = {"sklearn": {"storageUri": uri}}
        if canary is not None:
            predictor["canaryTrafficPercent"] = canary
        return parse(
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": "iris"},
                "spec": {"predictor": predictor},
            }
        )

    first, second = isvc("/m/1"), isvc("/m/2", canary=20)
    r1, r2 = Revision.from_spec(first).name, Revision.from_spec(second).name
    stable = plan(first, RolloutState(), Observed(ready=frozenset({r1})))
    canary = plan(second, stable.state, Observed(ready=frozenset({r1, r2})))
    component = canary.status["components"]["predictor"]
    assert component["previousRolledoutRevision"] == r1 and component["latestReadyRevision"] == r2
