"""`serving render -f FILE` prints every manifest one InferenceService becomes (one YAML stream, like
`kubectl kustomize`); `serving crd` prints the CustomResourceDefinition generated from the spec.

Render shows what the operator creates on first apply: the InferenceService under our API group, then
each component's Deployment, Service and (when minReplicas != maxReplicas) HPA. Owner references need the
live object's uid, so they are added by the operator, not here. ServingRuntime documents in the files are
printed too, and selection (theirs and the built-in ones) adds the chosen runtime as the operator does: its flags,
env, pod and container fields and sidecars; what a runtime sets that does nothing on Kubernetes is said on stderr,
as is a runtime KServe's ServingRuntime webhook would deny for a priority conflict (the operator warns of it too).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from serving.canary.crd import canary_crd_yaml
from serving.commands.plain_yaml import dump_all
from serving.control.documents import is_canary_document, is_foreign
from serving.control.kubernetes.credentials import decoded_data, storage_locations, without_values
from serving.control.kubernetes.documents import cluster_warnings, read_converted
from serving.control.kubernetes.render import RenderSettings, revision_objects
from serving.control.kubernetes.runtimes import NO_WEBHOOK
from serving.control.kubernetes.scaling import render_warnings
from serving.control.reconcile import Observed, plan
from serving.control.runtime_catalog import RuntimeCatalog, is_runtime_document
from serving.crd import crd_yaml
from serving.errors import ServingError
from serving.revision import Revision
from serving.servingruntime import ServiceMeta, ServingRuntime, runtime_env
from serving.spec import EnvVar, InferenceService, parse
from serving.storage.kserve_secrets import account_entry


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("render", help="print the Kubernetes manifests of InferenceService YAML")
    p.add_argument("-f", "--filename", action="append", required=True, type=Path)
    p.add_argument("-n", "--namespace", help="namespace for every object (default: the file's, else default)")
    p.add_argument(
        "--image", default=RenderSettings.image, help="the serving image (model server, init container)"
    )
    p.add_argument(
        "--image-pull-secret",
        action="append",
        default=[],
        metavar="NAME",
        help="a Secret for pulling --image, given to every pod that runs it (repeatable; the operator's flag)",
    )
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument(
        "--keda-prometheus-url",
        default="",
        metavar="URL",
        help="scale concurrency/rps services with KEDA ScaledObjects reading this Prometheus "
        "(the router's metrics; minReplicas 0 through the router's activator); empty: HPA only",
    )
    p.set_defaults(func=main)
    c = subparsers.add_parser("crd", help="print the InferenceService and Canary CustomResourceDefinitions")
    c.set_defaults(func=lambda args: print(crd_yaml() + "---\n" + canary_crd_yaml(), end="") or 0)


def render(documents: list[dict[str, Any]], settings: RenderSettings) -> list[dict[str, Any]]:
    """Kubernetes objects of other kinds (Secret, ServiceAccount, ConfigMap...) are printed as written; the
    Secrets of a ServiceAccount in these files give the storage-initializer its credentials, as the operator
    reads them from the cluster."""
    out: list[dict[str, Any]] = []
    runtimes = RuntimeCatalog(None).preview(  # a webhook-denied priority conflict: said, as the operator does
        [d for d in documents if is_runtime_document(d)],
        warn=lambda why: print(f"warning: {why}; {NO_WEBHOOK}", file=sys.stderr),
    )
    foreign = [d for d in documents if is_foreign(d)]
    for doc in documents:
        if is_foreign(doc):
            out.append(doc)
            continue
        if doc.get("kind") != "ClusterServingRuntime":
            doc.setdefault("metadata", {}).setdefault("namespace", "default")
        out.append(doc)
        if is_runtime_document(doc) or is_canary_document(doc):
            continue
        isvc = parse(doc)
        first = plan(isvc, None, Observed())
        accounts = file_secrets_by_account(foreign, isvc.metadata.namespace)
        locations, problems = storage_locations(
            [first.state.revisions[name] for name in first.run],
            isvc.metadata.annotations,
            partial(file_secret, foreign, isvc.metadata.namespace),
            "is not in these files",
        )
        for problem in problems:  # the initializer completes it from the cluster's Secret: said, off stdout
            print(f"warning: {isvc.metadata.name}: {problem}", file=sys.stderr)
        for name, replicas in first.run.items():
            revision = first.state.revisions[name]
            resolved = _runtime_flags(runtimes, revision, isvc)
            if resolved is None:  # no runtime serves it: the operator creates nothing for it either
                continue
            runtime, flags, env = resolved
            selected = replace(
                settings,
                runtime_flags={name: flags},
                runtime_env={name: env},
                runtimes={name: runtime} if runtime is not None else {},
                service_account_secrets={**settings.service_account_secrets, **accounts},
                storage_locations={**settings.storage_locations, **locations},
            )
            out += revision_objects(isvc, revision, replicas, selected)
    return out


def file_secrets_by_account(
    documents: list[dict[str, Any]], namespace: str
) -> dict[str, list[dict[str, Any]]]:
    """ServiceAccount name -> the Secrets it lists that these files hold (values dropped), in `namespace`."""

    def where(doc: dict[str, Any]) -> str:
        return str((doc.get("metadata") or {}).get("namespace") or "default")

    def name(doc: dict[str, Any]) -> str:
        return str((doc.get("metadata") or {}).get("name") or "")

    secrets = {name(d): d for d in documents if d.get("kind") == "Secret" and where(d) == namespace}
    accounts: dict[str, list[dict[str, Any]]] = {}
    for account in (d for d in documents if d.get("kind") == "ServiceAccount" and where(d) == namespace):
        refs = [(ref or {}).get("name") for ref in account.get("secrets") or []]
        accounts[name(account)] = [account_entry(account)] + [
            without_values(secrets[r]) for r in refs if r in secrets
        ]
    return accounts


def file_secret(documents: list[dict[str, Any]], namespace: str, name: str) -> dict[str, str] | None:
    """The data of the Secret `name` in `namespace` among these files (None: not there)."""
    for doc in documents:
        meta = doc.get("metadata") or {}
        if doc.get("kind") == "Secret" and meta.get("name") == name:
            if str(meta.get("namespace") or "default") == namespace:
                return decoded_data(doc)
    return None


def _runtime_flags(
    runtimes: RuntimeCatalog, revision: Revision, isvc: InferenceService
) -> tuple[ServingRuntime | None, tuple[str, ...], tuple[EnvVar, ...]] | None:
    """The operator's selection over these files' runtimes and the built-in ones: the chosen runtime (its
    placeholders filled in from the InferenceService), its flags and container env; None when none fits (said
    on stderr: the revision is not rendered, as the operator creates nothing for it)."""
    try:
        runtime, flags = runtimes.resolve(revision, ServiceMeta.of(isvc.metadata))
    except ServingError as exc:
        print(
            f"warning: {revision.isvc}: spec.predictor.model.runtime: {exc.message} (among the built-in runtimes "
            f"and those in these files): nothing is rendered for revision {revision.name}; the operator "
            "creates it only if the cluster has a runtime that fits",
            file=sys.stderr,
        )
        return None
    return runtime, tuple(flags), runtime_env(runtime, revision.isvc)


def main(args: argparse.Namespace) -> int:
    settings = RenderSettings(
        image=args.image,
        image_pull_secrets=tuple(args.image_pull_secret),
        cluster_domain=args.cluster_domain,
        keda_prometheus_url=args.keda_prometheus_url,
    )
    documents = read_converted(args.filename, args.namespace)
    for doc in documents:  # a local path renders fine but no pod can read it: say so, off stdout
        for warning in cluster_warnings(doc):
            print(f"warning: {doc['metadata']['name']}: {warning}", file=sys.stderr)
        # scaling the objects cannot carry
        if not (is_runtime_document(doc) or is_foreign(doc) or is_canary_document(doc)):
            for warning in render_warnings(parse(doc), settings.keda_prometheus_url):
                print(f"warning: {doc['metadata']['name']}: {warning}", file=sys.stderr)
    objects = render(documents, settings)
    print(dump_all(objects), end="")
    return 0
