"""kubectl-like commands against a running `serving up`: apply, get, delete, rollout."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from serving.commands import apply_outcome, isvc_wait, runtime_table
from serving.commands.isvc_table import aligned, format_table
from serving.commands.resource_args import KEPT_NAMES, delete_targets, isvc_names, kind_of
from serving.control.backend import BACKENDS
from serving.control.documents import read_documents
from serving.control.local.client import SERVER_HELP, ControlClient
from serving.control.local.secrets import KEPT_KINDS, is_kept_document
from serving.errors import BadRequest, ServingError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", help=SERVER_HELP)
    p.add_argument(
        "--state-dir",
        type=Path,
        help="where `serving up` keeps its token (default: $XDG_STATE_HOME/serving, else ~/.local/state/serving)",
    )
    p.add_argument("-n", "--namespace", default="default")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("apply", help="create or update InferenceServices from YAML")
    p.add_argument("-f", "--filename", action="append", required=True)
    p.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default="local",
        help="local: the running `serving up`; kubernetes: the current kubeconfig context",
    )
    p.add_argument(
        "--wait",
        nargs="?",
        const=isvc_wait.DEFAULT_TIMEOUT,
        metavar="TIMEOUT",
        help=f"then wait until each is ready (default timeout {isvc_wait.DEFAULT_TIMEOUT}); exit 1 "
        "with the reason if one fails",
    )
    _common(p)
    p.set_defaults(func=apply)
    p = subparsers.add_parser(
        "wait", help="wait until an InferenceService is ready (exit 1 with the reason if not)"
    )
    p.add_argument("names", nargs="+", metavar="NAME", help="NAME, isvc NAME or isvc/NAME")
    p.add_argument(
        "--timeout", default=isvc_wait.DEFAULT_TIMEOUT, help="90s, 2m, 1m30s (default %(default)s)"
    )
    _common(p)
    p.set_defaults(func=wait)
    p = subparsers.add_parser("get", help="list InferenceServices, or show one")
    p.add_argument(
        "names", nargs="*", metavar="NAME", help="NAME, isvc NAME, isvc/NAME (kubectl's forms); none: all"
    )
    p.add_argument(
        "-o",
        "--output",
        choices=["table", "wide", "json", "yaml"],
        default="table",
        help="wide: add MESSAGE (why a service is not ready)",
    )
    p.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="every namespace, with a NAMESPACE column (default: only -n's, as kubectl)",
    )
    _common(p)
    p.set_defaults(func=get)
    p = subparsers.add_parser(
        "delete", help="delete InferenceServices (drained, then stopped), ServingRuntimes, Canaries"
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="NAME, isvc NAME or isvc/NAME; sr NAME or sr/NAME (ServingRuntime); csr NAME or csr/NAME "
        "(ClusterServingRuntime)",
    )
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        help="delete every object in FILE (InferenceServices and Canaries first, then runtimes); one not "
        "found is reported and the rest deleted (exit 1)",
    )
    _common(p)
    p.set_defaults(func=delete)


def _client(args: argparse.Namespace) -> ControlClient:
    return ControlClient(args.server, args.state_dir)


def apply(args: argparse.Namespace) -> int:
    if args.backend == "kubernetes":
        from serving.control.kubernetes.documents import apply_kubernetes

        namespace = args.namespace if args.namespace != "default" else None
        print("\n".join(apply_kubernetes([Path(f) for f in args.filename], namespace)))
        return 0
    documents = [doc for path in args.filename for doc in read_documents(Path(path))]
    for doc in documents:
        doc.setdefault("metadata", {}).setdefault("namespace", args.namespace)
    client = _client(args)
    # Secrets and ServiceAccounts first, so the models whose fetch reads them find them at their first fetch
    secrets = {
        id(doc): client.put_object(doc, doc["metadata"]["namespace"])
        for doc in sorted(documents, key=lambda d: d.get("kind") != "Secret")
        if is_kept_document(doc)
    }
    documents_shown = documents
    documents = [doc for doc in documents if not is_kept_document(doc)]
    existing = {
        apply_outcome.key(item): item
        for item in [*client.list(), *client.list_canaries(), *client.list_runtimes()]
    }
    outcomes = [apply_outcome.outcome(doc, existing.get(apply_outcome.key(doc))) for doc in documents]
    for doc in documents:
        for path in apply_outcome.missing_local_paths(doc):
            example = Path(path).parent.name == "models" and Path(path).parent.parent.name == "examples"
            hint = f" (train the example models: python {Path(path).parent.parent / 'train_models.py'})"
            print(
                f"warning: {doc['metadata'].get('name')}: storageUri {path} does not exist"
                f"{hint if example else ''}; the service is recorded (as KServe records it); its revision fails "
                "and is retried with backoff until it does",
                file=sys.stderr,
            )
    changed = [doc for doc, said in zip(documents, outcomes, strict=True) if said != "unchanged"]
    applied = {apply_outcome.key(item): item for item in (client.apply(changed) if changed else [])}
    said_of = {id(doc): said for doc, said in zip(documents, outcomes, strict=True)} | secrets
    for doc in documents_shown:
        print(
            f"{doc.get('kind', 'InferenceService').lower()}/{doc['metadata'].get('name')} {said_of[id(doc)]}"
        )
        for warning in applied.get(apply_outcome.key(doc), {}).get("warnings", []):
            print(f"  warning: {warning}")
    if args.wait is None:
        return 0
    timeout_s = _timeout(args.wait)
    services = [
        (namespace, name)
        for kind, namespace, name in map(apply_outcome.key, documents)
        if kind not in ("Canary", "ServingRuntime", "ClusterServingRuntime")
    ]
    return max(
        (isvc_wait.wait_ready(client, name, namespace, timeout_s) for namespace, name in services), default=0
    )


def wait(args: argparse.Namespace) -> int:
    timeout_s, client = _timeout(args.timeout), _client(args)
    return max(
        isvc_wait.wait_ready(client, name, args.namespace, timeout_s) for name in isvc_names(args.names)
    )


def _timeout(text: str) -> float:
    try:
        return isvc_wait.parse_timeout(text)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


def get(args: argparse.Namespace) -> int:
    client = _client(args)
    word, _, first = args.names[0].partition("/") if args.names else ("", "", "")
    if args.names and runtime_table.is_runtime_kind(word):  # sr, sr NAME..., sr/NAME
        wanted = ([first] if first else []) + list(args.names[1:])
        listed = runtime_table.select(client.list_runtimes(), word, args.namespace)
        items = runtime_table.named(listed, wanted, word)
        output = "table" if args.output == "wide" else args.output
        print(runtime_table.render(items, output, one=len(wanted) == 1))
        return 0
    if args.names and args.names[0].lower() in KEPT_NAMES:
        return _get_kept(client, args)
    if args.names and kind_of(word) == "Canary":
        return _get_canaries(client, args, ([first] if first else []) + list(args.names[1:]))
    names = isvc_names(args.names)
    if names:
        items = [client.get(name, args.namespace) for name in names]
    else:
        items = [
            item
            for item in client.list()
            if args.all_namespaces or item.get("metadata", {}).get("namespace", "default") == args.namespace
        ]
    one = len(names) == 1
    if args.output == "json":
        print(json.dumps(items[0] if one else {"items": items}, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(items[0] if one else {"items": items}, sort_keys=False), end="")
    elif not items:
        print(f"No resources found in {args.namespace} namespace.", file=sys.stderr)  # kubectl's words
    else:
        print(format_table(items, wide=args.output == "wide", namespaces=args.all_namespaces))
    return 0


def _get_canaries(client: ControlClient, args: argparse.Namespace, wanted: list[str]) -> int:
    """`get canaries [NAME...]`: kubectl's printer columns for the Canary CRD (NAME TARGET PHASE WEIGHT
    REVISION; `-o wide` adds FAILED and MESSAGE), or the documents with their status."""
    items = [
        c
        for c in client.list_canaries()
        if (args.all_namespaces or c["metadata"].get("namespace", "default") == args.namespace)
        and (not wanted or c["metadata"]["name"] in wanted)
    ]
    missing = sorted(set(wanted) - {c["metadata"]["name"] for c in items})
    for name in missing:
        print(f'Error from server (NotFound): canaries.serving.dev "{name}" not found', file=sys.stderr)
    if args.output in ("json", "yaml"):
        doc = items[0] if len(wanted) == 1 and items else {"items": items}
        print(
            json.dumps(doc, indent=2) if args.output == "json" else yaml.safe_dump(doc, sort_keys=False),
            end="",
        )
        if args.output == "json":
            print()
    elif not items and not missing:
        print(f"No resources found in {args.namespace} namespace.", file=sys.stderr)
    elif items:
        wide = args.output == "wide"
        head = ("NAME", "TARGET", "PHASE", "WEIGHT", "REVISION") + (("FAILED", "MESSAGE") if wide else ())
        rows = []
        for c in items:
            status = c.get("status", {})
            row: tuple[str, ...] = (
                c["metadata"]["name"],
                c["spec"]["targetRef"]["name"],
                str(status.get("phase", "")),
                str(status.get("canaryWeight", 0)),
                str(status.get("revision") or ""),
            )
            if wide:
                row += (str(status.get("failedChecks", 0)), str(status.get("message", "")))
            rows.append(((c["metadata"].get("namespace", "default"),) if args.all_namespaces else ()) + row)
        print(aligned([(("NAMESPACE",) if args.all_namespaces else ()) + head, *rows]))
    return 1 if missing else 0


def _get_kept(client: ControlClient, args: argparse.Namespace) -> int:
    """`get secrets` / `get sa [NAME...]`: the names `serving up` keeps (never a value), as kubectl lists them."""
    kind = KEPT_NAMES[args.names[0].lower()]
    wanted = set(args.names[1:])
    items = [
        item
        for item in client.list_objects(kind)
        if (args.all_namespaces or item["namespace"] == args.namespace)
        and (not wanted or item["name"] in wanted)
    ]
    missing = sorted(wanted - {item["name"] for item in items})
    for name in missing:
        print(f'Error from server (NotFound): {kind.lower()}s "{name}" not found', file=sys.stderr)
    if args.output in ("json", "yaml"):
        listed = {"items": [{"kind": kind, "metadata": item} for item in items]}
        print(
            json.dumps(listed, indent=2) if args.output == "json" else yaml.safe_dump(listed, sort_keys=False)
        )
    elif not items and not missing:
        print(f"No resources found in {args.namespace} namespace.", file=sys.stderr)
    elif items:
        rows = [((item["namespace"],) if args.all_namespaces else ()) + (item["name"],) for item in items]
        print(aligned([(("NAMESPACE",) if args.all_namespaces else ()) + ("NAME",), *rows]))
    return 1 if missing else 0


DELETE_ORDER = {
    "Canary": 0,
    "InferenceService": 1,
    "ServingRuntime": 2,
    "ClusterServingRuntime": 2,
    "ServiceAccount": 3,
    "Secret": 3,
}


def delete(args: argparse.Namespace) -> int:
    """kubectl's delete: every object named is tried; one not found is said on stderr (`Error from server
    (NotFound): ...`) and the exit status is 1; the services a file holds go before its runtimes, so a runtime
    is not reported in use by a service deleted next."""
    targets = [
        (kind, None if kind == "ClusterServingRuntime" else args.namespace, name)
        for kind, name in delete_targets(args.names)
    ]
    from_files: list[tuple[str, str | None, str]] = []
    for path in args.filename:
        for doc in read_documents(Path(path)):
            kind, meta = doc.get("kind", "InferenceService"), doc.get("metadata", {})
            namespace = None if kind == "ClusterServingRuntime" else meta.get("namespace", args.namespace)
            from_files.append((kind, namespace, meta.get("name", "")))
    targets += sorted(from_files, key=lambda t: DELETE_ORDER.get(t[0], 1))
    if not targets:
        raise BadRequest("name what to delete (NAME, isvc/NAME, sr NAME, csr NAME) or give -f FILE")
    client = _client(args)
    missing = 0
    for kind, namespace, name in targets:
        try:
            warnings = _delete_one(client, kind, namespace, name)
        except ServingError as exc:
            if exc.status_code != 404:
                raise
            print(f"Error from server (NotFound): {exc.message}", file=sys.stderr)
            missing += 1
            continue
        print(f"{kind.lower()}/{name} deleted")
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 1 if missing else 0


def _delete_one(client: ControlClient, kind: str, namespace: str | None, name: str) -> list[str]:
    if kind in ("ServingRuntime", "ClusterServingRuntime"):
        return client.delete_runtime(kind, name, namespace)
    if kind in KEPT_KINDS:
        client.delete_object(kind, name, namespace or "default")
    elif kind == "Canary":
        return [str(w) for w in client.delete_canary(name, namespace or "default")]
    else:
        client.delete(name, namespace or "default")
    return []
