"""Canary metrics given as PromQL (`metrics[].query`), evaluated against the Prometheus at `--prometheus-url`.

Flagger's MetricTemplate idea without a second resource: the query is templated with `{{ namespace }}`,
`{{ target }}` (the InferenceService), `{{ revision }}` (the canary revision) and `{{ interval }}`, and its
first sample's value is checked against `thresholdRange`. No answer, an error or an empty result is "no data",
which fails the check (a canary is never promoted on metrics nobody could read).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import httpx

log = logging.getLogger("serving.canary")
_PLACEHOLDER = re.compile(r"{{\s*(namespace|target|revision|interval)\s*}}")


def render(query: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], query)


async def evaluate(client: httpx.AsyncClient, base_url: str, promql: str) -> float | None:
    """The value of an instant query's first sample, or None (logged) when there is none."""
    try:
        response = await client.get(
            base_url.rstrip("/") + "/api/v1/query", params={"query": promql}, timeout=10
        )
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("PromQL %r at %s: %s", promql, base_url, exc)
        return None
    if response.status_code != 200 or body.get("status") != "success":
        log.warning("PromQL %r at %s: %s", promql, base_url, body.get("error", response.status_code))
        return None
    result = body.get("data", {}).get("result", [])
    if body.get("data", {}).get("resultType") == "scalar":
        return float(result[1])
    if not result:
        return None
    return float(result[0]["value"][1])
