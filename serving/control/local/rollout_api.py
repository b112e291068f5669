"""`serving rollout ...` on the control API: status, history, promote/rollback/pause/resume and undo.

With a Canary targeting the service, promote/rollback/pause/resume steer its analysis (manual control wins);
without one, promote and rollback edit canaryTrafficPercent as KServe does. Undo re-applies the document a
previous revision was created from (like `kubectl rollout undo`), even after a promotion.
"""

from __future__ import annotations

from typing import Any

import orjson

from serving.canary.analysis import Phase
from serving.control.local.canaries import LocalCanaries
from serving.control.local.control_plane import LocalControlPlane, Service
from serving.errors import BadRequest, NotFound
from serving.spec import parse

ACTIONS = ("promote", "rollback", "pause", "resume", "undo")


def rollout_status(
    service: Service, canaries: LocalCanaries | None, since: int | None = None
) -> dict[str, Any]:
    """One view of where a rollout is, with or without a Canary policy. With `since` and a Canary, also its
    status changes numbered after it (`changes`) and the latest number (`seq`): what a watch has not seen yet,
    brief phases included."""
    key = service.isvc.key
    predictor = service.status.get("components", {}).get("predictor", {})
    traffic = predictor.get("traffic", [])
    tracked = canaries.controller.tracked.get(key) if canaries else None
    out: dict[str, Any] = {
        "name": key[1],
        "namespace": key[0],
        "traffic": traffic,
        "stableRevision": service.rollout.rolled_out,
        "latestRevision": service.rollout.latest_created,
    }
    if tracked is None:
        split = [t for t in traffic if t.get("percent", 0) > 0]
        manual = next((t["percent"] for t in traffic if t.get("latestRevision") and len(traffic) > 1), None)
        phase = "Progressing" if len(split) > 1 else ("Succeeded" if traffic else "Waiting")
        return {
            **out,
            "policy": None,
            "phase": phase,
            "canaryWeight": manual or 0,
            "message": "no Canary policy: canaryTrafficPercent sets the split",
        }
    status, analysis = tracked.status, tracked.canary.spec.analysis
    if since is not None and canaries is not None:
        out = {**out, "seq": canaries.seq, "changes": canaries.changes(key, since)}
    return {
        **out,
        "policy": tracked.canary.metadata.name,
        **status.to_json(),
        "steps": list(analysis.weights),
        "threshold": analysis.threshold,
        "interval": analysis.interval,
    }


def rollout_history(
    control: LocalControlPlane, service: Service, canaries: LocalCanaries | None
) -> dict[str, Any]:
    key = service.isvc.key
    record = control.history.load(*key)
    tracked = canaries.controller.tracked.get(key) if canaries else None
    return {
        "name": key[1],
        "namespace": key[0],
        "events": record["events"],
        "revisions": list(record["documents"]),
        "canary": tracked.history if tracked else [],
    }


async def rollout_action(
    control: LocalControlPlane,
    service: Service,
    canaries: LocalCanaries | None,
    action: str,
    body: dict[str, Any],
) -> tuple[Service, dict[str, Any]]:
    """The service after the change, and what the answer adds: for undo, `{"undo": {"from", "to"}}` (the split in
    the status moves only once the revision gone back to is ready)."""
    key = service.isvc.key
    tracked = canaries.controller.tracked.get(key) if canaries else None
    if action == "undo":
        return await _undo(control, service, canaries, body.get("toRevision"))
    if tracked is not None and canaries is not None:
        controller = canaries.controller
        steer = {
            "promote": controller.promote,
            "rollback": controller.rollback,
            "pause": controller.pause,
            "resume": controller.resume,
        }[action]
        steer(key)
        if action == "rollback" and tracked.status.revision:
            control.history.event(*key, tracked.status.revision, "rolled back", "by the user")
        control.request_reconcile()
        await control.reconcile()
        return service, {}
    if action in ("pause", "resume"):
        raise BadRequest(
            f"{action}: no Canary policy targets InferenceService {key[0]}/{key[1]} "
            "(apply a Canary to have its analysis paused or resumed)"
        )
    rollout = service.rollout
    if action == "rollback" and rollout.rolled_out is None:
        raise BadRequest(
            f"InferenceService {key[1]} has no canary to roll back: no revision has rolled out yet"
        )
    if action == "rollback" and rollout.latest_created in (None, rollout.rolled_out):
        raise BadRequest(
            f"InferenceService {key[1]} has no canary to roll back: {rollout.rolled_out} serves all its traffic"
        )
    doc = orjson.loads(orjson.dumps(service.document))
    if action == "promote":
        set_canary_percent(doc, None)
        return await control.apply(parse(doc), doc), {}
    set_canary_percent(doc, 0)
    return await control.apply(parse(doc), doc, rolled_back_by="by the user"), {}


