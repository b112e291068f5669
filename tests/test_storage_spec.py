"""KServe's `storage: {key, path, parameters}` form of a model's location: the spec, the resolution rules
(KServe's CreateStorageSpecSecretEnvs / `_update_with_storage_spec`), the Secrets `serving apply -f` keeps for
it, and what `serving render` and the operator give the storage-initializer (STORAGE_CONFIG as a
secretKeyRef, never a value). The end-to-end fetch from a real S3 server is in tests/test_storage_spec_s3.py.

The operator test runs the real backend against kmock's Kubernetes emulator (the only fake: no API server
runs here; no admission, no Pods, so no storage-initializer runs there).
"""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from serving.commands.render import render
from serving.control.documents import read_documents
from serving.control.kubernetes.backend import KubernetesBackend, OperatorConfig
from serving.control.kubernetes.documents import cluster_warnings, read_converted
from serving.control.kubernetes.render import RenderSettings
from serving.control.local.secrets import KeptStore, secret_data
from serving.errors import ServingError
from serving.revision import Revision
from serving.spec import SpecError, parse
from serving.storage.storage_spec import (
    StorageSpecError,
    config_from_env,
    env_from_config,
    resolve_storage,
)
from tests.test_operator import cluster  # noqa: F401  (the emulator fixture)

SECRET_KEY = "s3cr3t-never-rendered"
ENTRY = {
    "type": "s3",
    "access_key_id": "minio",
    "secret_access_key": SECRET_KEY,
    "endpoint_url": "http://minio.local:9000",
    "bucket": "mybucket",
    "region": "us-east-2",
    "anonymous": "false",
    "verify_ssl": "0",
    "ca_bundle": "/etc/ssl/minio.pem",
}
DATA = {"localMinIO": json.dumps(ENTRY), "default": json.dumps({**ENTRY, "bucket": "fallback"})}


def _isvc(
    model: dict[str, Any], annotations: dict[str, str] | None = None, name: str = "iris"
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"annotations": annotations} if annotations else {})}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta,
        "spec": {"predictor": model},
    }


def _model(**storage: Any) -> dict[str, Any]:
    return {"model": {"modelFormat": {"name": "sklearn"}, "storage": storage}}


