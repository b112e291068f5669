"""Azure Blob models from azurite (npm's `azurite-blob`, started once for this module on a free loopback port),
uploaded with azure-storage-blob, fetched by our provider: `az://CONTAINER/PATH` with a connection string and
KServe's `https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH` with AZURE_STORAGE_ACCESS_KEY (the endpoint
pointed at azurite with AZURE_STORAGE_BLOB_ENDPOINT, so nothing leaves the machine). azurite checks the
shared-key signature, so a wrong key is refused for real.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.storage import StorageConfig, StorageError, resolve
from tests.inprocess import run_cli, serving_inprocess
from tests.support import free_port, train_iris_sklearn, wait_until

blob = pytest.importorskip("azure.storage.blob")
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # azurite's
WRONG_KEY = "AAAA" + KEY[4:]
IRIS_ROW = [[6.8, 2.8, 4.8, 1.4]]


class Azure:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.service = blob.BlobServiceClient.from_connection_string(self.connection_string(KEY))
        self.container = self.service.create_container("models")

    def connection_string(self, key: str) -> str:
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};BlobEndpoint={self.endpoint};"

    def upload_folder(self, folder: Path, prefix: str) -> None:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            with path.open("rb") as data:
                self.container.upload_blob(
                    f"{prefix}/{path.relative_to(folder).as_posix()}", data, overwrite=True
                )


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azure]:
    binary = shutil.which("azurite-blob")
    if binary is None:
        print("SKIP reason: azurite-blob not found (npm install -g azurite; .ci/run does it when npm exists)")
        pytest.skip("azurite-blob not installed (npm install -g azurite)")
    port = free_port()
    location = tmp_path_factory.mktemp("azurite")
    process = subprocess.Popen(
        [
            binary,
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(location),
            "--skipApiVersionCheck",
            "--silent",
            "--loose",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _listening(port) or process.poll() is not None, 30, what="azurite")
        assert process.poll() is None, "azurite-blob exited at start"
        store = Azure(f"http://127.0.0.1:{port}/{ACCOUNT}")
        store.upload_folder(train_iris_sklearn(tmp_path_factory.mktemp("iris") / "iris").parent, "iris")
        yield store
    finally:
        process.terminate()
        process.wait(10)


def _config(tmp_path: Path, env: dict[str, str]) -> StorageConfig:
    return StorageConfig(cache_dir=tmp_path / "cache", env=env, timeout_s=5)


def test_az_uri_with_a_connection_string_is_fetched_and_served(azure: Azure, tmp_path: Path) -> None:
    model_dir = resolve(
        "az://models/iris",
        _config(tmp_path, {"AZURE_STORAGE_CONNECTION_STRING": azure.connection_string(KEY)}),
    )
    with serving_inprocess(["serve", "--model-dir", str(model_dir), "--name", "iris"]) as server:
        response = httpx.post(
            f"{server.url}/v1/models/iris:predict", json={"instances": IRIS_ROW}, timeout=10
        )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0] in (0, 1, 2)


def test_kserve_https_blob_url_with_an_access_key(azure: Azure, tmp_path: Path) -> None:
    env = {"AZURE_STORAGE_ACCESS_KEY": KEY, "AZURE_STORAGE_BLOB_ENDPOINT": azure.endpoint}
    model_dir = resolve(f"https://{ACCOUNT}.blob.core.windows.net/models/iris", _config(tmp_path, env))
    assert [p.name for p in model_dir.iterdir()] == ["model.joblib"]


def test_kserve_https_blob_url_with_a_sas_token_over_an_http_endpoint(azure: Azure, tmp_path: Path) -> None:
    """A SAS token (or anonymous access) with an http AZURE_STORAGE_BLOB_ENDPOINT (an emulator, a private
    endpoint): its scheme and path used to be dropped (`https://HOST` without the account), failing after
    ~90 s of retries with S3's advice."""
    from datetime import UTC, datetime, timedelta

    sas = blob.generate_container_sas(
        ACCOUNT,
        "models",
        account_key=KEY,
        permission=blob.ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    env = {"AZURE_STORAGE_SAS_TOKEN": sas, "AZURE_STORAGE_BLOB_ENDPOINT": azure.endpoint}
    model_dir = resolve(f"https://{ACCOUNT}.blob.core.windows.net/models/iris", _config(tmp_path, env))
    assert [p.name for p in model_dir.iterdir()] == ["model.joblib"]


def test_a_tls_failure_gives_azures_advice_not_s3s() -> None:
    import ssl

    from serving.storage.object_store import describe

    plain = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)")
    said = describe(plain, "127.0.0.1:10000", "https")
    assert "AZURE_STORAGE_BLOB_ENDPOINT as http://" in said and "S3_USE_HTTPS" not in said
    assert "S3_USE_HTTPS=0" in describe(plain, "127.0.0.1:9000", "s3")


