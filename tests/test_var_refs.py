"""Kubernetes' `$(VAR)` references in a model container's `args` and `env`, expanded as the kubelet expands
them, so a YAML behaves the same under `serving up` as on Kubernetes (audit /tmp/audit-kserve4 M1: the model
was served as the literal `$(MODEL_NAME)` and every call was a 404 while the service said Ready)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from serving.control.process_args import local_env, predictor_model_name
from serving.revision import Revision
from serving.spec import EnvVar, SpecError, parse
from serving.var_refs import expand, expanded_env
from tests.up_support import cli, serving_up


def test_references_expand_as_the_kubelet_expands_them() -> None:
    values = {"A": "1", "B": "two"}
    assert expand("--x=$(A)-$(B)", values) == "--x=1-two"
    assert expand("$(MISSING) stays", values) == "$(MISSING) stays"  # unknown: as written
    assert expand("$$(A) is escaped, $$ is $", values) == "$(A) is escaped, $ is $"  # once, never again
    assert expand("$(A", values) == "$(A" and expand("cost $5", values) == "cost $5"  # no reference
    assert expand("$$$(A)", values) == "$1"
    # an env value sees only the variables listed before it
    assert expanded_env([("P", "plain"), ("E", "$(P)-x"), ("L", "$(LATER)"), ("LATER", "z")]) == {
        "P": "plain",
        "E": "plain-x",
        "L": "$(LATER)",
        "LATER": "z",
    }
    env = (EnvVar(name="P", value="plain"), EnvVar(name="E", value="$(P)-x"))
    assert local_env(env) == {"P": "plain", "E": "plain-x"}


def _doc(model: dict) -> dict:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "varref"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "/m", **model}}},
    }


def test_the_model_name_and_the_args_check_read_the_expanded_args() -> None:
    revision = Revision.from_spec(
        parse(
            _doc({"env": [{"name": "MODEL_NAME", "value": "iris"}], "args": ["--model_name=$(MODEL_NAME)"]})
        )
    )
    assert predictor_model_name(revision) == "iris"
    threads = _doc({"env": [{"name": "N", "value": "2"}], "args": ["--workers", "$(N)"]})
    assert parse(threads).spec.predictor.model.expanded_args == ["--workers", "2"]
    with pytest.raises(SpecError, match=r"args \(with \$\(VAR\) expanded from env\): argument --workers"):
        parse(_doc({"env": [{"name": "N", "value": "many"}], "args": ["--workers", "$(N)"]}))


def test_serving_up_serves_the_model_under_the_name_its_env_gives(model_repo: Path, tmp_path: Path) -> None:
    spec = tmp_path / "varref.yaml"
    spec.write_text(
        f"""
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {{name: varref}}
spec:
  predictor:
    model:
      modelFormat: {{name: sklearn}}
      storageUri: {model_repo / "sklearn-iris"}
      env: [{{name: MODEL_NAME, value: iris}}]
      args: ["--model_name=$(MODEL_NAME)"]
"""
    )
    state = tmp_path / "state"
    with serving_up(state) as server:
        cli(server, state, "apply", "-f", str(spec), "--wait=60s")
        answer = httpx.post(
            f"{server.url}/v1/models/iris:predict",
            json={"instances": [[6.8, 2.8, 4.8, 1.4]]},
            headers={"Host": "varref.default.example.com"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": [1]}
