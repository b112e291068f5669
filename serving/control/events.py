"""One log line per event a user of `serving up` needs, each naming the service and the revision.

Logger `serving.events` (`serving up --quiet` keeps only its warnings: failures and crashes). Status events are
derived by comparing a service's status before and after a reconcile pass (`status_events`, pure), so the
control plane reports them from one place whatever caused them:

    inferenceservice/iris created (generation 1)
    inferenceservice/iris: revision iris-1a2b3c4d created
    replica iris-1a2b3c4d-predictor-0 started
    replica iris-1a2b3c4d-predictor-0 ready
    inferenceservice/iris: revision iris-1a2b3c4d ready
    inferenceservice/iris: traffic iris-1a2b3c4d 100%
    inferenceservice/iris: revision iris-9f8e7d6c failed: ...        (warning)
    revision iris-1a2b3c4d drained and stopped
    inferenceservice/iris deleted
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("serving.events")

Key = tuple[str, str]  # (namespace, name)


def _service(key: Key) -> str:
    namespace, name = key
    return f"inferenceservice/{name}" if namespace == "default" else f"inferenceservice/{namespace}/{name}"


def applied(key: Key, outcome: str, generation: int) -> None:
    log.info("%s %s (generation %d)", _service(key), outcome, generation)


def deleted(key: Key) -> None:
    log.info("%s deleted", _service(key))


def drained(revision: str, replicas: int | None = None) -> None:
    if replicas is None:
        log.info("revision %s drained and stopped", revision)
    else:
        log.info(
            "revision %s: %d replica%s drained and stopped", revision, replicas, "" if replicas == 1 else "s"
        )


def gave_up(revision: str, replicas: int) -> None:
    log.info(
        "revision %s failed for good: its other %d replica%s stopped",
        revision,
        replicas,
        "" if replicas == 1 else "s",
    )


def replica(name: str, what: str, detail: str = "") -> None:
    """`started`, `ready`, `restarted` (info); `crashed`, `failed` (warning, with the detail)."""
    level = logging.WARNING if what in ("crashed", "failed", "unhealthy") else logging.INFO
    log.log(level, "replica %s %s%s", name, what, f": {detail}" if detail else "")


def status_events(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[int, str]]:
    """(level, message) for what changed between two statuses of one service, in the order it happened."""
    before, after = _predictor(old), _predictor(new)
    events: list[tuple[int, str]] = []
    created = after.get("latestCreatedRevision")
    if created and created != before.get("latestCreatedRevision"):
        known = {t.get("revisionName") for t in before.get("traffic", [])} | {
            before.get(k)
            for k in ("latestReadyRevision", "latestRolledoutRevision", "previousRolledoutRevision")
        }  # a spec applied again (a revert, an undo): its revision exists already
        said = "is the latest again" if created in known else "created"
        events.append((logging.INFO, f"revision {created} {said}"))
    ready = after.get("latestReadyRevision")
    if ready and ready != before.get("latestReadyRevision"):
        events.append((logging.INFO, f"revision {ready} ready"))
    failure = new.get("modelStatus", {}).get("lastFailureInfo")
    if failure and failure != old.get("modelStatus", {}).get("lastFailureInfo"):
        events.append((logging.WARNING, f"revision {created or '?'} failed: {failure.get('message', '')}"))
    split = _split(after)
    if split != _split(before):
        events.append((logging.INFO, f"traffic {split}" if split else "traffic none (no ready revision)"))
    return events


def status_changed(key: Key, old: dict[str, Any], new: dict[str, Any]) -> None:
    for level, message in status_events(old, new):
        log.log(level, "%s: %s", _service(key), message)


def _predictor(status: dict[str, Any]) -> dict[str, Any]:
    component: dict[str, Any] = status.get("components", {}).get("predictor", {})
    return component


def _split(predictor: dict[str, Any]) -> str:
    return ", ".join(f"{t['revisionName']} {t['percent']}%" for t in predictor.get("traffic", []))
