"""Rendered Kubernetes objects expose the predictor's gRPC port (named `grpc`, appProtocol kubernetes.io/h2c),
probes unchanged, transformers REST only; validated against the official schemas (kubernetes-validate --strict)."""

from __future__ import annotations

import argparse

import kubernetes_validate

from serving.commands.serve import register
from serving.control.kubernetes.render import GRPC_PORT, RenderSettings, revision_objects
from serving.revision import Revision
from serving.spec import parse


def _objects() -> tuple[Revision, dict[str, dict]]:
    ours = {
        "containers": [
            {"name": "kserve-container", "args": ["serving", "transform", "--transformer", "tabular"]}
        ]
    }
    isvc = parse(
        {
            "apiVersion": "serving.dev/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "iris", "namespace": "ml"},
            "spec": {"predictor": {"sklearn": {"storageUri": "pvc://store/iris"}}, "transformer": ours},
        }
    )
    revision = Revision.from_spec(isvc)
    objects = revision_objects(isvc, revision, 1, RenderSettings(image="registry.example/serving:test"), None)
    return revision, {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def test_predictor_exposes_grpc_and_the_transformer_does_not() -> None:
    revision, objects = _objects()
    container = objects[f"Deployment/{revision.name}-predictor"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"} in container["ports"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args, _ = parser.parse_known_args(container["args"])  # the real `serve` parser reads the flag
    assert args.grpc_port == GRPC_PORT
    ports = {p["name"]: p for p in objects[f"Service/{revision.name}-predictor"]["spec"]["ports"]}
    assert ports["grpc"] == {
        "name": "grpc",
        "port": GRPC_PORT,
        "targetPort": "grpc",
        "protocol": "TCP",
        "appProtocol": "kubernetes.io/h2c",
    }
    assert ports["http"]["port"] == 80
    assert [p["name"] for p in objects[f"Service/{revision.name}-transformer"]["spec"]["ports"]] == ["http"]
    for obj in objects.values():
        for version in ("1.29", "1.37"):
            kubernetes_validate.validate(obj, version, strict=True)
