"""KServe's service-account credentials on this machine: the `v1` ServiceAccount and Secrets of a file are kept
by `serving apply -f`, and the Secrets the predictor's service account lists give its model's fetch their env,
as KServe's storage-initializer gets it: S3 keys plus the `serving.kserve.io/s3-*` annotations (a real S3 server
on loopback, moto with IAM on, so the keys can only come from the Secret), and http(s) headers for one host (a
real http.server that answers 401 without them). Kubernetes side: the same Secrets render into the
storage-initializer's env.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from serving.commands.render import render
from serving.control.kubernetes.credentials import without_values
from serving.control.kubernetes.documents import read_converted
from serving.control.kubernetes.render import RenderSettings
from serving.control.local.secrets import KeptStore, kept_record
from serving.control.local.storage_bridge import account_env
from serving.errors import ServingError
from serving.storage import StorageConfig, StorageError
from serving.storage.http import host_headers, resolve_url
from serving.storage.kserve_secrets import account_entry, credentials_from_secrets
from tests.support import train_iris_sklearn, wait_until
from tests.test_storage_http import ArtifactServer
from tests.test_storage_s3 import S3  # the `s3` fixture: tests/conftest.py
from tests.test_storage_spec_s3 import _no_aws_env
from tests.up_support import cli, get_isvc, predict, serving_up, traffic, wait_for_traffic

TOKEN = "Bearer t0k-e2e-not-a-real-token"
HEADERS_SECRET = f"""
apiVersion: v1
kind: Secret
metadata: {{name: model-host}}
stringData:
  https-host: 127.0.0.1
  headers: '{{"Authorization": "{TOKEN}"}}'
"""


def _s3_secret(store: S3) -> str:
    endpoint = urlsplit(store.endpoint).netloc
    return f"""
apiVersion: v1
kind: Secret
metadata:
  name: s3creds
  annotations:
    serving.kserve.io/s3-endpoint: {endpoint}
    serving.kserve.io/s3-usehttps: "0"
    serving.kserve.io/s3-region: us-east-1
data:
  AWS_ACCESS_KEY_ID: {base64.b64encode(store.key_id.encode()).decode()}
  AWS_SECRET_ACCESS_KEY: {base64.b64encode(store.secret.encode()).decode()}
"""


S3_SERVICE = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: from-account}
spec:
  predictor:
    serviceAccountName: models-sa
    model:
      modelFormat: {name: sklearn}
      storageUri: s3://models/iris
      env: [{name: AWS_ENDPOINT_URL, value: ENDPOINT}]   # so nothing but moto is asked before the Secret comes
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: models-sa}
secrets: [{name: s3creds}, {name: not-applied}]
"""
HTTP_SERVICE = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: from-host}
spec:
  predictor:
    sklearn: {storageUri: URL}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: default}
