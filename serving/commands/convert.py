"""`serving convert -f kserve.yaml`: the same InferenceServices (and ServingRuntimes) under our API group, for
`kubectl apply`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serving.commands.plain_yaml import dump_all
from serving.control.kubernetes.documents import cluster_warnings, read_converted


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "convert", help="rewrite KServe InferenceService (and ServingRuntime) YAML to the serving.dev group"
    )
    p.add_argument("-f", "--filename", action="append", required=True, type=Path)
    p.add_argument("-n", "--namespace", help="set metadata.namespace on every document")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    documents = read_converted(args.filename, args.namespace)
    for doc in documents:
        for warning in cluster_warnings(doc):
            print(f"warning: {doc['metadata']['name']}: {warning}", file=sys.stderr)
    print(dump_all(documents), end="")
    return 0
