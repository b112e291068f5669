"""The control plane's seams: one Backend protocol with a name table, one routes_for() for both backends, and
no import cycle between serving.control and serving.router (each runs in a fresh interpreter to see it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from serving.control.backend import BACKENDS, Backend, backend_class
from serving.control.kubernetes.backend import KubernetesBackend, OperatorConfig
from serving.control.local.control_plane import LocalControlPlane
from serving.control.local.state import StateStore
from serving.control.reconcile import Observed, plan
from serving.control.routes import routes_for
from serving.errors import BadRequest
from serving.revision import Revision
from serving.router.app import Router
from serving.router.table import ServiceRoute
from serving.spec import parse


def _isvc(uri: str, canary: int | None = None, timeout: int | None = None):
    predictor: dict = {"sklearn": {"storageUri": uri}}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    if timeout is not None:
        predictor["timeout"] = timeout
    return parse(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "iris", "namespace": "ml"},
            "spec": {"predictor": predictor},
        }
    )


def test_backends_by_name_and_both_satisfy_the_protocol(tmp_path) -> None:
    assert set(BACKENDS) == {"local", "kubernetes"}
    assert backend_class("local") is LocalControlPlane and backend_class("kubernetes") is KubernetesBackend
    assert backend_class("serving.control.local.control_plane:LocalControlPlane") is LocalControlPlane
    with pytest.raises(BadRequest, match="unknown backend 'nomad'"):
        backend_class("nomad")
    assert isinstance(LocalControlPlane(StateStore(tmp_path), Router()), Backend)
    assert isinstance(KubernetesBackend(None, OperatorConfig()), Backend)  # type: ignore[arg-type]


def test_routes_for_canary_split_roles_and_timeout() -> None:
    stable, canary = _isvc("/m/v1"), _isvc("/m/v2", canary=20, timeout=7)
    r1, r2 = Revision.from_spec(stable).name, Revision.from_spec(canary).name
    first = plan(stable, None, Observed(frozenset({r1})))
    second = plan(canary, first.state, Observed(frozenset({r1, r2})))
    route = routes_for(canary, second, lambda name: (f"http://{name}",) if name == r2 else (), "example.org")
    assert [(a.revision, a.percent, a.role, a.tag, a.endpoints) for a in route.arms] == [
        (r1, 80, "stable", "prev", ()),
        (r2, 20, "canary", "latest", (f"http://{r2}",)),
    ]
    assert route.host == "iris.ml.example.org" and route.timeout_s == 7.0
    alone = routes_for(stable, first, lambda name: ("u",), "example.org", default_timeout_s=42.0)
    assert [(a.percent, a.role, a.tag) for a in alone.arms] == [
        (100, "stable", "latest")
    ] and alone.timeout_s == 42.0
    rolled_back = plan(_isvc("/m/v2", canary=0, timeout=7), second.state, Observed(frozenset({r1, r2})))
    arms = routes_for(canary, rolled_back, lambda name: ("u",), "d").arms
    assert [(a.revision, a.percent, a.role) for a in arms] == [(r1, 100, "stable"), (r2, 0, "canary")]


def test_a_first_revision_still_loading_gets_a_held_arm_until_it_fails() -> None:
    """No revision rolled out yet: requests wait for the loading one (not a 503 telling them to retry); once it
    failed, the route carries why and no arm."""
    isvc = _isvc("/m/v1")
    r1 = Revision.from_spec(isvc).name
    loading = plan(isvc, None, Observed())
    assert loading.traffic == ()  # the status shows no traffic yet: only the router holds
    route = routes_for(isvc, loading, lambda name: (), "d")
    assert route.starting and route.activator and not route.failure
    assert [(a.revision, a.percent, a.endpoints) for a in route.weighted] == [(r1, 100, ())]
    assert ServiceRoute.from_json(route.to_json()) == route  # as the in-cluster router reads it
    failed = plan(isvc, loading.state, Observed(failed={r1: "ArtifactError: no model file"}))
    route = routes_for(isvc, failed, lambda name: (), "d")
    assert not route.starting and route.arms == () and "no model file" in route.failure
    ready = plan(isvc, loading.state, Observed(frozenset({r1})))
    assert not routes_for(isvc, ready, lambda name: ("u",), "d").starting


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("serving.router.configmap_source", "serving.control"),
        ("serving.control.local.control_plane", "serving.router.app"),
        ("serving.control.kubernetes.backend", "serving.router.app"),
        ("serving.control.kubernetes.render", "serving.control.local.processes"),
    ],
)
def test_no_import_of_the_other_sides_internals(module: str, forbidden: str) -> None:
    code = (
        f"import sys, {module}; bad = [m for m in sys.modules if m == {forbidden!r} or m.startswith({forbidden!r} + '.')];"
        " print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{module} imports {result.stdout.strip()}"
