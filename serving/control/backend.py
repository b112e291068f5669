"""What every backend offers, and the short-name table that picks one (`BACKENDS`, as uvicorn picks loops).

A backend runs the revisions of InferenceServices somewhere and answers for their status; both run the same
`plan()` and build their route table with the same `routes_for()`:
- `local`: supervised processes on this machine (`serving up`), state in a directory;
- `kubernetes`: Deployments + Services through the API server, status in the object (`serving operator`).
Names are imported lazily (the kubernetes client is slow to import); `module:Class` names another one.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

from serving.errors import BadRequest
from serving.spec import InferenceService

BACKENDS = {
    "local": "serving.control.local.control_plane:LocalControlPlane",
    "kubernetes": "serving.control.kubernetes.backend:KubernetesBackend",
}


@runtime_checkable
class Backend(Protocol):
    async def apply(self, isvc: InferenceService, document: dict[str, Any]) -> object:
        """Make `isvc` the desired state (idempotent: applying the same document twice changes nothing)."""

    async def delete(self, namespace: str, name: str) -> None:
        """Out of the route table first, then drained, then its workloads removed."""

    async def observe(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The KServe-shaped status (`url`, `conditions`, `components`...), None if there is no such service."""


def backend_class(name: str) -> type:
    """The class for a short name of `BACKENDS`, or for `module:Class`."""
    target = BACKENDS.get(name, name)
    module_name, sep, class_name = target.partition(":")
    if not sep:
        raise BadRequest(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)} or module:Class")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise BadRequest(f"cannot import backend {target!r}: {exc}") from exc
    if not isinstance(cls, type):
        raise BadRequest(f"backend {target!r} is not a class")
    return cls
