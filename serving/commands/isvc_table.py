"""The `serving get` table, shaped like `kubectl get isvc` for KServe, plus why a service is not ready.

Columns: NAME URL READY REPLICAS PREV LATEST PREVROLLEDOUTREVISION LATESTREADYREVISION AGE REASON (REPLICAS:
ready/desired predictor replicas, as the autoscaler sees them); `-o wide` adds MESSAGE (what failed, in the
server's words). PREV, LATEST and PREVROLLEDOUTREVISION read the traffic entries as KServe's printer columns do
(`serving.crd.PRINTER_COLUMNS`), so PREVROLLEDOUTREVISION is empty once a canary is promoted (no `prev` entry).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

HEADER = [
    "NAME",
    "URL",
    "READY",
    "REPLICAS",
    "PREV",
    "LATEST",
    "PREVROLLEDOUTREVISION",
    "LATESTREADYREVISION",
    "AGE",
    "REASON",
]


def format_table(items: list[dict[str, Any]], wide: bool = False, namespaces: bool = False) -> str:
    """`namespaces`: a leading NAMESPACE column (kubectl's `-A`)."""
    rows = [(["NAMESPACE"] if namespaces else []) + HEADER + (["MESSAGE"] if wide else [])]
    rows += [
        ([item.get("metadata", {}).get("namespace", "default")] if namespaces else []) + _row(item, wide)
        for item in items
    ]
    return aligned(rows)


def aligned(rows: Sequence[Sequence[str]]) -> str:
    """Rows as kubectl prints a table: columns padded to their widest cell, three spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _row(item: dict[str, Any], wide: bool) -> list[str]:
    status = item.get("status", {})
    predictor = status.get("components", {}).get("predictor", {})
    traffic = predictor.get("traffic", [])
    ready: dict[str, Any] = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
    prev: dict[str, Any] = next((t for t in traffic if t.get("tag") == "prev"), {})
    latest: dict[str, Any] = next((t for t in traffic if t.get("latestRevision")), {})
    row = [
        item["metadata"]["name"],
        status.get("url", ""),
        ready.get("status", "Unknown"),
        _replicas(predictor),
        str(prev.get("percent", "")),
        str(latest.get("percent", "")),
        # KServe's column reads the `prev` traffic entry, not previousRolledoutRevision: empty once promoted
        str(prev.get("revisionName") or ""),
        predictor.get("latestReadyRevision") or "",
        age(item["metadata"].get("creationTimestamp")),
        _reason(status, ready),
    ]
    if wide:
        failure = status.get("modelStatus", {}).get("lastFailureInfo", {})
        message = failure.get("message") or (
            ready.get("message", "") if ready.get("status") != "True" else ""
        )
        row.append(" ".join(str(message).split()))
    return row


def _replicas(predictor: dict[str, Any]) -> str:
    """`ready/desired`, e.g. `2/3` while the autoscaler adds one; empty where the backend does not report it."""
    if "desiredReplicas" not in predictor:
        return ""
    return f"{predictor.get('currentReplicas', 0)}/{predictor['desiredReplicas']}"


def _reason(status: dict[str, Any], ready: dict[str, Any]) -> str:
    """A few words on what is wrong: the latest revision's load failure (also while an older revision still
    serves, e.g. a failed canary), else why the service is not ready."""
    failure = status.get("modelStatus", {}).get("lastFailureInfo", {})
    if failure:
        return str(failure.get("reason") or "Failed")
    return "" if ready.get("status") == "True" else str(ready.get("reason") or "")


def age(timestamp: str | None) -> str:
    if not timestamp:
        return ""
    seconds = max(
        0, int(time.time() - time.mktime(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")) + time.timezone)
    )
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
