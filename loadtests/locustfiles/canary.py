"""Canary scenario: V1 predict through the router, counting which revision answered each request.

The router adds `x-serving-revision` to every response. Counts are kept per revision and, when the
test stops, written with their percentages to `--canary-out` (JSON) for `serving loadtest` to report.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from locust import FastHttpUser, constant, events, task
from locust.env import Environment

from loadtests import payloads
from loadtests.locust_options import options, tag_headers

REVISION_HEADER = "x-serving-revision"


class CanaryUser(FastHttpUser):
    """Calls one InferenceService and records the serving revision of every successful response."""

    wait_time = constant(0)
    observed: Counter[str] = Counter()

    def on_start(self) -> None:
        opts = options(self.environment)
        self.model = opts.model_name
        self.body = payloads.v1_body(opts.payload or payloads.kind_for_model(self.model), opts.rows)
        self.count = opts.rows
        self.headers = tag_headers(self.environment)  # `serving loadtest --tag`

    @task
    def predict(self) -> None:
        with self.rest(
            "POST",
            f"/v1/models/{self.model}:predict",
            data=self.body,
            headers=self.headers,
            name="/v1/models/[model]:predict canary",
        ) as resp:
            assert resp.status_code == 200, f"HTTP {resp.status_code},"
            revision = resp.headers.get(REVISION_HEADER)
            assert revision, f"no {REVISION_HEADER} header: is this URL the router?"
            problem = payloads.check_v1(resp.js, self.count)
            assert problem is None, problem
            CanaryUser.observed[revision] += 1


def split(counts: Counter[str]) -> dict[str, Any]:
    total = sum(counts.values())
    return {
        "total": total,
        "revisions": {
            rev: {"count": n, "percent": round(100.0 * n / total, 2) if total else 0.0}
            for rev, n in sorted(counts.items())
        },
    }


@events.test_start.add_listener
def _reset(environment: Environment, **_: Any) -> None:
    CanaryUser.observed.clear()


@events.test_stop.add_listener
def _write_split(environment: Environment, **_: Any) -> None:
    path = options(environment).canary_out
    if path:
        with open(path, "w") as f:
            json.dump(split(CanaryUser.observed), f, indent=2)
