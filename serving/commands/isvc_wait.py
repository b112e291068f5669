"""`serving wait NAME` and `serving apply --wait`: poll an InferenceService's status until its latest revision
serves (exit 0), fails to load for good (exit 1, with the reason) or the timeout passes (exit 1), printing a
progress line on stderr whenever what it waits for changes. A failure the control plane will try again of a
model fetched from a store or URL is waited through, its reason printed, as `kubectl wait` waits through a
CrashLoopBackOff."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import Any

from serving.control.local.client import ControlClient
from serving.control.local.retry_note import is_retried

POLL_S = 0.25
DEFAULT_TIMEOUT = "300s"


def parse_timeout(text: str) -> float:
    """`90`, `90s`, `2m`, `1m30s`, `1h` -> seconds (kubectl's --timeout forms)."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    if not text or not parts:
        raise ValueError(f"timeout {text!r} is not like 90s, 2m or 1m30s")
    hours, minutes, seconds = (float(g or 0) for g in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def verdict(item: dict[str, Any]) -> tuple[str, str]:
    """("ready" | "failed" | "waiting", what to tell the user) for one status read."""
    status = item.get("status", {})
    if status.get("observedGeneration", 0) < item.get("metadata", {}).get("generation", 0):
        return "waiting", "status not updated yet"
    predictor = status.get("components", {}).get("predictor", {})
    latest = predictor.get("latestCreatedRevision") or "?"
    failure = status.get("modelStatus", {}).get("lastFailureInfo")
    if failure:
        said = f"revision {latest} failed ({failure.get('reason', 'Failed')}): {failure.get('message', '')}"
        passing = is_retried(failure.get("message", "")) and _fetched_remotely(item)
        return ("waiting" if passing else "failed"), said
    ready: dict[str, Any] = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
    if ready.get("status") == "True" and predictor.get("latestReadyRevision") == latest:
        split = ", ".join(f"{t['revisionName']} {t['percent']}%" for t in predictor.get("traffic", []))
        return "ready", f"ready: {split}"
    return "waiting", f"revision {latest} {ready.get('reason') or 'not ready'}".rstrip()


def _fetched_remotely(item: dict[str, Any]) -> bool:
    """Whether the service's model comes from a store or URL, whose failure may pass (the store comes back, the
    object is uploaded): waited through. A missing local path, warned at apply, is nearly always a typo: said at
    once, though `serving up` keeps looking for it."""
    from serving.revision import Revision
    from serving.spec import SpecError, parse

    try:
        return Revision.from_spec(parse(item)).fetched_remotely
    except (SpecError, ValueError, KeyError, TypeError):
        return False


def wait_ready(
    client: ControlClient,
    name: str,
    namespace: str,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """0 once ready; 1 (reason on stderr) on failure or timeout."""
    deadline, said = clock() + timeout_s, ""
    while True:
        state, message = verdict(client.get(name, namespace))
        if state == "ready":
            print(f"inferenceservice/{name} {message}")
            return 0
        if state == "failed":
            print(f"error: inferenceservice/{name}: {message}", file=sys.stderr)
            return 1
        if message != said:
            print(f"waiting for inferenceservice/{name}: {message}", file=sys.stderr, flush=True)
            said = message
        if clock() >= deadline:
            print(
                f"error: timed out after {timeout_s:g}s waiting for inferenceservice/{name} ({message})",
                file=sys.stderr,
            )
            return 1
        time.sleep(POLL_S)
