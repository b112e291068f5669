"""gs:// models from gcp-storage-emulator (in-process server on a free loopback port), uploaded with
google-cloud-storage, fetched by our provider with KServe's conventions (STORAGE_EMULATOR_HOST points the
client at the emulator; no GOOGLE_APPLICATION_CREDENTIALS means anonymous, as for a public bucket).

What the emulator cannot show: it accepts any token, so a wrong-but-well-formed service-account key is not
refused here; an unreadable or malformed key file is (checked before any request is made). An unreachable
endpoint is tested with S3 (same error translation): gcsfs retries six times with backoff (~30 s) first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.storage import StorageConfig, StorageError, fingerprint, resolve
from tests.inprocess import run_cli, serving_inprocess
from tests.support import free_port, train_iris_sklearn

emulator = pytest.importorskip("gcp_storage_emulator.server")
gcs = pytest.importorskip("google.cloud.storage")
IRIS_ROW = [[6.8, 2.8, 4.8, 1.4]]


class GCS:
    def __init__(self, endpoint: str) -> None:
        from google.auth.credentials import AnonymousCredentials

        self.endpoint = endpoint
        self.client = gcs.Client(
            project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
        )
        self.bucket = self.client.bucket("models")

    def env(self, **extra: str) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint, **extra}

    def upload_folder(self, folder: Path, prefix: str) -> None:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.bucket.blob(f"{prefix}/{path.relative_to(folder).as_posix()}").upload_from_filename(
                str(path)
            )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCS]:
    port = free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket="models")
    server.start()
    try:
        store = GCS(f"http://127.0.0.1:{port}")
        model = train_iris_sklearn(tmp_path_factory.mktemp("iris") / "iris").parent
        store.upload_folder(model, "iris")
        yield store
    finally:
        server.stop()


def _config(tmp_path: Path, env: dict[str, str]) -> StorageConfig:
    return StorageConfig(cache_dir=tmp_path / "cache", env=env, timeout_s=5)


def test_gcs_folder_is_fetched_and_served(store: GCS, tmp_path: Path) -> None:
    model_dir = resolve("gs://models/iris", _config(tmp_path, store.env()))
    assert [p.name for p in model_dir.iterdir()] == ["model.joblib"]
    with serving_inprocess(["serve", "--model-dir", str(model_dir), "--name", "iris"]) as server:
        response = httpx.post(
            f"{server.url}/v1/models/iris:predict", json={"instances": IRIS_ROW}, timeout=10
        )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0] in (0, 1, 2)


@pytest.mark.parametrize(
    ("uri", "key_file", "expected"),
    [
        ("gs://models/iris", "missing.json", "GOOGLE_APPLICATION_CREDENTIALS names"),
        (
            "gs://models/iris",
            "malformed.json",
            "malformed.json: a service_account key without client_email, token_uri",
        ),
        (
            "gs://models/iris",
            "other.json",
            "other.json: not a Google credentials file (its type must be one of",
        ),
        ("gs://no-such-bucket/iris", None, "no such bucket, key or prefix"),
        ("gs://models/nothing-here", None, "no such bucket, key or prefix"),
    ],
)
def test_clear_errors(store: GCS, tmp_path: Path, uri: str, key_file: str | None, expected: str) -> None:
    env = store.env()
    if key_file:
        (tmp_path / "malformed.json").write_text(
            '{"type": "service_account", "private_key": "SECRET-KEY-TEXT"}'
        )
        (tmp_path / "other.json").write_text('{"token": "SECRET-KEY-TEXT"}')
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(tmp_path / key_file)
    with pytest.raises(StorageError) as failure:
        resolve(uri, _config(tmp_path, env))
    assert expected in failure.value.message, failure.value.message
    assert "SECRET-KEY-TEXT" not in failure.value.message


def test_second_revision_hits_the_cache_and_a_changed_object_is_fetched_again(
    store: GCS,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = train_iris_sklearn(tmp_path / "seed" / "iris").parent
    store.upload_folder(model, "changing")
    config = _config(tmp_path, store.env())
    first = resolve("gs://models/changing", config)
    (first / "sentinel").write_text("a re-download would not keep this file")
    before = fingerprint("gs://models/changing", config)
    with caplog.at_level(logging.INFO, logger="serving.storage"):
        again = resolve("gs://models/changing", config)
    assert again == first and (again / "sentinel").exists() and "unchanged" in caplog.text
    other = train_iris_sklearn(tmp_path / "other", c=0.01)
    store.bucket.blob("changing/model.joblib").upload_from_filename(str(other))  # a new generation
    changed = resolve("gs://models/changing", config)
    assert changed != first and (changed / "model.joblib").read_bytes() == other.read_bytes()
    assert fingerprint("gs://models/changing", config) != before


def test_storage_pull_from_gcs(store: GCS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", store.endpoint)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    ok = run_cli(
        "storage",
        "pull",
        "gs://models/iris/model.joblib",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "c"),
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "model.joblib").is_file()
    missing = run_cli(
        "storage", "pull", "gs://models/absent", str(tmp_path / "x"), "--cache-dir", str(tmp_path / "c")
    )
    assert missing.returncode != 0
    assert missing.stderr.startswith("error: gs://models/absent: no such bucket, key or prefix"), (
        missing.stderr
    )
