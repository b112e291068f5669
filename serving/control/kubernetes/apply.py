"""Kept for imports of the old path: the Kubernetes API client now lives in `serving.cluster` (a neutral place,
so the in-cluster router reads its ConfigMap without importing the control plane)."""

from serving.cluster import (
    KINDS,
    Cluster,
    ClusterError,
    PermanentClusterError,
    TemporaryClusterError,
    classify,
    contains,
    load_configuration,
    merge_patch,
)

__all__ = [
    "KINDS",
    "Cluster",
    "ClusterError",
    "PermanentClusterError",
    "TemporaryClusterError",
    "classify",
    "contains",
    "load_configuration",
    "merge_patch",
]
