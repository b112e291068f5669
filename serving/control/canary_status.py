"""The Canary object's status as Kubernetes users read it: the controller's record (phase, weight, checks, last
results) plus the conventions kubectl and dashboards expect (a `Promoted` condition with a reason, the time the
current phase began) and a bounded transition history. Pure functions: the operator's canary host writes them.
"""

from __future__ import annotations

import time
from typing import Any

from serving.canary.analysis import CanaryStatus, Phase

STATUS_HISTORY = 20  # transitions kept in the Canary's status


def status_body(status: CanaryStatus, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The Canary's status: the controller's record plus Kubernetes' conventions (conditions, transition time)."""
    since = last_transition_time(str(status.phase), history)
    promoted = {Phase.SUCCEEDED: "True", Phase.FAILED: "False"}.get(status.phase, "Unknown")
    condition = {
        "type": "Promoted",
        "status": promoted,
        "reason": str(status.phase),
        "message": status.message,
    }
    if since:
        condition["lastTransitionTime"] = since
    body = {**status.to_json(), "conditions": [condition], "history": history[-STATUS_HISTORY:]}
    if since:
        body["lastTransitionTime"] = since
    return body


def last_transition_time(phase: str, history: list[dict[str, Any]]) -> str | None:
    """When the current phase began: the first entry of the trailing run of entries in that phase."""
    since = None
    for entry in reversed(history):
        if entry.get("phase") != phase:
            break
        since = entry.get("time")
    return since


def invalid_status(reason: str, message: str) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "message": message,
        "conditions": [
            {
                "type": "Promoted",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastTransitionTime": now,
            }
        ],
    }