# -- the spec ---------------------------------------------------------------------------------------------
def test_the_storage_field_is_accepted_in_model_and_shorthand_and_is_part_of_the_revision() -> None:
    written = _isvc(_model(key="localMinIO", path="models/iris", parameters={"bucket": "b"}))
    revision = Revision.from_spec(parse(written))
    assert revision.storage is not None
    assert (revision.storage.key, revision.storage.path, revision.storage.parameters) == (
        "localMinIO",
        "models/iris",
        {"bucket": "b"},
    )
    short = _isvc(
        {"sklearn": {"storage": {"key": "localMinIO", "path": "models/iris", "parameters": {"bucket": "b"}}}}
    )
    assert Revision.from_spec(parse(short)).name == revision.name, "the shorthand is the same revision"
    moved = Revision.from_spec(parse(_isvc(_model(key="localMinIO", path="models/iris-v2"))))
    assert moved.name != revision.name, "a changed storage spec is a new revision"
    assert Revision.from_json(revision.to_json()).storage == revision.storage  # survives a restart


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            {"sklearn": {"storageUri": "s3://a/b", "storage": {"path": "b"}}},
            "spec.predictor.sklearn.storage.path and storageUri are both set",
        ),
        (
            {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": "s3://a/b",
                    "storage": {"path": "b"},
                }
            },
            "spec.predictor.model.storage.path and storageUri are both set",
        ),
        (
            {"sklearn": {"storageUri": "/models/iris", "storage": {"key": "k"}}},
            "spec.predictor.sklearn.storage beside storageUri '/models/iris': a storage Secret's entry gives "
            "credentials only for s3://, hdfs://, webhdfs:// URIs",
        ),
        (_model(path="m", colour="red"), "spec.predictor.model.storage.colour: unknown field"),
        (_model(key="k"), "spec.predictor.model.storage.path: required (the model's path in the bucket)"),
        (_model(path=""), "spec.predictor.model.storage.path"),
        (
            _model(path="m", parameters={"bucket": ["not", "a", "string"]}),
            "spec.predictor.model.storage.parameters",
        ),
    ],
)
def test_refusals_name_the_field(model: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(_isvc(model))
    assert expected in caught.value.message, caught.value.message


def test_schema_path_and_the_secret_annotation() -> None:
    isvc = parse(
        _isvc(
            _model(path="m", schemaPath="schema.json"),
            {"serving.kserve.io/storageSecretName": "my-storage"},
        )
    )
    warnings = isvc.warnings()
    assert any(
        w.startswith("spec.predictor.model.storage: schemaPath 'schema.json': ModelMesh's") for w in warnings
    )
    assert not any("storageSecretName" in w for w in warnings), (
        "the annotation is read: not warned as unknown"
    )
    assert any("storage.schemaPath" in w for w in cluster_warnings(_isvc(_model(path="m", schemaPath="s"))))
    hdfs = parse(_isvc(_model(path="m", parameters={"type": "hdfs"}))).warnings()
    assert any("'hdfs://' is KServe's but not fetched here" in w for w in hdfs), hdfs


# -- the resolution rules -----------------------------------------------------------------------------------
def test_a_named_entry_gives_the_uri_and_kserves_s3_env() -> None:
    found = resolve_storage("localMinIO", "models/iris", {}, DATA, "storage-config")
    assert (found.uri, found.secret, found.key) == (
        "s3://mybucket/models/iris",
        "storage-config",
        "localMinIO",
    )
    assert found.env == {
        "AWS_ENDPOINT_URL": "http://minio.local:9000",
        "AWS_ACCESS_KEY_ID": "minio",
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-2",
        "AWS_CA_BUNDLE": "/etc/ssl/minio.pem",
        "S3_VERIFY_SSL": "0",
        "awsAnonymousCredential": "false",
    }
    assert SECRET_KEY not in repr(found), "the env is kept out of repr (logs)"


def test_default_entry_default_type_entry_and_parameters_over_the_entry() -> None:
    assert resolve_storage(None, "m", {}, DATA, "s").uri == "s3://fallback/m"
    typed = {"default_s3": json.dumps({"type": "s3", "bucket": "typed"})}
    assert resolve_storage(None, "m", {"type": "s3"}, typed, "s").key == "default_s3"
    assert resolve_storage(None, "/m", {"type": "s3"}, typed, "s").uri == "s3://typed/m"
    over = resolve_storage("localMinIO", "m", {"bucket": "other", "region": "eu-west-1"}, DATA, "s")
    assert (over.uri, over.env["AWS_DEFAULT_REGION"]) == ("s3://other/m", "eu-west-1")
    assert over.overrides == {"bucket": "other", "region": "eu-west-1"}
    # no entry needed when the parameters give the type and the bucket (no Secret at all, too)
    alone = resolve_storage(None, "m", {"type": "s3", "bucket": "pb"}, None, "s")
    assert (alone.uri, alone.key, alone.env) == ("s3://pb/m", None, {})
    assert resolve_storage(
        None, "data/m", {"type": "hdfs"}, {"default_hdfs": '{"type": "hdfs"}'}, "s"
    ).uri == ("hdfs://data/m")
    assert resolve_storage("w", "m", {}, {"w": '{"type": "webhdfs"}'}, "s").uri == "webhdfs://m"


def test_beside_a_storage_uri_the_entry_gives_only_its_credentials() -> None:
    """KServe: `storageUri: s3://...` with `storage: {key}` fetches that URI with the entry's credentials."""
    isvc = parse(_isvc({"sklearn": {"storageUri": "s3://other/iris", "storage": {"key": "localMinIO"}}}))
    model = isvc.spec.predictor.normalised_model()
    assert model.storage_uri == "s3://other/iris" and model.storage is not None and model.storage.key
    found = resolve_storage("localMinIO", None, {}, DATA, "s", uri="s3://other/iris")
    assert (found.uri, found.key) == ("s3://other/iris", "localMinIO")  # not the entry's bucket
    assert found.env["AWS_SECRET_ACCESS_KEY"] == SECRET_KEY
    typed = resolve_storage(None, None, {"type": "s3"}, None, "s", uri="s3://b/m")  # no bucket needed
    assert (typed.uri, typed.key, typed.env) == ("s3://b/m", None, {})
    with pytest.raises(StorageSpecError, match="unable to determine storage type"):
        resolve_storage("k", None, {}, {"k": '{"access_key_id": "x"}'}, "s", uri="s3://b/m")


@pytest.mark.parametrize(
    ("key", "parameters", "data", "expected"),
    [
        ("nope", {}, DATA, "specified storage key nope not found in storage secret cfg"),
        ("nope", {}, None, "specified storage key nope not found in storage secret cfg (no such Secret)"),
        (None, {}, {"other": "{}"}, "storage secret cfg has no entry 'default'"),
        (None, {"type": "s3"}, DATA, "storage secret cfg has no entry 'default_s3'"),
        (None, {"type": "s3"}, None, "(no such Secret) has no entry 'default_s3'"),
        (
            "k",
            {},
            {"k": '{"type": "gcs", "bucket": "b"}'},
            "storage type must be one of [s3, hdfs, webhdfs]. storage type [gcs] is not supported",
        ),
        ("k", {}, {"k": '{"bucket": "b"}'}, "unable to determine storage type"),
        (
            "k",
            {},
            {"k": '{"type": "s3"}'},
            "format [s3] requires a bucket but one wasn't found in storage data or parameters",
        ),
        ("k", {}, {"k": "not json"}, "entry k of storage secret cfg is not JSON"),
    ],
)
def test_kserves_errors(key: str | None, parameters: dict[str, str], data: Any, expected: str) -> None:
    with pytest.raises(StorageSpecError) as caught:
        resolve_storage(key, "m", parameters, data, "cfg")
    assert expected in caught.value.message, caught.value.message


def test_the_initializers_env_is_read_as_kserves_storage_initializer_reads_it() -> None:
    environ = {
        "STORAGE_CONFIG": DATA["localMinIO"],
        "STORAGE_OVERRIDE_CONFIG": '{"bucket": "x", "region": "r"}',
    }
    config = config_from_env(environ)
    assert config["bucket"] == "x" and config["access_key_id"] == "minio"
    assert env_from_config(config)["AWS_DEFAULT_REGION"] == "r"
    assert env_from_config(config_from_env({"STORAGE_CONFIG": '{"type": "hdfs"}'})) == {}
    assert config_from_env({}) == {}


# -- the Secrets serving apply keeps -------------------------------------------------------------------------
FILE = """
apiVersion: v1
kind: Secret
metadata: {name: storage-config}
type: Opaque
stringData:
  localMinIO: '{"type": "s3", "bucket": "mybucket", "secret_access_key": "SECRET"}'
data:
  other: OTHER
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: models}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: iris}
spec:
  predictor:
    sklearn:
      storage: {key: localMinIO, path: models/iris}
"""


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "iris.yaml"
    path.write_text(
        FILE.replace("SECRET", SECRET_KEY).replace("OTHER", base64.b64encode(b'{"type": "hdfs"}').decode())
    )
    return path


def test_apply_keeps_v1_secrets_and_service_accounts_and_skips_the_rest_naming_them(tmp_path: Path) -> None:
    warnings: list[str] = []
    docs = read_documents(_file(tmp_path), warnings.append)
    assert [d["kind"] for d in docs] == ["Secret", "ServiceAccount", "InferenceService"]
    assert len(warnings) == 1 and "skipped ConfigMap/settings:" in warnings[0], warnings
    assert "Secret/" not in warnings[0] and "ServiceAccount/" not in warnings[0]
    assert secret_data(docs[0]) == {
        "localMinIO": f'{{"type": "s3", "bucket": "mybucket", "secret_access_key": "{SECRET_KEY}"}}',
        "other": '{"type": "hdfs"}',
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '%%%'}\n")
    with pytest.raises(ServingError) as caught:
        read_documents(bad, lambda _: None)
    assert "data.k: not base64" in caught.value.message and "%%%" not in caught.value.message


def test_the_secret_store_is_private_and_lists_names_only(tmp_path: Path) -> None:
    store = KeptStore(tmp_path / "state")
    assert store.put("ml", "storage-config", {"data": {"k": SECRET_KEY}}) == "created"
    assert store.put("ml", "storage-config", {"data": {"k": SECRET_KEY}}) == "unchanged"
    assert store.put("ml", "storage-config", {"data": {"k": "another-value"}}) == "configured"
    (path,) = store.folder.iterdir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700
    assert store.names() == [{"namespace": "ml", "name": "storage-config"}]
    assert store.data("ml", "storage-config") == {"k": "another-value"}
    assert store.data("ml", "other") is None
    store.delete("ml", "storage-config")
    assert store.names() == [] and store.data("ml", "storage-config") is None
    with pytest.raises(ServingError):
        store.delete("ml", "storage-config")


# -- Kubernetes: serving render and the operator ----------------------------------------------------------------
def _init(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    init: dict[str, Any] = deployment["spec"]["template"]["spec"]["initContainers"][0]
    return init


def test_render_gives_the_initializer_the_uri_and_the_entry_as_a_secret_key_ref(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = render(read_converted([_file(tmp_path)]), RenderSettings())
    init = _init(objects)
    assert init["args"][:3] == ["storage", "pull", "s3://mybucket/models/iris"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in init["env"]}
    assert env["STORAGE_CONFIG"] == {"secretKeyRef": {"name": "storage-config", "key": "localMinIO"}}
    assert env["STORAGE_OVERRIDE_CONFIG"] == "{}"
    deployment = json.dumps(next(o for o in objects if o["kind"] == "Deployment"))
    assert SECRET_KEY not in deployment and 'mybucket", "secret' not in deployment
    assert capsys.readouterr().err == ""


def test_render_beside_a_storage_uri_pulls_that_uri_with_the_entrys_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _file(tmp_path)
    path.write_text(
        path.read_text().replace(
            "storage: {key: localMinIO, path: models/iris}",
            "storageUri: s3://elsewhere/iris\n      storage: {key: localMinIO}",
        )
    )
    assert "s3://elsewhere/iris" in path.read_text()
    init = _init(render(read_converted([path]), RenderSettings()))
    assert init["args"][:4] == ["storage", "pull", "s3://elsewhere/iris", "/mnt/models"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in init["env"]}
    assert env["STORAGE_CONFIG"] == {"secretKeyRef": {"name": "storage-config", "key": "localMinIO"}}
    assert capsys.readouterr().err == ""


def test_render_without_the_secret_renders_the_path_and_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "alone.yaml"
    path.write_text(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: iris\n  annotations:\n"
        "    serving.kserve.io/storageSecretName: team-storage\nspec:\n  predictor:\n    model:\n"
        "      modelFormat: {name: sklearn}\n      storage: {path: models/iris, parameters: {type: s3}}\n"
    )
    init = _init(render(read_converted([path]), RenderSettings()))
    assert init["args"][:5] == ["storage", "pull", "--storage-path", "models/iris", "/mnt/models"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in init["env"]}
    assert env["STORAGE_CONFIG"] == {"secretKeyRef": {"name": "team-storage", "key": "default_s3"}}
    assert json.loads(env["STORAGE_OVERRIDE_CONFIG"]) == {"type": "s3"}
    err = capsys.readouterr().err
    assert "warning: iris: spec.predictor.model.storage: Secret team-storage is not in these files" in err, (
        err
    )


def test_the_operator_reads_the_clusters_storage_secret(cluster, tmp_path: Path) -> None:  # noqa: F811
    _, api = cluster
    docs = read_converted([_file(tmp_path)], "ml")
    secret = next(d for d in docs if d["kind"] == "Secret")
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in secret_data(secret).items()}
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "storage-config", "namespace": "ml"},
            "data": encoded,
        }
    )
    isvc = next(d for d in docs if d["kind"] == "InferenceService")
    api.apply({**isvc, "metadata": {**isvc["metadata"], "uid": "uid-iris", "resourceVersion": "1"}})
    backend = KubernetesBackend(api, OperatorConfig(drain_s=0.0))
    backend.start()
    backend.reconcile("ml", "iris")
    (deployment,) = api.list("Deployment", "ml", {"serving.dev/isvc": "iris"})
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert init["args"][:3] == ["storage", "pull", "s3://mybucket/models/iris"]
    assert {
        "name": "STORAGE_CONFIG",
        "valueFrom": {"secretKeyRef": {"name": "storage-config", "key": "localMinIO"}},
    } in init["env"]
    assert SECRET_KEY not in json.dumps(deployment)
    assert not any(
        e["name"].startswith(("AWS_", "STORAGE_"))
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    )


def test_readmes_storage_example_is_read_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("**`storage:` instead of `storageUri`**")
    start = readme.index("```yaml\n", start) + len("```yaml\n")
    path = tmp_path / "readme.yaml"
    path.write_text(readme[start : readme.index("```", start)])
    warnings: list[str] = []
    assert [d["kind"] for d in read_documents(path, warnings.append)] == ["Secret", "InferenceService"]
    assert warnings == []
    init = _init(render(read_converted([path]), RenderSettings()))
    assert init["args"][:3] == ["storage", "pull", "s3://mybucket/models/iris"]
    assert capsys.readouterr().err == ""