@pytest.mark.parametrize("form", ["connection-string", "access-key"])
def test_wrong_key_is_access_denied_naming_the_uri_never_the_secret(
    azure: Azure, tmp_path: Path, form: str
) -> None:
    if form == "connection-string":
        uri, env = "az://models/iris", {"AZURE_STORAGE_CONNECTION_STRING": azure.connection_string(WRONG_KEY)}
    else:
        uri = f"https://{ACCOUNT}.blob.core.windows.net/models/iris"
        env = {"AZURE_STORAGE_ACCESS_KEY": WRONG_KEY, "AZURE_STORAGE_BLOB_ENDPOINT": azure.endpoint}
    with pytest.raises(StorageError) as failure:
        resolve(uri, _config(tmp_path, env))
    message = failure.value.message
    assert message.startswith(f"{uri}: access denied (403)"), message
    assert WRONG_KEY not in message and KEY not in message


def test_missing_container_and_account(azure: Azure, tmp_path: Path) -> None:
    env = {"AZURE_STORAGE_CONNECTION_STRING": azure.connection_string(KEY)}
    with pytest.raises(StorageError, match="az://nocontainer/iris: no such bucket, key or prefix"):
        resolve("az://nocontainer/iris", _config(tmp_path, env))
    with pytest.raises(StorageError, match="no storage account"):
        resolve("az://models/iris", _config(tmp_path, {}))


def test_second_revision_hits_the_cache_and_a_changed_blob_is_fetched_again(
    azure: Azure,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    azure.upload_folder(train_iris_sklearn(tmp_path / "seed" / "iris").parent, "changing")
    config = _config(tmp_path, {"AZURE_STORAGE_CONNECTION_STRING": azure.connection_string(KEY)})
    first = resolve("az://models/changing", config)
    (first / "sentinel").write_text("a re-download would not keep this file")
    with caplog.at_level(logging.INFO, logger="serving.storage"):
        assert resolve("az://models/changing", config) == first
    assert (first / "sentinel").exists() and "unchanged" in caplog.text
    other = train_iris_sklearn(tmp_path / "other", c=0.01)
    with other.open("rb") as data:
        azure.container.upload_blob("changing/model.joblib", data, overwrite=True)  # a new ETag
    changed = resolve("az://models/changing", config)
    assert changed != first and (changed / "model.joblib").read_bytes() == other.read_bytes()


def test_storage_pull_from_azure(azure: Azure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure.connection_string(WRONG_KEY))
    bad = run_cli(
        "storage", "pull", "az://models/iris", str(tmp_path / "x"), "--cache-dir", str(tmp_path / "c")
    )
    assert bad.returncode != 0
    assert bad.stderr.startswith("error: az://models/iris: access denied (403)"), bad.stderr
    assert WRONG_KEY not in bad.stderr


def test_kserves_other_azure_forms_dns_zone_blob_and_files() -> None:
    """KServe's storage-initializer also reads https://ACCOUNT.zNN.blob.storage.azure.net/... as Azure Blob
    (with the AZURE_* credentials, its own host), and refuses nothing for Azure Files; here an Azure Files share
    is refused at fetch and warned at apply, never fetched as a plain https GET that answers 4xx."""
    from serving.spec import parse
    from serving.storage import StorageRefused
    from serving.storage.credentials import filesystem_options, is_object_uri, parse_location

    zoned = "https://acct.z12.blob.storage.azure.net/models/iris"
    assert is_object_uri(zoned)
    _, options = filesystem_options(parse_location(zoned), {"AZURE_STORAGE_SAS_TOKEN": "sv=x"}, 5)
    assert options["account_name"] == "acct" and options["account_host"] == "acct.z12.blob.storage.azure.net"
    files = "https://acct.file.core.windows.net/share/iris"
    with pytest.raises(StorageRefused, match="Azure Files share is not fetched here"):
        resolve(files, StorageConfig(cache_dir=Path("/nonexistent")))
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "f"},
        "spec": {"predictor": {"sklearn": {"storageUri": files}}},
    }
    assert any("Azure Files share" in w for w in parse(doc).warnings())
