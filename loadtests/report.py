"""Summarising a Locust run from its `--json-file` output (the CSV undercounts totals; the JSON doesn't).

Percentiles come from Locust's merged response-time histograms (milliseconds, rounded by Locust to 2
significant digits above 100 ms), so they are exact to that rounding over the whole run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Summary:
    requests: int
    failures: int
    duration_s: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    canary: dict[str, Any] | None = None

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failure_ratio": round(self.failure_ratio, 6)}


def percentile(histogram: dict[float, int], fraction: float) -> float:
    """Smallest response time with at least `fraction` of the samples at or below it."""
    total = sum(histogram.values())
    if total == 0:
        return 0.0
    needed, seen = fraction * total, 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= needed:
            return float(value)
    return float(max(histogram))


def _histogram(entries: list[dict[str, Any]]) -> dict[float, int]:
    merged: dict[float, int] = {}
    for entry in entries:
        for value, count in entry.get("response_times", {}).items():
            merged[float(value)] = merged.get(float(value), 0) + int(count)
    return merged


def summarise(json_path: Path, canary_path: Path | None = None) -> Summary:
    entries: list[dict[str, Any]] = json.loads(json_path.read_text())
    requests = sum(e["num_requests"] for e in entries)
    failures = sum(e["num_failures"] for e in entries)
    starts = [e["start_time"] for e in entries if e.get("start_time")]
    ends = [e["last_request_timestamp"] for e in entries if e.get("last_request_timestamp")]
    duration_s = max(ends) - min(starts) if starts and ends else 0.0
    hist = _histogram(entries)
    by_name = {
        f"{e['method']} {e['name']}": {"requests": e["num_requests"], "failures": e["num_failures"]} for e in entries
    }
    canary = json.loads(canary_path.read_text()) if canary_path is not None and canary_path.exists() else None
    return Summary(
        requests=requests,
        failures=failures,
        duration_s=round(duration_s, 2),
        rps=round(requests / duration_s, 1) if duration_s > 0 else 0.0,
        p50_ms=percentile(hist, 0.50),
        p95_ms=percentile(hist, 0.95),
        p99_ms=percentile(hist, 0.99),
        max_ms=round(max((e.get("max_response_time") or 0 for e in entries), default=0.0), 1),
        by_name=by_name,
        canary=canary,
    )


def format_table(summary: Summary) -> str:
    """The stdout summary: one line of totals, one per request name, the canary split if any."""
    rows = [
        ["requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "failures"],
        [str(summary.requests), f"{summary.rps:.1f}", f"{summary.p50_ms:g}", f"{summary.p95_ms:g}",
         f"{summary.p99_ms:g}", f"{summary.max_ms:g}", f"{summary.failures} ({summary.failure_ratio:.2%})"],
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    for name, counts in summary.by_name.items():
        lines.append(f"  {name}: {counts['requests']} requests, {counts['failures']} failures")
    if summary.canary is not None:
        split = ", ".join(f"{rev} {v['percent']:.1f}% ({v['count']})" for rev, v in summary.canary["revisions"].items())
        lines.append(f"observed canary split: {split or 'no successful responses'}")
    return "\n".join(lines)
