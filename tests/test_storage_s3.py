"""s3:// models from a real S3 server on loopback: moto in server mode (ThreadedMotoServer, port 0), IAM on.

Models are uploaded with boto3 (the vendor's SDK), fetched by our fsspec provider with KServe's env names,
then served by a real in-process model server (one test goes through `serving up`). moto's signature check is
patched in this process only (see `_moto_checks_encoded_queries`): it re-signs the decoded query string, so
any ListObjects with a '/' in its prefix fails for every client (boto3 included) — a moto bug, not ours.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from serving.storage import StorageConfig, StorageError, fingerprint, leases, pull, release, resolve
from serving.storage.credentials import parse_location
from serving.storage.object_store import cache_key, translated
from tests.inprocess import run_cli, serving_inprocess
from tests.support import free_port, train_iris_sklearn

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
IRIS_ROW = [[6.8, 2.8, 4.8, 1.4]]


def _moto_checks_encoded_queries() -> Any:
    from moto.iam import access_control

    original = access_control.IAMRequestBase._create_aws_request

    def encoded(self: Any) -> Any:
        path, _, query = self._path.partition("?")
        if query:
            pairs = (pair.partition("=") for pair in query.split("&"))
            self._path = (
                path
                + "?"
                + "&".join(  # unquote first: newer moto versions hand over the encoded form
                    f"{quote(unquote(k), safe='-_.~')}={quote(unquote(v), safe='-_.~')}" for k, _, v in pairs
                )
            )
        return original(self)

    access_control.IAMRequestBase._create_aws_request = encoded
    return original


class S3:
    def __init__(self, endpoint: str, key_id: str, secret: str) -> None:
        self.endpoint, self.key_id, self.secret = endpoint, key_id, secret
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )
        self.iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            **extra,
        }

    def upload_folder(self, folder: Path, prefix: str) -> None:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.client.upload_file(str(path), "models", f"{prefix}/{path.relative_to(folder).as_posix()}")


def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """The `s3` fixture (tests/conftest.py): one per process, as moto's backends and auth switch are."""
    from moto.iam import access_control

    original = _moto_checks_encoded_queries()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        setup = S3(endpoint, "setup", "setup")  # moto lets the first actions through while auth is off
        setup.iam.create_user(UserName="models")
        setup.iam.put_user_policy(UserName="models", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL))
        key = setup.iam.create_access_key(UserName="models")["AccessKey"]
        setup.client.create_bucket(Bucket="models")
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()  # signatures checked
        store = S3(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
        model = train_iris_sklearn(tmp_path_factory.mktemp("iris") / "iris").parent
        (model / "extra").mkdir()
        (model / "extra" / "labels.txt").write_text("setosa\nversicolor\nvirginica\n")
        store.upload_folder(model, "iris")
        yield store
    finally:
        server.stop()
        access_control.IAMRequestBase._create_aws_request = original


def _config(tmp_path: Path, env: dict[str, str], **extra: Any) -> StorageConfig:
    return StorageConfig(cache_dir=tmp_path / "cache", env=env, timeout_s=5, **extra)


def _predict_from(model_dir: Path) -> httpx.Response:
    with serving_inprocess(["serve", "--model-dir", str(model_dir), "--name", "iris"]) as server:
        return httpx.post(f"{server.url}/v1/models/iris:predict", json={"instances": IRIS_ROW}, timeout=10)


def test_s3_folder_is_fetched_and_served(s3: S3, tmp_path: Path) -> None:
    model_dir = resolve("s3://models/iris", _config(tmp_path, s3.env()))
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()) == [
        "extra/labels.txt",
        "model.joblib",
    ]
    response = _predict_from(model_dir)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0] in (0, 1, 2)


def test_kserve_endpoint_variables_and_a_single_object(s3: S3, tmp_path: Path) -> None:
    """S3_ENDPOINT without a scheme + S3_USE_HTTPS=0 (what KServe renders from its secret annotations)."""
    host = s3.endpoint.removeprefix("http://")
    env = {**s3.env(S3_ENDPOINT=host, S3_USE_HTTPS="0")}
    del env["AWS_ENDPOINT_URL"]
    model_dir = resolve("s3://models/iris/model.joblib", _config(tmp_path, env))
    assert [p.name for p in model_dir.iterdir()] == ["model.joblib"]


