"""`serving up` says what happens, one line per event naming the service and revision (serving.control.events):
the status differ is pure and tested here on KServe-shaped statuses."""

from __future__ import annotations

import logging

from serving.control.events import status_events


def status(created: str | None = None, ready: str | None = None, traffic: dict[str, int] | None = None,
           failure: str | None = None) -> dict:
    out: dict = {"components": {"predictor": {
        "latestCreatedRevision": created, "latestReadyRevision": ready,
        "traffic": [{"revisionName": r, "percent": p} for r, p in (traffic or {}).items()]}}}
    if failure:
        out["modelStatus"] = {"lastFailureInfo": {"reason": "ModelLoadFailed", "message": failure}}
    return out


def test_a_first_revision_is_created_then_ready_then_takes_traffic() -> None:
    assert status_events({}, status("r1")) == [(logging.INFO, "revision r1 created")]
    assert status_events(status("r1"), status("r1", "r1", {"r1": 100})) == [
        (logging.INFO, "revision r1 ready"), (logging.INFO, "traffic r1 100%")]
    assert status_events(status("r1", "r1", {"r1": 100}), status("r1", "r1", {"r1": 100})) == []


def test_a_canary_split_and_a_failed_revision_are_said_once() -> None:
    stable = status("r1", "r1", {"r1": 100})
    canary = status("r2", "r2", {"r1": 80, "r2": 20})
    assert status_events(stable, canary) == [
        (logging.INFO, "revision r2 created"), (logging.INFO, "revision r2 ready"),
        (logging.INFO, "traffic r1 80%, r2 20%")]
    broken = status("r3", "r1", {"r1": 100}, failure="no model file in /m")
    assert status_events(stable, broken) == [
        (logging.INFO, "revision r3 created"), (logging.WARNING, "revision r3 failed: no model file in /m")]
    assert status_events(broken, broken) == []
