"""Summarising a Locust run from its `--json-file` output, so `summary.json` says what `locust.html` says.

Which numbers are the truth: Locust's own in-memory statistics, which both its JSON file (raw: counts,
histograms, timestamps) and its HTML report (the Aggregated row) are written from. The CSV is not: it is
rewritten every few seconds and its last write can miss the final requests, so it undercounts totals.
From the JSON we recompute the Aggregated row with Locust's own definitions:
- requests / failures: sums over the entries (exact);
- percentiles: Locust's rule over the merged histogram (response times rounded by Locust to 2 significant
  digits above 100 ms), the median clamped to [min, max] as Locust does;
- avg: total response time / requests that had one;
- rps: requests / (last request - the moment Locust's statistics started). That start is not in the JSON, so
  the run writes it to `locust_totals.json` (`--totals-file`); without it the first request's time is used,
  which reads a little higher on short runs.
"""

from __future__ import annotations

import csv
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
    avg_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    canary: dict[str, Any] | None = None
    planned_duration_s: float | None = None  # --duration; duration_s is the time actually measured
    stopped_by: str | None = None  # the signal (SIGINT, SIGTERM) that stopped the run before its duration

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 1.0

    @property
    def stopped_early(self) -> bool:
        return self.stopped_by is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "failure_ratio": round(self.failure_ratio, 6),
            "stopped_early": self.stopped_early,
        }


def percentile(histogram: dict[float, int], fraction: float) -> float:
    """Locust's rule: walking down from the slowest, the first time with at most int(N * fraction) requests
    strictly faster than it (what its report prints for the same histogram)."""
    total = sum(histogram.values())
    at_or_below = int(total * fraction)
    seen = 0
    for value in sorted(histogram, reverse=True):
        seen += histogram[value]
        if total - seen <= at_or_below:
            return float(value)
    return 0.0


def _histogram(entries: list[dict[str, Any]]) -> dict[float, int]:
    merged: dict[float, int] = {}
    for entry in entries:
        for value, count in entry.get("response_times", {}).items():
            merged[float(value)] = merged.get(float(value), 0) + int(count)
    return merged


def _run_start(entries: list[dict[str, Any]], totals_path: Path | None) -> float | None:
    """When Locust's statistics started (from the totals file), else the first entry's start."""
    if totals_path is not None and totals_path.exists():
        started = json.loads(totals_path.read_text()).get("stats_start_time")
        if started:
            return float(started)
    starts = [e["start_time"] for e in entries if e.get("start_time")]
    return min(starts) if starts else None


def summarise(json_path: Path, canary_path: Path | None = None, totals_path: Path | None = None) -> Summary:
    entries: list[dict[str, Any]] = json.loads(json_path.read_text())
    requests = sum(e["num_requests"] for e in entries)
    timed = requests - sum(e.get("num_none_requests", 0) for e in entries)
    start = _run_start(entries, totals_path)
    ends = [e["last_request_timestamp"] for e in entries if e.get("last_request_timestamp")]
    duration_s = max(ends) - start if start is not None and ends else 0.0
    hist = _histogram(entries)
    lowest = min(
        (e["min_response_time"] for e in entries if e.get("min_response_time") is not None), default=0.0
    )
    highest = max((e.get("max_response_time") or 0 for e in entries), default=0.0)
    by_name = {
        f"{e['method']} {e['name']}": {"requests": e["num_requests"], "failures": e["num_failures"]}
        for e in entries
    }
    canary = json.loads(canary_path.read_text()) if canary_path is not None and canary_path.exists() else None
    return Summary(
        requests=requests,
        failures=sum(e["num_failures"] for e in entries),
        duration_s=round(duration_s, 2),
        rps=round(requests / duration_s, 1) if duration_s > 0 else 0.0,
        avg_ms=round(sum(e.get("total_response_time", 0) for e in entries) / timed, 2) if timed else 0.0,
        p50_ms=min(max(percentile(hist, 0.50), float(lowest)), float(highest)) if hist else 0.0,
        p95_ms=percentile(hist, 0.95),
        p99_ms=percentile(hist, 0.99),
        min_ms=round(lowest, 1),
        max_ms=round(highest, 1),
        by_name=by_name,
        canary=canary,
    )


def _at_histogram_resolution(ms: float) -> float:
    """Locust's histogram keys (its `bucket_response_time`): whole ms below 100 ms, then ~2 significant digits."""
    for below, digits in ((100, 0), (1000, -1), (10000, -2)):
        if ms < below:
            return float(round(ms, digits))
    return float(round(ms, -3))


def printed_percentiles(summary: Summary) -> tuple[float, float, float]:
    """p50/p95/p99 as the table prints them: all at the histogram's resolution, never decreasing. (summary.json
    keeps Locust's own median, clamped to the exact min: under 1 ms that is 0.28 beside a p95 of 0.)"""
    p50, p95, p99 = (_at_histogram_resolution(v) for v in (summary.p50_ms, summary.p95_ms, summary.p99_ms))
    p95 = max(p95, p50)
    return p50, p95, max(p99, p95)


def format_table(summary: Summary) -> str:
    """The stdout summary: one line of totals, one per request name, the canary split if any."""
    p50, p95, p99 = printed_percentiles(summary)
    rows = [
        ["requests", "req/s", "avg ms", "p50 ms", "p95 ms", "p99 ms", "max ms", "failures"],
        [
            str(summary.requests),
            f"{summary.rps:.1f}",
            f"{summary.avg_ms:g}",
            f"{p50:g}",
            f"{p95:g}",
            f"{p99:g}",
            f"{summary.max_ms:g}",
            f"{summary.failures} ({summary.failure_ratio:.2%})",
        ],
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    if summary.stopped_by is not None:  # first, so that partial numbers are never read as a whole run's
        planned = f" of the planned {summary.planned_duration_s:g} s" if summary.planned_duration_s else ""
        lines.insert(0, f"STOPPED EARLY by {summary.stopped_by}: {summary.duration_s:g} s measured{planned}")
    for name, counts in summary.by_name.items():
        lines.append(f"  {name}: {counts['requests']} requests, {counts['failures']} failures")
    if summary.canary is not None:
        split = ", ".join(
            f"{rev} {v['percent']:.1f}% ({v['count']})" for rev, v in summary.canary["revisions"].items()
        )
        lines.append(f"observed canary split: {split or 'no successful responses'}")
    return "\n".join(lines)


def top_failures(failures_csv: Path, count: int = 3) -> list[str]:
    """The most frequent failures, most first (Locust's `locust_failures.csv`, written when the run ends), so a
    failed run says why on its own: `123 x POST /v1/models/m:predict: HTTPError('404 ...')`."""
    if not failures_csv.exists():
        return []
    with failures_csv.open(newline="") as handle:
        rows = [
            (
                int(row.get("Occurrences") or 0),
                f"{row.get('Method', '')} {row.get('Name', '')}: {row.get('Error', '')}",
            )
            for row in csv.DictReader(handle)
        ]
    rows.sort(key=lambda row: -row[0])
    return [f"{n} x {text}" for n, text in rows[:count]]