def test_wrong_key_is_access_denied_naming_the_uri_never_the_secret(s3: S3, tmp_path: Path) -> None:
    wrong = "wrong-secret-value-123"
    with pytest.raises(StorageError) as failure:
        resolve("s3://models/iris", _config(tmp_path, s3.env(AWS_SECRET_ACCESS_KEY=wrong)))
    message = failure.value.message
    assert message.startswith("s3://models/iris: access denied (403)"), message
    assert wrong not in message and s3.secret not in message
    assert not any((tmp_path / "cache").rglob("model.joblib")), "nothing half-fetched may look like a model"


@pytest.mark.parametrize(
    ("uri", "env", "expected"),
    [
        ("s3://models/iris", {}, "no S3 credentials: set AWS_ACCESS_KEY_ID"),
        ("s3://no-such-bucket/iris", None, "no such bucket, key or prefix"),
        ("s3://models/no-such-prefix", None, "no such bucket, key or prefix"),
        ("s3:///iris", None, "no bucket name in the URI"),
    ],
)
def test_clear_errors(s3: S3, tmp_path: Path, uri: str, env: dict | None, expected: str) -> None:
    with pytest.raises(StorageError) as failure:
        resolve(uri, _config(tmp_path, s3.env() if env is None else env))
    assert uri in failure.value.message and expected in failure.value.message, failure.value.message


@pytest.mark.parametrize("value", ["many", "0"])
def test_a_bad_max_attempts_is_named(s3: S3, tmp_path: Path, value: str) -> None:
    with pytest.raises(StorageError) as failure:
        resolve("s3://models/iris", _config(tmp_path, s3.env(AWS_MAX_ATTEMPTS=value)))
    message = failure.value.message
    assert "s3://models/iris" in message, message
    assert f"AWS_MAX_ATTEMPTS must be a whole number of attempts >= 1, not {value!r}" in message


def test_unreachable_endpoint_says_so(s3: S3, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StorageError) as failure:
        resolve("s3://models/iris", _config(tmp_path, s3.env(AWS_ENDPOINT_URL=closed, AWS_MAX_ATTEMPTS="1")))
    assert f"endpoint unreachable: {closed}" in failure.value.message, failure.value.message


def test_a_copy_fetched_from_another_endpoint_is_never_handed_out(s3: S3, tmp_path: Path) -> None:
    """The cache is of a URI as fetched from one endpoint with one set of keys: a service whose own endpoint
    cannot be reached gets that error, not the copy another service fetched elsewhere (it was served, Ready)."""
    config = _config(tmp_path, s3.env())
    assert (resolve("s3://models/iris", config) / "model.joblib").is_file()
    closed = f"http://127.0.0.1:{free_port()}"
    elsewhere = _config(tmp_path, s3.env(AWS_ENDPOINT_URL=closed, AWS_MAX_ATTEMPTS="1"))
    with pytest.raises(StorageError, match="endpoint unreachable"):
        resolve("s3://models/iris", elsewhere)
    other_keys = _config(
        tmp_path, {**s3.env(), "AWS_ACCESS_KEY_ID": "AKIAOTHERTEAM", "AWS_SECRET_ACCESS_KEY": "x"}
    )
    assert cache_key("s3://models/iris", parse_location("s3://models/iris"), other_keys.environment(), 5) != (
        cache_key("s3://models/iris", parse_location("s3://models/iris"), config.environment(), 5)
    )
    assert len(list((tmp_path / "cache" / "objects").iterdir())) == 2, "one entry per source, none shared"


