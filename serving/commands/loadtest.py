"""`serving loadtest`: run a Locust scenario headless and report req/s, latency, failures, canary split.

The work is in the repository's `loadtests/` folder (locustfiles, shapes, runner); this module only
declares the command line, so `serving --help` never imports Locust.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from serving.durations import parse_duration_s
from serving.errors import ServingError

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ("v1", "v2-json", "v2-binary", "transformer", "canary")
SHAPES = ("constant", "step", "spike")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("loadtest", help="run a Locust load test (headless) and report the results")
    add_arguments(p)
    p.set_defaults(func=main)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", choices=SCENARIOS)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="base URL of a running model server or router")
    where.add_argument("--example", help="start this example itself (a folder of examples/models, or rf-200)")
    p.add_argument(
        "--router", action="store_true", help="with --example: serve it via `serving up` (implied by canary)"
    )
    p.add_argument(
        "--model", help="model / InferenceService name (default: the example's name, else sklearn-iris)"
    )
    p.add_argument("--users", type=_positive(int), default=16, help="peak concurrent users")
    p.add_argument(
        "--spawn-rate", type=_positive(float), help="users started per second (default: all at once)"
    )
    p.add_argument("--duration", type=_run_time, default="30s", help="run time: 30s, 2m, 1m30s, 90 (seconds)")
    p.add_argument("--shape", choices=SHAPES, default="constant", help="load shape (see loadtests/shapes/)")
    p.add_argument("--rows", type=_positive(int), default=1, help="rows per request")
    p.add_argument(
        "--payload", choices=("iris", "iris-fp32", "rf32"), help="payload kind (default: from the model)"
    )
    p.add_argument("--out", type=Path, help="report folder (default loadtests/results/SCENARIO-TIME)")
    p.add_argument(
        "--tag", help="send x-serving-tag: TAG with every request (latest: only the canary revision)"
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="Locust load-generator processes (-1: one per core); one Python process tops out near one core",
    )
    p.add_argument(
        "--max-failure-ratio",
        type=_ratio,
        default=0.01,
        help="exit 1 when failures/requests exceed this (0-1)",
    )


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argparse type: a number above 0 (0 users, rows or spawn rate is no load test)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a{'n integer' if kind is int else ' number'}"
            ) from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0")
        return value

    return parse


def _run_time(text: str) -> str:
    """`--duration`, checked here (the runner reads it with the same parser): at least one second."""
    try:
        seconds = parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a load test runs for at least 1s")
    return text


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a share of requests, from 0 to 1")
    return value


def main(args: argparse.Namespace) -> int:
    if not (REPO / "loadtests" / "runner.py").exists():
        raise ServingError(
            f"the loadtests/ folder is not next to this install ({REPO}); run from a source checkout"
        )
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    if args.processes == 0 or args.processes < -1:
        raise ServingError(f"--processes must be a positive count or -1 (one per core), not {args.processes}")
    if args.processes != 1 and args.scenario == "canary":
        raise ServingError(
            "--processes is not available for the canary scenario (its revision split is counted in-process)"
        )
    from loadtests.runner import StopSignal, run_from_args

    def stop(signum: int, frame: object) -> None:
        raise StopSignal(signum)

    # `kill` (SIGTERM, what `kill %1` sends to a backgrounded run) unwinds like Ctrl-C: Locust stops early and
    # still writes the report (marked stopped early, exit 143), and the servers started for the run are stopped
    # by their `finally`, not left loading the target.
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return int(run_from_args(args))
    finally:
        signal.signal(signal.SIGTERM, previous)
