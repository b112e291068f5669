"""What the router sees of each revision's load, for the autoscaler: requests in flight now, requests started
so far (a counter: the autoscaler takes rates from it), and requests the activator holds.

Plain dicts updated on the event loop (no locks); keyed by (namespace, revision).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RevisionLoad:
    in_flight: dict[tuple[str, str], int] = field(default_factory=dict)
    started: dict[tuple[str, str], int] = field(default_factory=dict)
    held: dict[tuple[str, str], int] = field(default_factory=dict)

    def begin(self, namespace: str, revision: str) -> None:
        key = (namespace, revision)
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        self.started[key] = self.started.get(key, 0) + 1

    def end(self, namespace: str, revision: str) -> None:
        key = (namespace, revision)
        self.in_flight[key] = self.in_flight.get(key, 0) - 1

    def concurrency(self, namespace: str, revision: str) -> int:
        """In flight plus held: a held request is demand the revision must serve."""
        key = (namespace, revision)
        return self.in_flight.get(key, 0) + self.held.get(key, 0)

    def requests(self, namespace: str, revision: str) -> int:
        """Requests sent so far (a counter)."""
        return self.started.get((namespace, revision), 0)

    def waiting(self, namespace: str, revision: str) -> int:
        return self.held.get((namespace, revision), 0)

    def forget(self, namespace: str, revision: str) -> None:
        for counts in (self.in_flight, self.started, self.held):
            counts.pop((namespace, revision), None)
