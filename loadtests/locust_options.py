"""Command-line options every locustfile shares, and a progress file `serving loadtest` polls.

Imported by each locustfile, so the options exist whichever scenario is run. Options are read from
`environment.parsed_options`, never from module globals set at import.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

PROGRESS_INTERVAL_S = 1.0


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--model-name", default="sklearn-iris", help="model / InferenceService to call")
    parser.add_argument(
        "--payload", default="", help="payload kind: iris, iris-fp32, rf32 (default: from the model name)"
    )
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--canary-out", default="", help="JSON file for the observed revision split")
    parser.add_argument(
        "--progress-file", default="", help="JSON file rewritten every second with live totals"
    )
    parser.add_argument(
        "--totals-file", default="", help="JSON file with Locust's own run totals, written at exit"
    )
    parser.add_argument(
        "--serving-tag", default="", help="send x-serving-tag (pin the router to a revision tag)"
    )


def options(environment: Environment) -> Any:
    return environment.parsed_options


def tag_headers(environment: Environment) -> dict[str, str]:
    """`--serving-tag` as the header every scenario sends with every request (empty: no header)."""
    tag = options(environment).serving_tag
    return {"x-serving-tag": tag} if tag else {}


def _percentile(entry: Any, fraction: float) -> float:
    """The last ~10 s percentile when Locust keeps that window (it does with --csv), else the overall one."""
    try:
        return entry.get_current_response_time_percentile(fraction) or 0
    except ValueError:
        return entry.get_response_time_percentile(fraction) or 0


def _write_progress(environment: Environment, path: str, started: float) -> None:
    while True:
        total = environment.stats.total
        doc = {
            "elapsed_s": round(time.monotonic() - started, 1),
            "users": environment.runner.user_count if environment.runner else 0,
            "requests": total.num_requests,
            "failures": total.num_failures,
            "rps": round(total.current_rps, 1),
            "p50_ms": _percentile(total, 0.5),
            "p95_ms": _percentile(total, 0.95),
        }
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
        gevent.sleep(PROGRESS_INTERVAL_S)


@events.test_start.add_listener
def _start_progress(environment: Environment, **_: Any) -> None:
    path = getattr(environment.parsed_options, "progress_file", "")
    if path and not isinstance(environment.runner, WorkerRunner):  # `--processes`: the master has the totals
        gevent.spawn(_write_progress, environment, path, time.monotonic())


@events.init.add_listener
def _totals_at_exit(environment: Environment, **_: Any) -> None:
    """Write `--totals-file` on Locust's `quit` event: it fires once the runner has quit (every worker's final
    report in) and locust.json is written. At `test_stop` a master (`--processes`) has not had the workers'
    final reports yet, so its totals were short of what locust.json and locust.html say."""
    path = getattr(environment.parsed_options, "totals_file", "")
    if path and not isinstance(environment.runner, WorkerRunner):  # a worker's share is not the total
        environment.events.quit.add_listener(lambda **_: _write_totals(environment, path))


def _write_totals(environment: Environment, path: str) -> None:
    """What Locust's own report (locust.html, the Aggregated row) says, plus the one number its JSON file lacks:
    when its statistics started (`total_rps` divides by the time since then, not since the first request)."""
    total = environment.stats.total
    doc = {
        "stats_start_time": environment.stats.start_time,
        "requests": total.num_requests,
        "failures": total.num_failures,
        "total_rps": total.total_rps,
        "avg_response_time_ms": total.avg_response_time,
        "median_ms": total.median_response_time,
        "p95_ms": total.get_response_time_percentile(0.95),
        "p99_ms": total.get_response_time_percentile(0.99),
    }
    with open(path, "w") as f:
        json.dump(doc, f)
