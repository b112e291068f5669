"""The Locust run that gates a canary's first step: one command line and one way to read its verdict, for the
local host (an asyncio subprocess) and the operator (a thread)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from serving.canary.spec import LoadTest
from serving.durations import parse_duration_s

GRACE_S = 120.0  # Locust start-up and report writing, on top of the run itself


def load_test_command(load_test: LoadTest, url: str, model: str, report: Path) -> list[str]:
    """`serving loadtest v1` against `url` (the canary revision's own endpoint: every request tests it)."""
    payload = ["--payload", load_test.payload] if load_test.payload else []
    return [sys.executable, "-m", "serving.cli", "loadtest", "v1", "--url", url, "--model", model,
            "--users", str(load_test.users), "--duration", load_test.duration, "--out", str(report),
            "--max-failure-ratio", "1", *payload]  # fmt: skip


def time_limit_s(load_test: LoadTest) -> float:
    return parse_duration_s(load_test.duration) + GRACE_S


def read_summary(report: Path) -> dict[str, Any]:
    """The run's summary.json; {} when it wrote none (the analysis then fails the load test: no request)."""
    try:
        summary: dict[str, Any] = orjson.loads((report / "summary.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return summary
