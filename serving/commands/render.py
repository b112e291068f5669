"""`serving render -f FILE` prints every manifest one InferenceService becomes (one YAML stream, like
`kubectl kustomize`); `serving crd` prints the CustomResourceDefinition generated from the spec.

Render shows what the operator creates on first apply: the InferenceService under our API group, then
each component's Deployment, Service and (when minReplicas != maxReplicas) HPA. Owner references need the
live object's uid, so they are added by the operator, not here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from serving.canary.crd import canary_crd_yaml
from serving.commands.plain_yaml import dump_all
from serving.control.k8s_documents import cluster_warnings, read_converted
from serving.control.k8s_render import RenderSettings, revision_objects
from serving.control.reconcile import Observed, plan
from serving.crd import crd_yaml
from serving.spec import parse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("render", help="print the Kubernetes manifests of InferenceService YAML")
    p.add_argument("-f", "--filename", action="append", required=True, type=Path)
    p.add_argument("-n", "--namespace", help="namespace for every object (default: the file's, else default)")
    p.add_argument("--image", default=RenderSettings.image, help="the serving image (model server, init container)")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--keda-prometheus-url", default="", metavar="URL",
                   help="scale concurrency/rps services with KEDA ScaledObjects reading this Prometheus "
                        "(the router's metrics; minReplicas 0 through the router's activator); empty: HPA only")
    p.set_defaults(func=main)
    c = subparsers.add_parser("crd", help="print the InferenceService and Canary CustomResourceDefinitions")
    c.set_defaults(func=lambda args: print(crd_yaml() + "---\n" + canary_crd_yaml(), end="") or 0)


def render(documents: list[dict[str, Any]], settings: RenderSettings) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for doc in documents:
        doc.setdefault("metadata", {}).setdefault("namespace", "default")
        isvc = parse(doc)
        first = plan(isvc, None, Observed())
        out.append(doc)
        for name, replicas in first.run.items():
            out += revision_objects(isvc, first.state.revisions[name], replicas, settings)
    return out


def main(args: argparse.Namespace) -> int:
    settings = RenderSettings(image=args.image, cluster_domain=args.cluster_domain,
                              keda_prometheus_url=args.keda_prometheus_url)
    documents = read_converted(args.filename, args.namespace)
    for doc in documents:  # a local path renders fine but no pod can read it: say so, off stdout
        for warning in cluster_warnings(doc):
            print(f"warning: {doc['metadata']['name']}: {warning}", file=sys.stderr)
    objects = render(documents, settings)
    print(dump_all(objects), end="")
    return 0
