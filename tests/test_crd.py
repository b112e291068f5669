"""The CRD is generated from the pydantic spec: committed copies must not drift, it must be a valid
structural CRD, and every example (converted to our group) must validate against its openAPIV3Schema."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from serving.control.kubernetes.documents import read_converted
from serving.crd import crd, crd_yaml

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = [
    ROOT / "charts/serving/crds/inferenceservices.serving.dev.yaml",
    ROOT / "charts/kustomize/crd.yaml",
]
EXAMPLES = [
    p
    for p in sorted((ROOT / "examples").rglob("*.yaml"))  # InferenceService files (not Canary etc.)
    if all(d.get("kind") == "InferenceService" for d in yaml.safe_load_all(p.read_text()) if d)
]


def _schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_crd_matches_the_spec(path: Path) -> None:
    assert path.read_text() == crd_yaml(), f"{path} drifted from serving/spec.py: run `serving crd > {path}`"


def test_crd_is_a_valid_structural_crd() -> None:
    for version in ("1.29", "1.37"):
        kubernetes_validate.validate(crd(), version, strict=True)
    version = crd()["spec"]["versions"][0]
    assert crd()["spec"]["names"]["shortNames"] == ["isvc"] and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]][:5] == [
        "URL",
        "Ready",
        "Prev",
        "Latest",
        "PrevRolledoutRevision",
    ]

    def walk(node: dict[str, Any], path: str) -> None:  # structural: no $ref, every node typed or opted out
        assert "$ref" not in node and "$defs" not in node, path
        assert (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        ), f"{path} has no type"
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{name}")
        if "items" in node:
            walk(node["items"], f"{path}[]")

    walk(_schema(), "")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_crd_schema(example: Path) -> None:
    for doc in read_converted([example]):
        jsonschema.validate(doc, _schema())


def _base() -> dict[str, Any]:
    return read_converted([ROOT / "examples/sklearn-iris.yaml"])[0]


@pytest.mark.parametrize(
    ("path", "value", "why"),
    [
        (("spec", "predictor", "canaryTrafficPercent"), 101, "maximum"),
        (("spec", "predictor", "model", "storageUrl"), "s3://x", "unknown field"),
        (("spec", "predictor", "scaleMetric"), "gpu", "not one of"),
        (("spec", "predictor", "minReplicas"), "two", "type"),
        (("metadata", "name"), "Not_A_Name", "pattern"),
    ],
)
def test_schema_rejects_what_the_spec_rejects(path: tuple[str, ...], value: Any, why: str) -> None:
    doc = copy.deepcopy(_base())
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    # The API server's strict field validation rejects unknown fields; jsonschema needs
    # additionalProperties for that, which structural schemas express by pruning instead.
    schema = _schema() if why != "unknown field" else _closed(_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def _closed(node: dict[str, Any]) -> dict[str, Any]:
    out = dict(node)
    if "properties" in node:
        out["properties"] = {k: _closed(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if "items" in node:
        out["items"] = _closed(node["items"])
    return out


def test_crd_yaml_round_trips() -> None:
    assert yaml.safe_load(crd_yaml()) == crd()
