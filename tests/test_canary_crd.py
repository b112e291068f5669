"""The Canary CRD is generated from the pydantic `Canary`: committed copies must not drift, it is a valid structural
CRD, the README's and the examples' Canary documents validate against it, and it rejects what the spec rejects."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from serving.canary.crd import canary_crd, canary_crd_yaml
from serving.canary.spec import CanarySpecError, parse_canary
from serving.cli import main
from serving.crd import crd_yaml
from tests.test_crd import _closed

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = [
    ROOT / "charts/serving/crds/canaries.serving.dev.yaml",
    ROOT / "charts/kustomize/canary-crd.yaml",
]


def _schema() -> dict[str, Any]:
    return canary_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _readme_canary() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return next(
        d for b in blocks for d in yaml.safe_load_all(b) if isinstance(d, dict) and d.get("kind") == "Canary"
    )


def _examples() -> list[dict[str, Any]]:
    docs = [d for p in sorted((ROOT / "examples").rglob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    return [d for d in docs if isinstance(d, dict) and d.get("kind") == "Canary"]


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_canary_crd_matches_the_spec(path: Path) -> None:
    assert path.read_text() == canary_crd_yaml(), (
        f"{path} drifted from serving/canary/spec.py: python -c 'from serving.canary.crd import canary_crd_yaml; "
        f'print(canary_crd_yaml(), end="")\' > {path}'
    )


def test_canary_crd_is_a_valid_structural_crd_with_status_and_columns() -> None:
    for version in ("1.29", "1.37"):
        kubernetes_validate.validate(canary_crd(), version, strict=True)
    version = canary_crd()["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert {
        "Phase": ".status.phase",
        "Weight": ".status.canaryWeight",
        "Revision": ".status.revision",
        "Age": ".metadata.creationTimestamp",
    }.items() <= columns.items()
    assert yaml.safe_load(canary_crd_yaml()) == canary_crd()


def test_serving_crd_prints_both_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["spec"]["names"]["kind"] for d in docs] == ["InferenceService", "Canary"]
    assert docs[0] == yaml.safe_load(crd_yaml()) and docs[1] == canary_crd()


def test_the_readme_and_example_canaries_validate() -> None:
    documents = [_readme_canary(), *_examples()]
    assert len(documents) >= 2
    for document in documents:
        parse_canary(document)  # what `serving apply` accepts ...
        jsonschema.validate(document, _closed(_schema()))  # ... the API server accepts too


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "analysis", "stepWeight"), 0),
        (("spec", "analysis", "threshold"), 0),
        (("spec", "analysis", "metrics", 0, "percentile"), 95),
        (("spec", "analysis", "sessionAffinity", "header"), "x user"),
        (("spec", "analysis", "intervall"), "5s"),
        (("spec", "targetRef", "kind"), "Deployment"),
        (("metadata", "name"), "Not_A_Name"),
    ],
)
def test_schema_rejects_what_the_spec_rejects(path: tuple[str | int, ...], value: Any) -> None:
    document = copy.deepcopy(_readme_canary())
    node: Any = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, _closed(_schema()))
    with pytest.raises(CanarySpecError):
        parse_canary(document)
