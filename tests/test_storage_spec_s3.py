"""KServe's `storage: {key, path}` end to end on this machine: a real S3 server on loopback (moto in server mode,
IAM on: a request without the Secret's keys is refused), `serving up` in-process, the Secret and the
InferenceService applied from one file by the real CLI, a prediction through the router. No AWS variables are
in the environment of `serving up`: the credentials can only come from the applied Secret.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.inprocess import run_cli
from tests.support import wait_until
from tests.test_storage_s3 import S3  # the `s3` fixture: tests/conftest.py
from tests.up_support import cli, get_isvc, predict, serving_up, traffic, wait_for_traffic

pytest.importorskip("moto.server")

ISVC = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: NAME}
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      storage: {key: moto, path: iris}
"""


# KServe's other form: the storageUri names the model, storage.key only gives its credentials
BESIDE_URI = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: beside-uri}
spec:
  predictor:
    sklearn:
      storageUri: s3://models/iris
      storage: {key: moto}
"""


def _secret(store: S3) -> str:
    entry = {
        "type": "s3",
        "access_key_id": store.key_id,
        "secret_access_key": store.secret,
        "endpoint_url": store.endpoint,
        "bucket": "models",
        "region": "us-east-1",
    }
    return (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: storage-config}\ntype: Opaque\n"
        f"stringData:\n  moto: '{json.dumps(entry)}'\n"
    )


def _no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "S3_ENDPOINT",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)


def test_a_storage_secret_applied_with_the_service_serves_its_model(
    s3: S3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_aws_env(monkeypatch)
    state = tmp_path / "state"
    path = tmp_path / "iris.yaml"
    path.write_text(_secret(s3) + "---\n" + ISVC.replace("NAME", "from-secret") + "---\n" + BESIDE_URI)
    with (
        serving_up(state, extra=("--cache-dir", str(tmp_path / "cache"))) as server,
        server.client() as client,
    ):
        applied = cli(server, state, "apply", "-f", str(path))
        assert applied.stdout.splitlines() == [
            "secret/storage-config created",
            "inferenceservice/from-secret created",
            "inferenceservice/beside-uri created",
        ], applied.stdout
        assert "warning" not in applied.stderr, applied.stderr
        for name in ("from-secret", "beside-uri"):
            wait_for_traffic(server, state, name, lambda t: sorted(t.values()) == [100])
            response = predict(client, name)
            assert response.status_code == 200, response.text
            assert response.json()["predictions"][0] in (0, 1, 2)
        again = cli(server, state, "apply", "-f", str(path))
        assert "secret/storage-config unchanged" in again.stdout, again.stdout

        (stored,) = (state / "secrets").iterdir()
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        listed = (
            cli(server, state, "get", "-o", "json").stdout + cli(server, state, "get", "-o", "wide").stdout
        )
        assert s3.secret not in listed
        assert s3.secret not in server.log()
        others = [p for p in state.rglob("*") if p.is_file() and p.parent != state / "secrets"]
        assert not [p for p in others if s3.secret.encode() in p.read_bytes()]

        deleted = cli(server, state, "delete", "-f", str(path))
        assert deleted.stdout.splitlines() == [
            "inferenceservice/from-secret deleted",
            "inferenceservice/beside-uri deleted",
            "secret/storage-config deleted",
        ], deleted.stdout
        assert list((state / "secrets").iterdir()) == []


def test_a_missing_secret_fails_the_revision_until_it_is_applied(
    s3: S3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_aws_env(monkeypatch)
    state = tmp_path / "state"
    service, secret = tmp_path / "isvc.yaml", tmp_path / "secret.yaml"
    service.write_text(ISVC.replace("NAME", "heals"))
    secret.write_text(_secret(s3))
    with (
        serving_up(state, extra=("--cache-dir", str(tmp_path / "cache"))) as server,
        server.client() as client,
    ):
        applied = cli(server, state, "apply", "-f", str(service))
        assert "warning: spec.predictor.model.storage: no Secret storage-config in namespace default yet" in (
            applied.stdout
        ), applied.stdout

        def failure() -> str:
            info = get_isvc(server, state, "heals").get("status", {}).get("modelStatus", {})
            return str((info.get("lastFailureInfo") or {}).get("message", ""))

        wait_until(failure, 30, what="the revision's failure")
        assert (
            "spec.predictor.model.storage: specified storage key moto not found in storage secret "
            in failure()
        )
        assert "retrying in" in failure(), "retried with backoff"

        cli(server, state, "apply", "-f", str(secret))

        def ready() -> bool:
            return sorted(traffic(get_isvc(server, state, "heals")).values()) == [100]

        wait_until(ready, 60, what="the revision, once the Secret is there")
        assert predict(client, "heals").status_code == 200


def test_storage_pull_reads_kserves_storage_config_env(
    s3: S3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the rendered init container runs: STORAGE_CONFIG (from a secretKeyRef) and the parameters."""
    _no_aws_env(monkeypatch)
    entry = json.loads(_secret(s3).split("moto: '", 1)[1].rsplit("'", 1)[0])
    monkeypatch.setenv("STORAGE_CONFIG", json.dumps({**entry, "bucket": "elsewhere"}))
    monkeypatch.setenv("STORAGE_OVERRIDE_CONFIG", '{"bucket": "models"}')
    cache = ("--cache-dir", str(tmp_path / "cache"))
    by_path = run_cli("storage", "pull", "--storage-path", "iris", str(tmp_path / "a"), *cache)
    assert by_path.returncode == 0, by_path.stderr
    assert (tmp_path / "a" / "model.joblib").is_file() and "s3://models/iris" in by_path.stdout
    by_uri = run_cli("storage", "pull", "s3://models/iris", str(tmp_path / "b"), *cache)
    assert by_uri.returncode == 0 and (tmp_path / "b" / "model.joblib").is_file(), by_uri.stderr
    monkeypatch.delenv("STORAGE_CONFIG")
    unsigned = run_cli(
        "storage", "pull", "s3://models/iris", str(tmp_path / "c"), "--cache-dir", str(tmp_path / "c2")
    )
    assert unsigned.returncode != 0, "without the Secret's entry the keys are gone: refused"
