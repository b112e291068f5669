"""Counters, gauges and histograms owned by the event loop: plain attribute updates, exported at scrape time.

prometheus-client takes a lock for every `inc()`/`observe()` (a histogram: two), about a dozen per prediction.
Every update of ours happens on one event-loop thread (the hot path never updates metrics from a pool
thread), so a plain `+=` is enough; the families below hold the values and turn them into the same
metric families prometheus-client would (names, `_total`/`_bucket`/`_count`/`_sum`/`_created` samples,
labels) only when `/metrics` is collected. They register in a `CollectorRegistry` like any collector.

Several worker processes need values in prometheus-client's shared files instead: `serving.metrics`
builds the prometheus-client classes then (`family(...)` below chooses).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString


class CounterChild:
    __slots__ = ("value", "created")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = float(value)


class HistogramChild:
    """Per-bucket (not cumulative) counts: one list index and one float add per observation."""

    __slots__ = ("bounds", "counts", "sum", "created")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds  # upper bounds without +Inf, ascending
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # le: value <= bound
        self.sum += value


class _Family:
    """A labelled family: children by label values, made on first use."""

    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self.children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
        key = tuple(str(v) for v in values)
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = self._child()
        return child

    def remove(self, *values: str) -> None:
        self.children.pop(tuple(values), None)

    def label_sets(self) -> list[tuple[str, ...]]:
        return list(self.children)

    def _child(self) -> Any:
        raise NotImplementedError

    def describe(self) -> list[Metric]:
        return [self._family()]

    def _family(self) -> Metric:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for key, child in list(self.children.items()):
            self._add(family, list(key), child)
        yield family

    def _add(self, family: Any, labels: list[str], child: Any) -> None:
        raise NotImplementedError


class LoopCounter(_Family):
    def _child(self) -> CounterChild:
        return CounterChild()

    def _family(self) -> Metric:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Any, labels: list[str], child: CounterChild) -> None:
        family.add_metric(labels, child.value, created=child.created)


class LoopGauge(_Family):
    def _child(self) -> GaugeChild:
        return GaugeChild()

    def _family(self) -> Metric:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Any, labels: list[str], child: GaugeChild) -> None:
        family.add_metric(labels, child.value)


class LoopHistogram(_Family):
    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self.bounds = tuple(float(b) for b in buckets if b != float("inf"))
        self._les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]

    def _child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def _family(self) -> Metric:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Any, labels: list[str], child: HistogramChild) -> None:
        cumulative, buckets = 0, []
        for le, count in zip(self._les, list(child.counts), strict=True):
            cumulative += count
            buckets.append((le, cumulative))
        family.add_metric(labels, buckets, child.sum)
        family.samples.append(
            Sample(f"{self.name}_created", dict(zip(self.labelnames, labels, strict=True)), child.created)
        )


def counter(name: str, doc: str, labels: Sequence[str], registry: CollectorRegistry, shared: bool) -> Any:
    """A counter family: prometheus-client's when values must be shared between processes, else the loop's."""
    if shared:
        return Counter(name, doc, labels, registry=registry)
    family = LoopCounter(name, doc, labels)
    registry.register(family)
    return family


def gauge(
    name: str,
    doc: str,
    labels: Sequence[str],
    registry: CollectorRegistry,
    shared: bool,
    multiprocess_mode: str = "all",
) -> Any:
    if shared:
        return Gauge(name, doc, labels, registry=registry, multiprocess_mode=multiprocess_mode)  # type: ignore[arg-type]
    family = LoopGauge(name, doc, labels)
    registry.register(family)
    return family


def histogram(
    name: str,
    doc: str,
    labels: Sequence[str],
    buckets: Sequence[float],
    registry: CollectorRegistry,
    shared: bool,
) -> Any:
    if shared:
        return Histogram(name, doc, labels, buckets=buckets, registry=registry)
    family = LoopHistogram(name, doc, labels, buckets)
    registry.register(family)
    return family
