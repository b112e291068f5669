"""`serving router --routes-configmap NS/NAME` for real: a router process reads its table from a ConfigMap
in the (emulated) API server through a kubeconfig, and forwards to a real model server.

The Services of a cluster are stood in for by the model server's loopback URL in the table; what is
real is the router process, its ConfigMap polling via the kubernetes client, table swaps, canary tags.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import kubernetes
import numpy as np
import pytest
import tritonclient.grpc as triton
import yaml

from serving.control.kubernetes.apply import Cluster
from serving.router.table import Arm, RouteTable, ServiceRoute
from tests.inprocess import serving_inprocess
from tests.support import free_port, serving_process, train_iris_sklearn, wait_until
from tests.test_operator import Emulator

BODY = {"instances": [[6.8, 2.8, 4.8, 1.4]]}


def _table(version: int, endpoint: str, arms: list[tuple[str, int, str]]) -> dict:
    route = ServiceRoute(
        "iris",
        "ml",
        tuple(Arm(rev, pct, "stable", tag, (endpoint,)) for rev, pct, tag in arms),
        "iris.ml.example.com",
        aliases=("iris.ml", "iris.ml.svc", "iris.ml.svc.cluster.local"),  # what the operator writes
    )
    return {"routes.json": json.dumps(RouteTable({("ml", "iris"): route}, version).to_json())}


@pytest.mark.e2e  # the in-cluster router as its own process
def test_router_follows_the_route_configmap(tmp_path: Path) -> None:
    model_dir = tmp_path / "iris"
    train_iris_sklearn(model_dir)
    serve = ["serve", "--model-dir", str(model_dir), "--name", "iris", "--grpc-port", "0"]
    with Emulator() as emulator, serving_inprocess(serve) as model:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "emu",
                    "clusters": [{"name": "emu", "cluster": {"server": emulator.url}}],
                    "users": [{"name": "emu", "user": {}}],
                    "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
                }
            )
        )
        cluster = Cluster(kubernetes.client.ApiClient(kubernetes.client.Configuration(host=emulator.url)))
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "routes", "namespace": "ops"},
                "data": _table(1, model.url, [("iris-aaaa1111", 100, "latest")]),
            }
        )
        grpc_port = free_port()
        args = [
            "router",
            "--routes-configmap",
            "ops/routes",
            "--poll-seconds",
            "0.1",
            "--grpc-port",
            str(grpc_port),
        ]
        # A process: the Kubernetes client reads KUBECONFIG once, when it is first imported.
        with serving_process(args, env={"KUBECONFIG": str(kubeconfig)}, timeout_s=60) as router:
            headers = {"Host": "iris.ml.example.com"}
            r = httpx.post(f"{router.url}/v1/models/iris:predict", json=BODY, headers=headers, timeout=10)
            assert r.status_code == 200, r.text
            assert len(r.json()["predictions"]) == 1
            assert r.headers["x-serving-revision"] == "iris-aaaa1111"
            # Its in-cluster name (status.address.url; an ExternalName Service sends it here) routes alike.
            for host in ("iris.ml.svc.cluster.local", "iris.ml"):
                inside = httpx.post(f"{router.url}/v1/models/iris:predict", json=BODY, headers={"Host": host})
                assert inside.status_code == 200 and inside.json() == r.json(), (host, inside.text)
            # gRPC through the in-cluster router: by model_name, namespace from metadata, same table.
            grpc_client = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            tensor = triton.InferInput("input-0", [1, 4], "FP64")
            tensor.set_data_from_numpy(np.array(BODY["instances"]))
            answer = grpc_client.infer("iris", [tensor], headers={"x-serving-namespace": "ml"})
            assert list(answer.as_numpy("output-0")) == r.json()["predictions"]

            # The operator writes a canary split: the router picks it up without a restart.
            cluster.patch(
                "ConfigMap",
                "ops",
                "routes",
                {
                    "data": _table(
                        2, model.url, [("iris-bbbb2222", 20, "latest"), ("iris-aaaa1111", 80, "prev")]
                    )
                },
            )

            def pinned(tag: str) -> str:
                response = httpx.post(
                    f"{router.url}/v1/models/iris:predict",
                    json=BODY,
                    headers={**headers, "x-serving-tag": tag},
                    timeout=10,
                )
                return response.headers.get("x-serving-revision", "")

            wait_until(lambda: pinned("latest") == "iris-bbbb2222", timeout_s=10)
            assert pinned("prev") == "iris-aaaa1111"
            unknown = httpx.post(f"{router.url}/v1/models/nope:predict", json=BODY, timeout=10)
            assert unknown.status_code == 404 and "error" in unknown.json()