secrets: [{name: model-host}]
"""


@pytest.fixture
def artifacts(tmp_path: Path) -> Any:
    with ArtifactServer() as server:
        model = train_iris_sklearn(tmp_path / "http-model")
        server.put("/iris/model.joblib", model.read_bytes())
        server.required = {"Authorization": TOKEN}
        yield server


def test_a_service_accounts_secrets_give_the_fetch_its_credentials_and_heal_it_when_applied(
    s3: S3, artifacts: ArtifactServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_aws_env(monkeypatch)
    state = tmp_path / "state"
    first = tmp_path / "services.yaml"
    first.write_text(
        S3_SERVICE.replace("ENDPOINT", s3.endpoint)
        + "---\n"
        + HTTP_SERVICE.replace("URL", artifacts.url + "/iris/model.joblib")
        + "---\n"
        + HEADERS_SECRET
    )
    secret = tmp_path / "s3creds.yaml"
    secret.write_text(_s3_secret(s3))
    with (
        serving_up(state, extra=("--cache-dir", str(tmp_path / "cache"))) as server,
        server.client() as client,
    ):
        applied = cli(server, state, "apply", "-f", str(first))
        said = [line for line in applied.stdout.splitlines() if not line.startswith("  warning:")]
        assert said == [
            "inferenceservice/from-account created",
            "serviceaccount/models-sa created",
            "inferenceservice/from-host created",
            "serviceaccount/default created",
            "secret/model-host created",
        ], applied.stdout
        assert "warning" not in applied.stderr, applied.stderr

        # http(s): the default service account's Secret gives 127.0.0.1 its Authorization header
        wait_for_traffic(server, state, "from-host", lambda t: sorted(t.values()) == [100])
        assert predict(client, "from-host").status_code == 200
        assert artifacts.count("/iris/model.joblib") == 1 and artifacts.count("/iris/model.joblib", 401) == 0

        # S3: the account's Secret is not there yet, so moto refuses the unsigned fetch ...
        def failure() -> str:
            info = get_isvc(server, state, "from-account").get("status", {}).get("modelStatus", {})
            return str((info.get("lastFailureInfo") or {}).get("message", ""))

        wait_until(failure, 30, what="the fetch without credentials to fail")
        assert "s3://models/iris" in failure() and "retrying in" in failure(), failure()
        # ... and applying it makes the fetch try again at once (not after its backoff), with its keys
        assert "secret/s3creds created" in cli(server, state, "apply", "-f", str(secret)).stdout
        wait_until(
            lambda: sorted(traffic(get_isvc(server, state, "from-account")).values()) == [100],
            30,
            what="the revision, once its account's Secret is there",
        )
        assert predict(client, "from-account").status_code == 200

        listed = cli(server, state, "get", "-o", "json").stdout + server.log()
        assert s3.secret not in listed and TOKEN not in listed
        kept = sorted(p.name for p in (state / "serviceaccounts").iterdir())
        assert kept == ["default__default.json", "default__models-sa.json"]
        assert cli(server, state, "get", "secrets").stdout.split() == ["NAME", "model-host", "s3creds"]
        accounts = json.loads(cli(server, state, "get", "sa", "-o", "json").stdout)
        assert [a["metadata"]["name"] for a in accounts["items"]] == ["default", "models-sa"]
        assert cli(server, state, "delete", "secret", "s3creds").stdout.strip() == "secret/s3creds deleted"
        missing = cli(server, state, "get", "secret", "s3creds", check=False)
        assert missing.returncode == 1 and 'secrets "s3creds" not found' in missing.stderr

        key = state / "secrets" / "keys" / "default" / "model-host" / "gcloud-application-credentials.json"
        key.parent.mkdir(parents=True)  # what a GCS fetch writes for the pod's mount
        key.write_text("{}")
        deleted = cli(server, state, "delete", "-f", str(first))
        assert "serviceaccount/models-sa deleted" in deleted.stdout, deleted.stdout
        assert list((state / "serviceaccounts").iterdir()) == []
        assert not key.parent.exists(), "a key file written from a Secret goes with it"


def test_a_service_account_not_applied_is_warned_at_apply(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = tmp_path / "isvc.yaml"
    path.write_text(S3_SERVICE.replace("ENDPOINT", "http://127.0.0.1:9").split("---")[0])
    with serving_up(state) as server:
        applied = cli(server, state, "apply", "-f", str(path))
    assert (
        "warning: spec.predictor.serviceAccountName: no ServiceAccount models-sa in namespace default here"
        in applied.stdout
    ), applied.stdout


def test_https_host_headers_become_the_env_kserves_initializer_reads() -> None:
    secret = {
        "metadata": {"name": "model-host"},
        "data": {
            "https-host": base64.b64encode(b"models.example.com").decode(),
            "headers": base64.b64encode(b'{"k": "v"}').decode(),
        },
    }
    (env,) = credentials_from_secrets([without_values(secret)]).env
    assert env == {
        "name": "models.example.com-headers",
        "valueFrom": {"secretKeyRef": {"name": "model-host", "key": "headers"}},
    }, "the headers stay in the Secret; only the host name is read to name the env"
    assert "headers" not in without_values(secret).get("stringData", {})
    assert credentials_from_secrets([{"metadata": {"name": "x"}, "stringData": {"headers": "{}"}}]).env == []


def test_kserves_documented_azure_secret_keys_become_the_azure_env() -> None:
    """KServe's Azure docs create the Secret with `AZ_CLIENT_ID`, `AZ_CLIENT_SECRET`, `AZ_SUBSCRIPTION_ID` and
    `AZ_TENANT_ID`; KServe maps them to the `AZURE_*` env its initializer reads (a key of the new name wins).
    They were skipped: a private blob then failed at pod start with no credentials and no warning."""
    legacy = {
        "metadata": {"name": "azcreds"},
        "stringData": {
            k: "x" for k in ("AZ_CLIENT_ID", "AZ_CLIENT_SECRET", "AZ_SUBSCRIPTION_ID", "AZ_TENANT_ID")
        },
    }
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in credentials_from_secrets([legacy]).env}
    assert env == {
        "AZURE_CLIENT_ID": {"name": "azcreds", "key": "AZ_CLIENT_ID"},
        "AZURE_CLIENT_SECRET": {"name": "azcreds", "key": "AZ_CLIENT_SECRET"},
        "AZURE_SUBSCRIPTION_ID": {"name": "azcreds", "key": "AZ_SUBSCRIPTION_ID"},
        "AZURE_TENANT_ID": {"name": "azcreds", "key": "AZ_TENANT_ID"},
    }
    both = {"metadata": {"name": "b"}, "stringData": {"AZ_CLIENT_ID": "old", "AZURE_CLIENT_ID": "new"}}
    (only,) = credentials_from_secrets([both]).env
    assert only["valueFrom"]["secretKeyRef"]["key"] == "AZURE_CLIENT_ID"


def test_render_gives_the_initializer_the_headers_env_of_the_files_service_account(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(
        HTTP_SERVICE.replace("URL", "https://models.example.com/iris/model.joblib")
        + "---\n"
        + HEADERS_SECRET.replace("127.0.0.1", "models.example.com")
    )
    objects = render(read_converted([path]), RenderSettings())
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert {
        "name": "models.example.com-headers",
        "valueFrom": {"secretKeyRef": {"name": "model-host", "key": "headers"}},
    } in init["env"]
    assert TOKEN not in json.dumps(deployment)


def test_host_headers_are_read_for_their_host_only_and_a_bad_value_is_named_not_shown(tmp_path: Path) -> None:
    env = {"models.example.com-headers": '{"Authorization": "Bearer x", "X-Count": 3}'}
    assert host_headers("https://Models.Example.com/a/model.joblib", env) == {
        "Authorization": "Bearer x",
        "X-Count": "3",
    }
    assert host_headers("https://other.example.com/a", env) == {}
    with pytest.raises(StorageError) as caught:
        host_headers("https://models.example.com/a", {"models.example.com-headers": "not json s3cr3t"})
    assert "models.example.com-headers must be a JSON object" in caught.value.message
    assert "s3cr3t" not in caught.value.message


def test_a_url_needing_headers_is_refused_without_them_and_fetched_with_them(
    artifacts: ArtifactServer, tmp_path: Path
) -> None:
    url = artifacts.url + "/iris/model.joblib"
    config = StorageConfig(cache_dir=tmp_path / "cache", timeout_s=5, env={})
    with pytest.raises(StorageError, match="HTTP 401"):
        resolve_url(url, config)
    config = StorageConfig(
        cache_dir=tmp_path / "cache",
        timeout_s=5,
        env={"127.0.0.1-headers": json.dumps({"Authorization": TOKEN})},
    )
    assert (resolve_url(url, config) / "model.joblib").is_file()


def test_kept_service_accounts_are_validated_and_stored_privately(tmp_path: Path) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "sa"},
        "secrets": [{"name": "a"}],
    }
    assert kept_record(doc) == {"secrets": ["a"], "annotations": {}}
    with pytest.raises(ServingError, match=r"ServiceAccount sa: secrets\[0\]\.name"):
        kept_record({**doc, "secrets": [{"nom": "a"}]})
    store = KeptStore(tmp_path, "ServiceAccount")
    assert store.put("ml", "sa", kept_record(doc)) == "created"
    assert store.record("ml", "sa") == {"secrets": ["a"], "annotations": {}} and store.names() == [
        {"namespace": "ml", "name": "sa"}
    ]
    secrets = KeptStore(tmp_path)
    legacy = tmp_path / "secrets" / "ml__old.json"
    legacy.parent.mkdir(mode=0o700)
    legacy.write_text('{"k": "v"}')  # kept before annotations were
    assert secrets.record("ml", "old") == {"data": {"k": "v"}, "annotations": {}}


IRSA = """
apiVersion: v1
kind: ServiceAccount
metadata:
  name: sa-irsa
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/s3access
    serving.kserve.io/s3-endpoint: s3.example.com
    serving.kserve.io/s3-usehttps: "1"
    serving.kserve.io/s3-region: us-east-2
    serving.kserve.io/s3-useanoncredential: "true"
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: irsa}
spec:
  predictor:
    serviceAccountName: sa-irsa
    sklearn: {storageUri: s3://models/iris}
"""


def test_an_iam_role_service_accounts_own_s3_annotations_count(tmp_path: Path) -> None:
    """KServe's IRSA ServiceAccount (eks.amazonaws.com/role-arn): its s3-* annotations give the endpoint and
    options, locally and rendered (they were ignored: the fetch went to AWS's endpoint); without the role
    annotation they do not, as in KServe."""
    path = tmp_path / "irsa.yaml"
    path.write_text(IRSA)
    objects = render(read_converted([path]), RenderSettings())
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    rendered = {e["name"]: e.get("value") for e in init["env"]}
    assert (
        rendered["S3_ENDPOINT"] == "s3.example.com"
        and rendered["AWS_ENDPOINT_URL"] == "https://s3.example.com"
    )
    assert rendered["awsAnonymousCredential"] == "true" and rendered["AWS_DEFAULT_REGION"] == "us-east-2"
    (account_doc,) = [d for d in read_converted([path]) if d["kind"] == "ServiceAccount"]
    local = account_env([account_entry(account_doc)], tmp_path / "keys")
    assert local["AWS_ENDPOINT_URL"] == "https://s3.example.com" and local["awsAnonymousCredential"] == "true"
    plain = {"metadata": {"name": "sa", "annotations": {"serving.kserve.io/s3-endpoint": "s3.example.com"}}}
    assert credentials_from_secrets([account_entry(plain)]).env == [], "no role: a Secret gives them"


def test_a_hosts_headers_never_follow_a_redirect_to_another_host(tmp_path: Path) -> None:
    """KServe: "applied to any http/https requests that have the same host". A redirect from 127.0.0.1 to
    localhost carried X-Api-Key along (only Authorization was dropped, by httpx)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    model = train_iris_sklearn(tmp_path / "m").read_bytes()
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append((self.headers["Host"].split(":")[0], self.headers.get("X-Api-Key")))
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{port}/model.joblib")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(model)))
            self.end_headers()
            self.wfile.write(model)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        env = {"127.0.0.1-headers": json.dumps({"X-Api-Key": "k3y-for-127"})}
        config = StorageConfig(cache_dir=tmp_path / "cache", timeout_s=5, env=env)
        assert (resolve_url(f"http://127.0.0.1:{port}/redirect", config) / "redirect").read_bytes() == model
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert seen == [("127.0.0.1", "k3y-for-127"), ("localhost", None)], seen