def test_an_endpoint_that_never_answers_is_tried_once_per_attempt(tmp_path: Path) -> None:
    """botocore's attempts (AWS_MAX_ATTEMPTS) are the retries: s3fs's own 5 rounds on top of them made a
    store that accepts connections but never answers take 15 minutes to be reported (5 x 3 x 60 s)."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])  # kept open, never answered

    threading.Thread(target=accept, daemon=True).start()
    hole = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_ENDPOINT_URL": hole,
        "AWS_MAX_ATTEMPTS": "1",
    }
    try:
        with pytest.raises(StorageError, match="endpoint unreachable"):
            resolve("s3://models/iris", StorageConfig(cache_dir=tmp_path / "cache", env=env, timeout_s=0.5))
        assert 1 <= len(accepted) <= 3, f"{len(accepted)} connections: retried on top of AWS_MAX_ATTEMPTS"
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def test_second_revision_hits_the_cache_and_a_changed_object_is_fetched_again(
    s3: S3,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s3.upload_folder(resolve("s3://models/iris", _config(tmp_path / "seed", s3.env())), "changing")
    config = _config(tmp_path, s3.env())
    first = resolve("s3://models/changing", config)
    (first / "sentinel").write_text("a re-download would not keep this file")
    before = fingerprint("s3://models/changing", config)
    with caplog.at_level(logging.INFO, logger="serving.storage"):
        again = resolve("s3://models/changing", config)  # what a second revision of the same model does
    assert again == first and (again / "sentinel").exists()
    assert "unchanged" in caplog.text
    other = train_iris_sklearn(tmp_path / "other", c=0.01)
    s3.client.upload_file(str(other), "models", "changing/model.joblib")
    changed = resolve("s3://models/changing", config)
    assert changed != first and not (changed / "sentinel").exists()
    assert (changed / "model.joblib").read_bytes() == other.read_bytes()
    assert fingerprint("s3://models/changing", config) != before
    assert first.is_dir(), "the previous folder stays for replicas still reading it"


def test_a_folder_a_revision_still_uses_is_never_pruned(s3: S3, tmp_path: Path) -> None:
    """The auditor's share-a/b/c: three services resolve one URI, the object overwritten between them. share-a
    must still be able to scale up or restart from its folder after two newer ones arrived; once it retires
    (release), the next change prunes its folder, never the ones share-b and share-c still hold."""
    config = _config(tmp_path, s3.env())
    uri = "s3://models/shared"
    folders = []
    for version in (b"v1", b"v2", b"v3"):  # share-a, share-b, share-c
        s3.client.put_object(Bucket="models", Key="shared/model.joblib", Body=version)
        folders.append(resolve(uri, config))
    share_a, share_b, share_c = folders
    assert len(set(folders)) == 3
    assert (share_a / "model.joblib").read_bytes() == b"v1", "share-a's folder was pruned while in use"
    assert [leases.held(f) for f in folders] == [1, 1, 1]
    assert release(share_a) and not release(share_a)  # share-a retired; a second release is a no-op
    s3.client.put_object(Bucket="models", Key="shared/model.joblib", Body=b"v4")
    share_d = resolve(uri, config)
    entry = share_d.parent
    assert not share_a.exists() and not (entry / f".lease-{share_a.name}").exists()
    assert [(f / "model.joblib").read_bytes() for f in (share_b, share_c, share_d)] == [b"v2", b"v3", b"v4"]
    for folder in (share_b, share_c, share_d):
        release(folder)


def test_an_unpacked_archive_folder_holds_only_the_archive_contents(s3: S3, tmp_path: Path) -> None:
    """`serving storage pull s3://.../model.zip out` leaves what the zip holds, as KServe's storage-initializer
    does in /mnt/models: no marker of ours in the model folder or in `out`; and a pull keeps no lease."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("model.joblib", b"m")
        zf.writestr("labels/classes.txt", b"a\nb")
    s3.client.put_object(Bucket="models", Key="archzip/model.zip", Body=buffer.getvalue())
    uri, config = "s3://models/archzip/model.zip", _config(tmp_path, s3.env())
    model_dir = resolve(uri, config)
    assert sorted(os.listdir(model_dir)) == ["labels", "model.joblib"]
    release(model_dir)
    out = tmp_path / "out"
    assert pull(uri, out, config) == (2, 4)
    assert sorted(os.listdir(out)) == ["labels", "model.joblib"]
    assert leases.held(model_dir) == 0
    # a cache written before the marker moved out of the folder: served as an archive, marker moved out
    (model_dir.parent / f".archive-{model_dir.name}").rename(model_dir / ".archive")
    assert resolve(uri, config) == model_dir and sorted(os.listdir(model_dir)) == ["labels", "model.joblib"]
    release(model_dir)


