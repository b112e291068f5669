"""One scrape sees everything: the local router's `/metrics` merges what its model servers export.

Each replica's exposition is fetched concurrently at scrape time (never on the request path), parsed,
labelled with `isvc`, `namespace`, `revision`, `component` and `replica`, and merged family by family so
every metric keeps a single HELP/TYPE (valid for `promtool check metrics`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from serving.http_client import HTTPClient

SCRAPE_TIMEOUT_S = 2.0
SCRAPE_TIMEOUT_HEADER = "x-prometheus-scrape-timeout-seconds"
ANSWER_MARGIN_S = 0.25  # left for merging and writing, inside the scraper's own timeout


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    url: str  # base URL of a model server
    labels: dict[str, str]


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def merge(expositions: Iterable[tuple[str, dict[str, str]]]) -> list[Metric]:
    """Merge text expositions, adding each one's labels to its samples."""
    merged: dict[str, Metric] = {}
    for text, labels in expositions:
        for family in text_string_to_metric_families(text):
            if family.name.endswith("_created"):  # creation timestamps: noise once merged
                continue
            target = merged.get(family.name)
            if target is None:
                target = merged[family.name] = Metric(family.name, family.documentation, family.type)
            for sample in family.samples:
                target.add_sample(sample.name, {**sample.labels, **labels}, sample.value, sample.timestamp)
    return list(merged.values())


def scrape_budget(scraper_timeout: str | None) -> float:
    """How long to wait for each model server: under Prometheus's own scrape timeout (it sends it in a header),
    so one slow replica costs its own samples, never the whole scrape."""
    try:
        offered = float(scraper_timeout or "nan")
    except ValueError:
        offered = math.nan
    if not math.isfinite(offered):
        return SCRAPE_TIMEOUT_S
    return max(0.05, min(SCRAPE_TIMEOUT_S, offered - ANSWER_MARGIN_S))


async def _fetch(
    client: HTTPClient, target: ScrapeTarget, timeout_s: float
) -> tuple[str, dict[str, str]] | None:
    try:
        response = await client.get(target.url + "/metrics", timeout_s)
    except (ConnectionError, TimeoutError, ValueError):
        return None  # a replica that is starting or gone simply contributes nothing to this scrape
    return (
        (response.body.decode("utf-8", errors="replace"), target.labels) if response.status == 200 else None
    )


async def federated_exposition(
    targets: list[ScrapeTarget], client: HTTPClient | None = None, timeout_s: float = SCRAPE_TIMEOUT_S
) -> bytes:
    """Every target's metrics merged; `client` keeps connections to them between scrapes."""
    if not targets:
        return b""
    own = client is None
    client = client or HTTPClient(connect_timeout_s=SCRAPE_TIMEOUT_S)
    try:
        results = await asyncio.gather(*(_fetch(client, t, timeout_s) for t in targets))
    finally:
        if own:
            client.close()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merge(r for r in results if r is not None)))
    return generate_latest(registry)
