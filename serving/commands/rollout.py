"""`serving rollout ACTION NAME`: steer and watch a rollout on a running `serving up`.

promote | rollback | pause | resume | undo [--to-revision R] change it; status [--watch] [-o json] and history
show it. With a Canary policy the analysis is steered (manual control wins); without one, promote and rollback
edit canaryTrafficPercent as KServe does.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from serving.control.local.client import SERVER_HELP, ControlClient

CHANGES = {
    "promote": "promoted",
    "rollback": "rolled back",
    "pause": "paused",
    "resume": "resumed",
    "undo": "rolled back",
}
VIEWS = ("status", "history")
TERMINAL = ("Succeeded", "Failed")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("rollout", help="steer or watch a rollout (canary analysis, promote, undo)")
    p.add_argument("action", choices=[*CHANGES, *VIEWS])
    p.add_argument("name")
    p.add_argument(
        "--to-revision", help="undo: the revision to go back to (default: the previous rolled-out one)"
    )
    p.add_argument("-w", "--watch", action="store_true", help="status: print a line per change until it ends")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.add_argument("--server", help=SERVER_HELP)
    p.add_argument(
        "--state-dir",
        type=Path,
        help="where `serving up` keeps its token (default: $XDG_STATE_HOME/serving, else ~/.local/state/serving)",
    )
    p.add_argument("-n", "--namespace", default="default")
    p.set_defaults(func=rollout)


def rollout(args: argparse.Namespace) -> int:
    client = ControlClient(args.server, args.state_dir)
    if args.action == "status":
        return _status(client, args)
    if args.action == "history":
        history = client.rollout_view("history", args.name, args.namespace)
        print(json.dumps(history, indent=2) if args.output == "json" else format_history(history))
        return 0
    body = {"toRevision": args.to_revision} if args.to_revision else {}
    item = client.rollout(args.action, args.name, args.namespace, body)
    if args.action == "undo":  # the status still shows the split being left: say where it goes
        undo = item["undo"]
        left = f" (from {undo['from']})" if undo.get("from") else ""
        print(
            f"inferenceservice/{args.name} rolled back to revision {undo['to']}{left}; "
            f"traffic moves to it once it is ready (`serving get {args.name}`)"
        )
        return 0
    traffic = item["status"].get("components", {}).get("predictor", {}).get("traffic", [])
    split = ", ".join(f"{t['revisionName']}={t['percent']}%" for t in traffic) or "no ready revision yet"
    print(f"inferenceservice/{args.name} {CHANGES[args.action]}: {split}")
    return 0


def _status(client: ControlClient, args: argparse.Namespace) -> int:
    if not args.watch:
        status = client.rollout_view("status", args.name, args.namespace)
        print(json.dumps(status, indent=2) if args.output == "json" else format_status(status))
        return 1 if status.get("phase") == "Failed" else 0
    return _watch(client, args)


def _watch(client: ControlClient, args: argparse.Namespace) -> int:
    """A line per status the rollout passed through, read from the Canary's numbered changes since the last
    poll (a snapshot per poll missed phases shorter than a poll: Promoting, a candidate's Waiting). The first
    poll shows the rollout under way (or just ended) from its start; without a Canary, a line per snapshot."""
    since: int | None = None
    last = None
    while True:
        status = client.rollout_view("status", args.name, args.namespace, since=since or 0)
        changes = status.get("changes")
        if changes is None:  # no Canary policy: the split as it is now
            shown = [status]
        else:
            shown = changes if since is not None else current_rollout(changes, _pending(status))
            since = status["seq"]
        for each in shown:
            if args.output == "json":
                print(json.dumps(each, indent=2), flush=True)
            elif (line := status_line(each)) != last:
                print(line, flush=True)
                last = line
        if status.get("phase") in TERMINAL and not _pending(status):
            return 1 if status.get("phase") == "Failed" else 0
        time.sleep(0.5)  # polling a remote API, not synchronising with our own code


def current_rollout(changes: list[dict[str, Any]], pending: bool) -> list[dict[str, Any]]:
    """The changes of the rollout under way, from its start: those after the last verdict (Succeeded or
    Failed). When the last change is a verdict and no newer revision waits, the rollout it ended, whole."""
    ends = [i for i, change in enumerate(changes) if change.get("phase") in TERMINAL]
    if not ends:
        return changes
    if pending or ends[-1] != len(changes) - 1:
        return changes[ends[-1] + 1 :]
    return changes[ends[-2] + 1 :] if len(ends) > 1 else changes


def _pending(status: dict[str, Any]) -> bool:
    """A revision newer than both the stable one and the Canary's is applied, and its analysis has not started
    yet: a Succeeded or Failed shown now is the previous rollout's verdict, not this one's."""
    latest = status.get("latestRevision")
    return bool(
        status.get("policy")
        and latest
        and latest not in (status.get("stableRevision"), status.get("revision"))
    )


def status_line(status: dict[str, Any]) -> str:
    """One line for `--watch`: phase, step, weight and the last check's values."""
    steps = status.get("steps") or []
    step = status.get("step", -1)
    where = f"step {step + 1}/{len(steps)}" if steps and 0 <= step < len(steps) else ""
    checks = ", ".join(
        f"{r['name']}={_value(r.get('value'))}{'' if r['passed'] else ' (failed)'}"
        for r in status.get("lastResults", [])
    )
    parts = [
        status.get("phase", "?"),
        where,
        f"canary {status.get('canaryWeight', 0)}%",
        checks,
        status.get("message", ""),
    ]
    return "  ".join(p for p in parts if p)


def format_status(status: dict[str, Any]) -> str:
    rows = [
        ("NAME", status["name"]),
        ("POLICY", status.get("policy") or "-"),
        ("PHASE", status.get("phase", "?")),
        ("STABLE", status.get("stableRevision") or "-"),
        ("CANARY", status.get("revision") or "-"),
        ("WEIGHT", f"{status.get('canaryWeight', 0)}%"),
    ]
    if status.get("steps"):
        shown = min(status.get("step", -1) + 1, len(status["steps"]))  # past the last step: promoting or done
        rows.append(("STEP", f"{shown}/{len(status['steps'])} of {status['steps']}"))
        rows.append(("FAILED CHECKS", f"{status.get('failedChecks', 0)}/{status.get('threshold', '?')}"))
    rows.append(("MESSAGE", status.get("message", "")))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    results = status.get("lastResults") or []
    if results:
        lines += ["", "METRIC                  VALUE       THRESHOLD     PASSED"]
        lines += [
            f"{r['name']:<23} {_value(r.get('value')):<11} {r.get('threshold', ''):<13} {r['passed']}"
            for r in results
        ]
    return "\n".join(lines)


def format_history(history: dict[str, Any]) -> str:
    lines = ["TIME                  REVISION                 EVENT         REASON"]
    events = [
        *history.get("events", []),
        *(
            {
                "time": e["time"],
                "revision": e.get("revision"),
                "event": f"canary {e['phase']}".lower(),
                "reason": e.get("message", ""),
            }
            for e in history.get("canary", [])
        ),
    ]
    for event in sorted(events, key=lambda e: e["time"]):
        lines.append(
            f"{event['time']:<21} {event.get('revision') or '-':<24} {event['event']:<13} {event['reason']}"
        )
    return "\n".join(lines)


def _value(value: float | None) -> str:
    return "no data" if value is None else f"{value:.4g}"
