"""An env `valueFrom.secretKeyRef` on this machine: read from the Secrets `serving apply -f` kept (as the kubelet
reads the cluster's). A missing key fails the revision, saying which, until the Secret is applied; `optional`
refs and other sources (ConfigMaps: Kubernetes only, warned) are left out. Real `serving up` in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.control.process_args import MissingSecretKey, local_env
from serving.spec import EnvVar
from tests.support import train_iris_sklearn, wait_until
from tests.up_support import apply_text, get_isvc, predict, serving_up, traffic

SECRETS = {"api": {"token": "s3cr3t"}}


def _lookup(name: str, key: str) -> str | None:
    return SECRETS.get(name, {}).get(key)


def _ref(name: str, key: str, **extra: object) -> dict[str, object]:
    return {"secretKeyRef": {"name": name, "key": key, **extra}}


def test_secret_key_refs_are_read_from_the_applied_secrets() -> None:
    env = (
        EnvVar(name="PLAIN", value="1"),
        EnvVar(name="TOKEN", value_from=_ref("api", "token")),
        EnvVar(name="MAYBE", value_from=_ref("api", "nope", optional=True)),
        EnvVar(name="CONFIG", value_from={"configMapKeyRef": {"name": "c", "key": "k"}}),
    )
    assert local_env(env, _lookup) == {"PLAIN": "1", "TOKEN": "s3cr3t"}
    assert local_env(env) == {"PLAIN": "1"}  # no Secrets to read (e.g. `serving serve` alone)
    with pytest.raises(MissingSecretKey) as missing:
        local_env((EnvVar(name="KEY", value_from=_ref("api", "other")),), _lookup)
    assert "env KEY: valueFrom.secretKeyRef: no key 'other' in Secret 'api'" in missing.value.message
    assert "s3cr3t" not in missing.value.message


ISVC = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: with-token}
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      storageUri: MODEL
      env:
      - name: API_TOKEN
        valueFrom: {secretKeyRef: {name: api, key: token}}
"""
SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: api}\nstringData: {token: s3cr3t}\n"


def test_a_missing_secret_fails_the_revision_until_it_is_applied(tmp_path: Path) -> None:
    model = train_iris_sklearn(tmp_path / "iris")
    state = tmp_path / "state"
    with serving_up(state) as server, server.client() as client:
        apply_text(server, state, ISVC.replace("MODEL", str(model)), tmp_path)

        def failure() -> str:
            status = get_isvc(server, state, "with-token").get("status", {})
            return str((status.get("modelStatus", {}).get("lastFailureInfo") or {}).get("message", ""))

        wait_until(failure, 30, what="the revision's failure")
        assert "env API_TOKEN: valueFrom.secretKeyRef: no key 'token' in Secret 'api'" in failure(), failure()

        apply_text(server, state, SECRET, tmp_path, "secret.yaml")
        wait_until(
            lambda: list(traffic(get_isvc(server, state, "with-token")).values()) == [100],
            30,
            what="the revision, once the Secret is there",
        )
        assert predict(client, "with-token").status_code == 200