def test_secrets_are_scrubbed_as_whole_tokens_never_inside_words(tmp_path: Path) -> None:
    """A one-letter "secret" (AWS_SECRET_ACCESS_KEY=b) must not turn "unreachable" into "unreacha***le"; a real
    one is scrubbed wherever it stands as a token, percent-encoded too, never where it is part of a longer word."""
    config = _config(tmp_path, {})
    env = {"AWS_SECRET_ACCESS_KEY": "b", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    with pytest.raises(StorageError) as failure, translated("s3://models/b", env, config):
        raise ConnectionError("Could not connect to the endpoint URL: bucket b")
    assert failure.value.message == (
        "s3://models/b: endpoint unreachable: http://127.0.0.1:9 "
        "(Could not connect to the endpoint URL: bucket b)"
    )
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    env = {"AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": "s3cretvalue"}
    with pytest.raises(StorageError) as failure, translated("s3://models/iris", env, config):
        raise RuntimeError(
            f"key={secret}; as a URL: /{quote(secret, safe='')}/; token s3cretvalue, not s3cretvalues"
        )
    assert failure.value.message == (
        "s3://models/iris: RuntimeError: key=***; as a URL: /***/; token ***, not s3cretvalues"
    )


def test_partial_download_never_becomes_a_model_and_resumes(s3: S3, tmp_path: Path) -> None:
    """A Deny on one object fails the pull mid-way; after the Deny is lifted the pull completes, keeping the
    objects the failed attempt had fetched whole."""
    s3.client.put_object(Bucket="models", Key="halfway/a-good.bin", Body=b"a" * 1000)
    s3.client.put_object(Bucket="models", Key="halfway/z-denied.bin", Body=b"z" * 1000)
    deny = {
        "Effect": "Deny",
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::models/halfway/z-denied.bin",
    }
    s3.iam.put_user_policy(
        UserName="models",
        PolicyName="deny",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [deny]}),
    )
    config = _config(tmp_path, s3.env())
    try:
        with pytest.raises(StorageError, match="access denied"):
            resolve("s3://models/halfway", config)
        (entry,) = (tmp_path / "cache" / "objects").iterdir()
        assert [p.name for p in entry.iterdir() if p.is_dir()] == [next(entry.glob(".partial-*")).name]
        assert not (entry / "current").exists()
        # The two objects are fetched concurrently: whichever arrived whole before the Deny stopped the pull.
        kept = {p.name: p.stat().st_ino for p in next(entry.glob(".partial-*")).iterdir() if p.is_file()}
        assert "z-denied.bin" not in kept
    finally:
        s3.iam.delete_user_policy(UserName="models", PolicyName="deny")
    model_dir = resolve("s3://models/halfway", config)
    assert (model_dir / "z-denied.bin").read_bytes() == b"z" * 1000
    assert (model_dir / "a-good.bin").read_bytes() == b"a" * 1000
    for name, inode in kept.items():
        assert (model_dir / name).stat().st_ino == inode, (
            f"{name}, fetched before the failure, was fetched again"
        )