async def _undo(
    control: LocalControlPlane, service: Service, canaries: LocalCanaries | None, to_revision: str | None
) -> tuple[Service, dict[str, Any]]:
    key = service.isvc.key
    rollout = service.rollout
    target = to_revision or rollout.previous_rolled_out
    came_from = rollout.rolled_out
    if rollout.rolled_out != rollout.latest_created and not to_revision:
        # a canary in progress, failed or rolled back: undo goes back to the revision serving (kubectl's
        # previous revision after a failed rollout), so the spec no longer holds the candidate; never past it
        target = rollout.rolled_out
        came_from = rollout.latest_created
    if not target:
        raise BadRequest(f"InferenceService {key[1]} has no previous rolled-out revision to go back to")
    document = control.history.document(*key, target)
    if document is None:
        known = ", ".join(control.history.load(*key)["documents"]) or "none"
        raise NotFound(f"no document recorded for revision {target!r} of {key[1]} (known: {known})")
    doc = orjson.loads(orjson.dumps(document))
    set_canary_percent(doc, None)
    if canaries is not None:
        canaries.controller.skip_to(key, target, "by the user")
    control.history.event(*key, target, "undo", f"back from {came_from} by the user")
    return await control.apply(parse(doc), doc), {"undo": {"from": came_from, "to": target}}


async def delete_canary(
    control: LocalControlPlane, canaries: LocalCanaries, namespace: str, name: str
) -> list[str]:
    """Delete a Canary policy, keeping the split it left: a candidate it rolled back stays at 0 % and one it was
    analysing stays at its weight (canaryTrafficPercent written into the InferenceService, as `rollout
    rollback` writes it), so deleting the policy never promotes what it had not (as Flagger's never does).
    The warnings say what was written and how to promote."""
    found = next(
        (
            t
            for k, t in canaries.controller.tracked.items()
            if k[0] == namespace and t.canary.metadata.name == name
        ),
        None,
    )
    status = found.status if found is not None else None
    key = canaries.delete(namespace, name)
    service = control.services.get(key)
    if status is None or service is None:
        return []
    rollout = service.rollout
    # waiting (or paused waiting) for a candidate it has not judged yet: the split it left is 100/0
    waited = status.phase in (Phase.WAITING, Phase.PAUSED) and not status.revision
    if waited and rollout.latest_created and rollout.latest_created != rollout.rolled_out:
        candidate, percent, what = rollout.latest_created, 0, "not analysed yet"
    elif not status.revision or status.phase in (Phase.WAITING, Phase.PROMOTING, Phase.SUCCEEDED):
        return []
    elif rollout.latest_created != status.revision:  # the spec moved on meanwhile: nothing to keep
        return []
    else:
        candidate, percent = status.revision, 0 if status.phase is Phase.FAILED else status.canary_weight
        what = "rolled back" if status.phase is Phase.FAILED else f"at {percent}%"
    doc = orjson.loads(orjson.dumps(service.document))
    set_canary_percent(doc, percent)
    if doc == service.document:
        return []
    why = "before analysing it" if waited else "after rolling it back"
    await control.apply(parse(doc), doc, rolled_back_by=f"its Canary was deleted {why}")
    return [
        f"InferenceService {key[1]}: canaryTrafficPercent: {percent} written, the split Canary {name} left "
        f"({candidate} {what}); remove it (or `serving rollout promote {key[1]}`) to promote"
    ]


def set_canary_percent(doc: dict[str, Any], percent: int | None) -> None:
    """canaryTrafficPercent of every component written (the transformer's splits a transformer-only change):
    None removes it (promote: all traffic to the latest), 0 rolls back."""
    for name in ("predictor", "transformer"):
        component = doc["spec"].get(name)
        if not isinstance(component, dict):
            continue
        if percent is None:
            component.pop("canaryTrafficPercent", None)
        elif name == "predictor" or "canaryTrafficPercent" in component:
            component["canaryTrafficPercent"] = percent
