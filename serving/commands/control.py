"""kubectl-like commands against a running `serving up`: apply, get, delete, rollout."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import yaml

from serving.control.backend import BACKENDS
from serving.control.client import ControlClient
from serving.control.documents import read_documents


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", help="URL of `serving up` (env SERVING_SERVER, default http://127.0.0.1:8080)")
    p.add_argument("--state-dir", type=Path, help="where `serving up` keeps its token (default: its default)")
    p.add_argument("-n", "--namespace", default="default")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("apply", help="create or update InferenceServices from YAML")
    p.add_argument("-f", "--filename", action="append", required=True)
    p.add_argument("--backend", choices=list(BACKENDS), default="local",
                   help="local: the running `serving up`; kubernetes: the current kubeconfig context")
    _common(p)
    p.set_defaults(func=apply)
    p = subparsers.add_parser("get", help="list InferenceServices, or show one")
    p.add_argument("name", nargs="?")
    p.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    _common(p)
    p.set_defaults(func=get)
    p = subparsers.add_parser("delete", help="delete an InferenceService (drains, then stops it)")
    p.add_argument("name")
    _common(p)
    p.set_defaults(func=delete)
    p = subparsers.add_parser("rollout", help="promote or roll back a canary")
    p.add_argument("action", choices=["promote", "rollback"])
    p.add_argument("name")
    _common(p)
    p.set_defaults(func=rollout)


def _client(args: argparse.Namespace) -> ControlClient:
    return ControlClient(args.server, args.state_dir)


def apply(args: argparse.Namespace) -> int:
    if args.backend == "kubernetes":
        from serving.control.k8s_documents import apply_kubernetes

        namespace = args.namespace if args.namespace != "default" else None
        print("\n".join(apply_kubernetes([Path(f) for f in args.filename], namespace)))
        return 0
    documents = [doc for path in args.filename for doc in read_documents(Path(path))]
    for doc in documents:
        doc.setdefault("metadata", {}).setdefault("namespace", args.namespace)
    for item in _client(args).apply(documents):
        print(f"inferenceservice/{item['metadata']['name']} configured")
        for warning in item.get("warnings", []):
            print(f"  warning: {warning}")
    return 0


def get(args: argparse.Namespace) -> int:
    client = _client(args)
    items = [client.get(args.name, args.namespace)] if args.name else client.list()
    if args.output == "json":
        print(json.dumps(items[0] if args.name else {"items": items}, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(items[0] if args.name else {"items": items}, sort_keys=False), end="")
    else:
        print(format_table(items))
    return 0


def delete(args: argparse.Namespace) -> int:
    _client(args).delete(args.name, args.namespace)
    print(f"inferenceservice/{args.name} deleted")
    return 0


def rollout(args: argparse.Namespace) -> int:
    item = _client(args).rollout(args.action, args.name, args.namespace)
    traffic = item["status"].get("components", {}).get("predictor", {}).get("traffic", [])
    split = ", ".join(f"{t['revisionName']}={t['percent']}%" for t in traffic) or "no ready revision yet"
    print(f"inferenceservice/{args.name} {args.action}d: {split}")
    return 0


def format_table(items: list[dict[str, Any]]) -> str:
    """Like `kubectl get isvc`: NAME URL READY PREV LATEST PREVROLLEDOUTREVISION LATESTREADYREVISION AGE."""
    header = ["NAME", "URL", "READY", "PREV", "LATEST", "PREVROLLEDOUTREVISION", "LATESTREADYREVISION", "AGE"]
    rows = [header]
    for item in items:
        status = item.get("status", {})
        predictor = status.get("components", {}).get("predictor", {})
        ready = next((c["status"] for c in status.get("conditions", []) if c["type"] == "Ready"), "Unknown")
        prev = next((t["percent"] for t in predictor.get("traffic", []) if t.get("tag") == "prev"), "")
        latest = next((t["percent"] for t in predictor.get("traffic", []) if t.get("latestRevision")), "")
        rows.append([
            item["metadata"]["name"], status.get("url", ""), ready, str(prev), str(latest),
            predictor.get("previousRolledoutRevision") or "", predictor.get("latestReadyRevision") or "",
            _age(item["metadata"].get("creationTimestamp")),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return ""
    seconds = max(0, int(time.time() - time.mktime(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")) + time.timezone))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
