"""`serving loadtest`: run a Locust scenario headless and report req/s, latency, failures, canary split.

The work is in the repository's `loadtests/` folder (locustfiles, shapes, runner); this module only
declares the command line, so `serving --help` never imports Locust.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

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
    p.add_argument("--users", type=int, default=16, help="peak concurrent users")
    p.add_argument("--spawn-rate", type=float, help="users started per second (default: all at once)")
    p.add_argument("--duration", default="30s", help="run time: 30s, 2m, 90 (seconds)")
    p.add_argument("--shape", choices=SHAPES, default="constant", help="load shape (see loadtests/shapes/)")
    p.add_argument("--rows", type=int, default=1, help="rows per request")
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
        "--max-failure-ratio", type=float, default=0.01, help="exit 1 when failures/requests exceed this"
    )


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
    from loadtests.runner import run_from_args

    # `kill` (SIGTERM, what `kill %1` sends to a backgrounded run) unwinds like Ctrl-C: Locust and the servers
    # started for the run are stopped by their `finally`, not left loading the target.
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        return int(run_from_args(args))
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
