"""The canary revision's counters read from router metrics, and one interval's window as their difference.

Reads the Prometheus exposition (text) of one or several routers, so the same code serves `serving up` (its own
router's registry) and the operator (every router replica scraped, counters summed). Only the metric names the
router documents are read: `serving_router_requests_total{code}` and the
`serving_router_request_duration_seconds` histogram, per `{namespace, isvc, revision}` and summed over arms.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from serving.canary.analysis import ArmWindow

REQUESTS = "serving_router_requests"
DURATION = "serving_router_request_duration_seconds"


@dataclass(frozen=True, slots=True)
class RevisionCounters:
    requests: int = 0
    server_errors: int = 0
    buckets: tuple[tuple[float, int], ...] = ()  # cumulative (le seconds, count), sorted, +Inf last


def revision_counters(
    expositions: Iterable[str | bytes], namespace: str, isvc: str, revision: str
) -> RevisionCounters:
    """Cumulative counters of one revision, summed over arms and over every exposition given."""
    requests = errors = 0
    buckets: dict[float, float] = defaultdict(float)
    wanted = {"namespace": namespace, "isvc": isvc, "revision": revision}
    for text in expositions:
        raw = text.decode() if isinstance(text, bytes) else text
        for family in text_string_to_metric_families(raw):
            for sample in family.samples:
                if any(sample.labels.get(k) != v for k, v in wanted.items()):
                    continue
                if sample.name == REQUESTS + "_total":
                    requests += int(sample.value)
                    if sample.labels.get("code", "").startswith("5"):
                        errors += int(sample.value)
                elif sample.name == DURATION + "_bucket":
                    buckets[float(sample.labels["le"])] += sample.value
    ordered = tuple(sorted((le, int(count)) for le, count in buckets.items()))
    return RevisionCounters(requests, errors, ordered)


def interval_window(before: RevisionCounters | None, after: RevisionCounters) -> ArmWindow:
    """What happened between two readings; a counter that went down (a router restarted) counts from zero."""
    if before is None or after.requests < before.requests:
        before = RevisionCounters()
    old = dict(before.buckets)
    buckets = tuple((le, max(count - int(old.get(le, 0)), 0)) for le, count in after.buckets)
    if buckets and not math.isinf(buckets[-1][0]):
        buckets += ((math.inf, buckets[-1][1]),)
    return ArmWindow(after.requests - before.requests, after.server_errors - before.server_errors, buckets)
