"""What the router sees of each revision's load, for the autoscaler: requests in flight (and their average over
time, as Knative's activator reports it), requests started so far (a counter: the autoscaler takes rates from
it), and requests the activator holds.

Plain dicts updated on the event loop (no locks); keyed by (namespace, revision). The time-weighted in-flight
area costs one clock read per request start and end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

Key = tuple[str, str]


@dataclass
class RevisionLoad:
    in_flight: dict[Key, int] = field(default_factory=dict)
    started: dict[Key, int] = field(default_factory=dict)
    held: dict[Key, int] = field(default_factory=dict)
    # [integral of in_flight over time (request-seconds), when it was last brought up to date]: one entry, so a
    # request's start and end each read and write one dict for it, not two
    _area: dict[Key, list[float]] = field(default_factory=dict)
    _read: dict[Key, tuple[float, float]] = field(
        default_factory=dict
    )  # (time, area) at the last average read

    def begin(self, namespace: str, revision: str) -> None:
        key = (namespace, revision)
        count = self._advance(key, time.monotonic())
        self.in_flight[key] = count + 1
        self.started[key] = self.started.get(key, 0) + 1

    def end(self, namespace: str, revision: str) -> None:
        key = (namespace, revision)
        self.in_flight[key] = self._advance(key, time.monotonic()) - 1

    def withdraw(self, namespace: str, revision: str) -> None:
        """`end` for a request that never reached a model: it is begun again when it is forwarded again."""
        self.end(namespace, revision)
        key = (namespace, revision)
        self.started[key] = self.started.get(key, 0) - 1

    def _advance(self, key: Key, now: float) -> int:
        """Bring the area up to `now`; the requests in flight until now."""
        count = self.in_flight.get(key, 0)
        area = self._area.get(key)
        if area is None:
            self._area[key] = [0.0, now]
        else:
            area[0] += count * (now - area[1])
            area[1] = now
        return count

    def concurrency(self, namespace: str, revision: str) -> float:
        """Requests in flight on average since the previous call (now, on the first), plus those held now:
        a held request is demand the revision must serve. Short requests between two readings count."""
        key, now = (namespace, revision), time.monotonic()
        self._advance(key, now)
        area = self._area[key][0]
        then, area_then = self._read.get(key, (now, area))
        self._read[key] = (now, area)
        average = (area - area_then) / (now - then) if now > then else float(self.in_flight.get(key, 0))
        return average + self.held.get(key, 0)

    def requests(self, namespace: str, revision: str) -> int:
        """Requests sent so far (a counter)."""
        return self.started.get((namespace, revision), 0)

    def waiting(self, namespace: str, revision: str) -> int:
        return self.held.get((namespace, revision), 0)

    def forget(self, namespace: str, revision: str) -> None:
        for counts in (self.in_flight, self.started, self.held, self._area, self._read):
            counts.pop((namespace, revision), None)