def test_a_full_disk_while_downloading_says_so_and_drops_the_cut_object(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk under the cache was reported as the SDK's OSError ("endpoint unreachable"). A tmpfs needs
    root and RLIMIT_FSIZE gives EFBIG, so the low-level write of one object is made to fail as a full disk
    does: part of the bytes land, then ENOSPC. The error names the cache folder and the download's size; the
    object cut short is removed (it only held the disk), the whole ones stay for the next attempt."""
    import builtins
    import errno

    import s3fs.core

    s3.client.put_object(Bucket="models", Key="full/a.bin", Body=b"a" * 1000)
    s3.client.put_object(Bucket="models", Key="full/b.bin", Body=b"b" * 1500)

    class FillsUp:
        def __init__(self, real: Any) -> None:
            self.real = real

        def __enter__(self) -> FillsUp:
            return self

        def __exit__(self, *exc: object) -> None:
            self.real.close()

        def write(self, data: bytes) -> int:
            self.real.write(data[:100])
            self.real.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        real = builtins.open(file, mode, *args, **kwargs)
        return FillsUp(real) if "w" in mode and str(file).endswith("b.bin") else real

    monkeypatch.setattr(s3fs.core, "open", open_, raising=False)
    config = _config(tmp_path, s3.env())
    with pytest.raises(StorageError) as failure:
        resolve("s3://models/full", config)
    (entry,) = (tmp_path / "cache" / "objects").iterdir()
    assert failure.value.message == (
        f"s3://models/full: no space left on device under {entry} (writing 2500 bytes)"
    )
    left = {p.name: p.stat().st_size for p in entry.rglob("*.bin")}
    assert left in ({}, {"a.bin": 1000}), left


def test_single_tarball_object_is_unpacked(s3: S3, tmp_path: Path) -> None:
    model = train_iris_sklearn(tmp_path / "tar" / "iris").parent
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(model, arcname="iris")
    s3.client.put_object(Bucket="models", Key="archives/iris.tar.gz", Body=buffer.getvalue())
    model_dir = resolve("s3://models/archives/iris.tar.gz", _config(tmp_path, s3.env()))
    assert (model_dir / "model.joblib").is_file()


def test_storage_pull_prints_the_same_errors(s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    ok = run_cli(
        "storage", "pull", "s3://models/iris", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "model.joblib").is_file() and "s3://models/iris" in ok.stdout
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    bad = run_cli(
        "storage", "pull", "s3://models/iris", str(tmp_path / "bad"), "--cache-dir", str(tmp_path / "c2")
    )
    assert bad.returncode != 0
    assert bad.stderr.startswith("error: s3://models/iris: access denied (403)"), bad.stderr
    assert "not-the-secret" not in bad.stderr


def test_serving_up_serves_an_s3_model_and_reports_a_wrong_key(s3: S3, tmp_path: Path) -> None:
    """End to end: credentials from the environment of `serving up`; a predictor `env` overriding the secret
    fails only its own revision, with the URI (never the secret) in lastFailureInfo."""
    from tests.support import wait_until
    from tests.up_support import apply_text, get_isvc, isvc_yaml, predict, serving_up, wait_for_traffic

    state = tmp_path / "state"
    wrong_env = "\n      env:\n      - name: AWS_SECRET_ACCESS_KEY\n        value: not-the-secret"
    with (
        serving_up(state, extra=("--cache-dir", str(tmp_path / "cache")), env=s3.env()) as server,
        server.client() as client,
    ):
        apply_text(server, state, isvc_yaml("from-s3", "s3://models/iris"), tmp_path, "ok.yaml")
        apply_text(server, state, isvc_yaml("bad-key", "s3://models/iris" + wrong_env), tmp_path, "bad.yaml")
        wait_for_traffic(server, state, "from-s3", lambda t: sorted(t.values()) == [100])
        response = predict(client, "from-s3")
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0] in (0, 1, 2)

        def failure() -> str:
            info = get_isvc(server, state, "bad-key").get("status", {}).get("modelStatus", {})
            return (info.get("lastFailureInfo") or {}).get("message", "")

        wait_until(failure, 30)
        assert "s3://models/iris: access denied (403)" in failure() and "not-the-secret" not in failure()


def test_kubernetes_storage_initializer_gets_kserve_secret_env() -> None:
    """On Kubernetes the service account's Secrets become the initializer's env as KServe renders them
    (pure rendering, checked against the official Deployment schema; no API server involved)."""
    import kubernetes_validate

    from serving.control.kubernetes.render import RenderSettings, deployment
    from serving.revision import Revision
    from serving.spec import parse

    secret = {
        "metadata": {
            "name": "s3creds",
            "annotations": {
                "serving.kserve.io/s3-endpoint": "minio.data:9000",
                "serving.kserve.io/s3-usehttps": "0",
                "serving.kserve.io/s3-region": "eu-west-1",
                "serving.kserve.io/s3-verifyssl": "0",
                "serving.kserve.io/s3-useanoncredential": "false",
            },
        },
        "stringData": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"},
    }
    gcs_secret = {"metadata": {"name": "gcs"}, "data": {"gcloud-application-credentials.json": "e30="}}
    isvc = parse(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "iris", "namespace": "ml"},
            "spec": {
                "predictor": {
                    "serviceAccountName": "models-sa",
                    "sklearn": {"storageUri": "s3://models/iris"},
                }
            },
        }
    )
    settings = RenderSettings(service_account_secrets={"models-sa": [secret, gcs_secret]})
    rendered = deployment(Revision.from_spec(isvc), "predictor", 1, settings)
    (init,) = rendered["spec"]["template"]["spec"]["initContainers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in init["env"]}
    assert env == {
        "AWS_ACCESS_KEY_ID": {"secretKeyRef": {"name": "s3creds", "key": "AWS_ACCESS_KEY_ID"}},
        "AWS_SECRET_ACCESS_KEY": {"secretKeyRef": {"name": "s3creds", "key": "AWS_SECRET_ACCESS_KEY"}},
        "S3_ENDPOINT": "minio.data:9000",
        "AWS_ENDPOINT_URL": "http://minio.data:9000",
        "S3_USE_HTTPS": "0",
        "S3_VERIFY_SSL": "0",
        "awsAnonymousCredential": "false",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "GOOGLE_APPLICATION_CREDENTIALS": "/var/secrets/gcloud-application-credentials.json",
    }
    assert {"name": "gcs-gcs", "mountPath": "/var/secrets", "readOnly": True} in init["volumeMounts"]
    assert init["args"][:3] == ["storage", "pull", "s3://models/iris"]
    kubernetes_validate.validate(rendered, "1.30", strict=True)
    other = deployment(Revision.from_spec(isvc), "predictor", 1, RenderSettings())
    assert other["spec"]["template"]["spec"]["initContainers"][0]["env"] == []


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_tls_failure_says_what_to_do(s3: S3, tmp_path: Path) -> None:
    """An S3 endpoint behind a certificate nobody trusts (a loopback TLS server with a self-signed cert)."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    cert, key = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        endpoint = f"https://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(StorageError) as failure:
            resolve(
                "s3://models/iris", _config(tmp_path, s3.env(AWS_ENDPOINT_URL=endpoint, AWS_MAX_ATTEMPTS="1"))
            )
    finally:
        server.shutdown()
        server.server_close()
    assert failure.value.message.startswith(f"s3://models/iris: TLS failure talking to {endpoint}"), (
        failure.value.message
    )
    assert "AWS_CA_BUNDLE" in failure.value.message


def test_https_to_a_plain_http_store_says_to_turn_https_off(s3: S3, tmp_path: Path) -> None:
    """KServe defaults to https; a MinIO on plain http answers TLS with WRONG_VERSION_NUMBER: the hint is
    s3-usehttps "0", not a CA bundle."""
    endpoint = s3.endpoint.replace("http://", "https://")
    with pytest.raises(StorageError) as failure:
        resolve(
            "s3://models/iris", _config(tmp_path, s3.env(AWS_ENDPOINT_URL=endpoint, AWS_MAX_ATTEMPTS="1"))
        )
    assert "speaks plain http; set S3_USE_HTTPS=0" in failure.value.message, failure.value.message


def test_kserves_virtual_bucket_switch_selects_virtual_hosted_addressing() -> None:
    """`serving.kserve.io/s3-usevirtualbucket` renders S3_USER_VIRTUAL_BUCKET, which nothing read."""
    from serving.storage.credentials import filesystem_options

    location = parse_location("s3://models/iris")
    env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    _, virtual = filesystem_options(location, {**env, "S3_USER_VIRTUAL_BUCKET": "true"}, 5)
    _, path_style = filesystem_options(location, env, 5)
    assert virtual["config_kwargs"]["s3"] == {"addressing_style": "virtual"}
    assert "s3" not in path_style["config_kwargs"]


def test_an_object_cut_short_at_its_full_size_is_fetched_again_not_served(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s3fs sizes a large object's file (over 50 MiB) before its parts arrive, so a download cut off (a dropped
    connection, a full disk, a kill) left a file of the right size holding zeros, which the next attempt took as
    whole and served. Here the first attempt's get writes a zero-filled file of the object's size, then fails as
    a dropped connection does; the next attempt must fetch it again."""
    import s3fs.core

    body = bytes(range(256)) * 8
    s3.client.put_object(Bucket="models", Key="cut/model.bin", Body=body)
    real_get = s3fs.core.S3FileSystem.get

    def cut(self: Any, rpath: Any, lpath: Any, *args: Any, **kwargs: Any) -> Any:
        for local in lpath if isinstance(lpath, list) else [lpath]:
            Path(local).write_bytes(bytes(len(body)))  # sized first, as s3fs does
        raise ConnectionError("the connection dropped")

    config = _config(tmp_path, s3.env())
    monkeypatch.setattr(s3fs.core.S3FileSystem, "get", cut)
    with pytest.raises(Exception, match="dropped"):
        resolve("s3://models/cut", config)
    monkeypatch.setattr(s3fs.core.S3FileSystem, "get", real_get)
    assert (resolve("s3://models/cut", config) / "model.bin").read_bytes() == body
