"""`serving operator`: the Kubernetes operator (kopf) reconciling InferenceServices with the shared plan().

Runs in the cluster with its service account (or locally against the current kubeconfig context).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from serving.control.kubernetes.backend import OperatorConfig
from serving.control.kubernetes.render import RenderSettings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("operator", help="run the Kubernetes operator (reconciles InferenceServices)")
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    p.add_argument(
        "--image",
        default=os.environ.get("SERVING_IMAGE", RenderSettings.image),
        help="image for model servers and storage-initializers (env SERVING_IMAGE)",
    )
    p.add_argument("--image-pull-policy", default="IfNotPresent")
    p.add_argument(
        "--image-pull-secret",
        action="append",
        default=[],
        metavar="NAME",
        help="a Secret for pulling --image, given to every model-server and storage-initializer pod (it must "
        "exist in each InferenceService's namespace; repeatable)",
    )
    p.add_argument("--domain", default="example.com", help="status URLs are http://NAME.NAMESPACE.DOMAIN")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument(
        "--routes-configmap",
        default=f"{os.environ.get('POD_NAMESPACE', 'serving-system')}/serving-routes",
        help="NAMESPACE/NAME of the route table ConfigMap the router reads",
    )
    p.add_argument(
        "--router-service",
        default="",
        metavar="NAMESPACE/NAME",
        help="the router's Service: each InferenceService gets ExternalName Services NAME (and NAME-predictor "
        "without a transformer) pointing at it, so its in-cluster URL answers; empty: none",
    )
    p.add_argument(
        "--drain-seconds", type=float, default=30.0, help="wait before deleting a revision out of the table"
    )
    p.add_argument("--resync-seconds", type=float, default=10.0, help="level-based re-reconcile interval")
    p.add_argument(
        "--liveness", default="http://0.0.0.0:8081/healthz", help="kopf liveness endpoint ('' for none)"
    )
    p.add_argument(
        "--standalone", action="store_true", help="no peering (single replica, no leader election)"
    )
    p.add_argument(
        "--keda-prometheus-url",
        default="",
        metavar="URL",
        help="scale concurrency/rps services with KEDA ScaledObjects reading this Prometheus "
        "(the router's metrics; minReplicas 0 through the router's activator); empty: HPA only",
    )
    p.add_argument(
        "--router-selector",
        default="app.kubernetes.io/name=serving,app.kubernetes.io/component=router",
        help="labels of the router pods (in the route ConfigMap's namespace) whose /metrics Canary "
        "analyses read and sum",
    )
    p.add_argument(
        "--canary-tick-seconds", type=float, default=1.0, help="how often Canary analyses are looked at"
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve the operator's /metrics (serving_canary_weight, serving_canary_transitions_total)",
    )
    p.add_argument(
        "--prometheus-url",
        default="",
        metavar="URL",
        help="evaluate Canary `query:` metrics (PromQL) against this Prometheus",
    )
    p.set_defaults(func=main)


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    namespace, _, name = args.routes_configmap.partition("/")
    render = RenderSettings(
        image=args.image,
        image_pull_policy=args.image_pull_policy,
        image_pull_secrets=tuple(args.image_pull_secret),
        cluster_domain=args.cluster_domain,
        keda_prometheus_url=args.keda_prometheus_url,
    )
    return OperatorConfig(
        render=render,
        domain=args.domain,
        routes_namespace=namespace,
        routes_name=name,
        drain_s=args.drain_seconds,
        resync_s=args.resync_seconds,
        router_selector=_labels(args.router_selector),
        canary_tick_s=args.canary_tick_seconds,
        metrics_port=args.metrics_port,
        prometheus_url=args.prometheus_url,
        router_service=args.router_service,
    )


def _labels(selector: str) -> tuple[tuple[str, str], ...]:
    """`a=b,c=d` as label pairs (an equality-based selector, what the chart passes)."""
    pairs = [part.split("=", 1) for part in selector.split(",") if part.strip()]
    if any(len(pair) != 2 or not pair[0].strip() for pair in pairs):
        raise SystemExit(f"--router-selector {selector!r}: write key=value[,key=value...]")
    return tuple((key.strip(), value.strip()) for key, value in pairs)


def main(args: argparse.Namespace) -> int:
    from serving.control.kubernetes.operator import run

    asyncio.run(
        run(
            config_from_args(args),
            namespaces=args.namespace,
            standalone=args.standalone,
            liveness=args.liveness or None,
        )
    )
    return 0
