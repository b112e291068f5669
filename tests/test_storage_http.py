"""Storage over http(s): a real threaded http.server on 127.0.0.1 serves a model file, a tar.gz and a zip.

The server counts requests and answers conditional GETs (ETag / Last-Modified) with 304, so the tests can
tell "reused" from "re-downloaded" on the server side.
"""

from __future__ import annotations

import hashlib
import io
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from serving.repository import discover
from serving.storage import StorageConfig, StorageError, StorageRefused, fingerprint, release, resolve
from tests.support import REPO, free_port


class ArtifactServer:
    """path -> bytes; ETag is the content hash, Last-Modified bumps on every change."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.hits: Counter[tuple[str, str, int]] = Counter()
        self.validators = True
        self.send_length = True  # False: body delimited by closing the connection (HTTP/1.0)
        self.required: dict[str, str] = {}  # request headers without which the answer is 401
        self._version = 1_700_000_000
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> ArtifactServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def put(self, path: str, data: bytes) -> str:
        self._version += 10
        self.files[path] = (data, formatdate(self._version, usegmt=True))
        return f"{self.url}{path}"

    def count(self, path: str, status: int = 200, method: str = "GET") -> int:
        return self.hits[(method, path, status)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self.answer(body=False)

            def do_GET(self) -> None:
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                path = self.path.split("?", 1)[0]
                if any(self.headers.get(k) != v for k, v in server.required.items()):
                    return self.reply(401, b"unauthorized", {}, body)
                if path not in server.files:
                    return self.reply(404, b"not found", {}, body)
                data, modified = server.files[path]
                etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
                headers = {"ETag": etag, "Last-Modified": modified} if server.validators else {}
                if server.validators and self.headers.get("If-None-Match") == etag:
                    return self.reply(304, b"", headers, False)
                self.reply(200, data, headers, body)

            def reply(self, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
                server.hits[(self.command, self.path.split("?", 1)[0], status)] += 1
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if server.send_length:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        return Handler


@pytest.fixture
def server() -> Iterator[ArtifactServer]:
    with ArtifactServer() as srv:
        yield srv


@pytest.fixture
def config(tmp_path: Path) -> StorageConfig:
    return StorageConfig(cache_dir=tmp_path / "cache", timeout_s=5.0, max_download_bytes=1 << 20)


def tgz(files: dict[str, bytes], top: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zipped(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_plain_file_downloaded_once_then_304(server: ArtifactServer, config: StorageConfig) -> None:
    url = server.put("/models/iris/model.joblib", b"model-v1")
    folder = resolve(url, config)
    assert [p.name for p in folder.iterdir()] == ["model.joblib"]
    assert (folder / "model.joblib").read_bytes() == b"model-v1"
    assert folder.parent.parent == config.cache_dir  # cache_dir/<sha256(url)[:16]>/<content>/
    assert resolve(url, config) == folder
    assert server.count("/models/iris/model.joblib", 200) == 1
    assert server.count("/models/iris/model.joblib", 304) == 1
    meta = (folder.parent / "meta.json").read_text()
    assert hashlib.sha256(b"model-v1").hexdigest() in meta  # checksum of the content is recorded


def test_changed_content_is_refetched(server: ArtifactServer, config: StorageConfig) -> None:
    url = server.put("/m/model.onnx", b"v1")
    first = resolve(url, config)
    fp1 = fingerprint(url, config)
    server.put("/m/model.onnx", b"version two")
    assert fingerprint(url, config) != fp1
    second = resolve(url, config)
    assert second != first and (second / "model.onnx").read_bytes() == b"version two"
    assert first.is_dir()  # the previous content stays for replicas still using it
    assert server.count("/m/model.onnx", 200) == 2


def test_a_content_a_revision_still_uses_is_never_pruned(
    server: ArtifactServer, config: StorageConfig
) -> None:
    """Three revisions resolve one URL, the artifact changed between them: the first one's folder stays (its
    replicas may restart or scale up from it) until it is released; then the next change prunes it, and only it."""
    url = server.put("/shared/model.joblib", b"v1")
    first = resolve(url, config)
    server.put("/shared/model.joblib", b"v2")
    second = resolve(url, config)
    server.put("/shared/model.joblib", b"v3")
    third = resolve(url, config)
    assert (first / "model.joblib").read_bytes() == b"v1", "a folder in use was pruned"
    release(first)
    server.put("/shared/model.joblib", b"v4")
    fourth = resolve(url, config)
    assert not first.exists()
    assert [(f / "model.joblib").read_bytes() for f in (second, third, fourth)] == [b"v2", b"v3", b"v4"]
    for folder in (second, third, fourth):
        release(folder)


def test_a_lease_held_by_another_process_keeps_its_folder_until_that_process_exits(
    server: ArtifactServer, config: StorageConfig, tmp_path: Path
) -> None:
    """Two processes sharing a cache: a folder another one resolved (and holds) survives our newer downloads;
    once that process exits, however it exits, its lease is gone and the next change prunes the folder."""
    url = server.put("/other/model.joblib", b"v1")
    holder = (
        "import sys; from pathlib import Path; from serving.storage import StorageConfig, resolve\n"
        "print(resolve(sys.argv[1], StorageConfig(cache_dir=Path(sys.argv[2]))), flush=True)\n"
        "sys.stdin.read()\n"  # holds its lease until we close its stdin
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder, url, str(config.cache_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        theirs = Path(child.stdout.readline().strip())
        server.put("/other/model.joblib", b"v2")
        release(resolve(url, config))
        server.put("/other/model.joblib", b"v3")
        release(resolve(url, config))
        assert (theirs / "model.joblib").read_bytes() == b"v1", "pruned while another process held it"
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    server.put("/other/model.joblib", b"v4")
    newest = resolve(url, config)
    assert not theirs.exists() and [p.name for p in newest.parent.iterdir() if p.is_dir()] == [newest.name]
    release(newest)


def test_tar_gz_unpacked_and_single_top_folder_served(server: ArtifactServer, config: StorageConfig) -> None:
    url = server.put("/archives/iris.tar.gz", tgz({"model.joblib": b"m", "labels.txt": b"a\nb"}, top="iris"))
    folder = resolve(url, config)
    assert folder.name == "iris" and sorted(p.name for p in folder.iterdir()) == [
        "labels.txt",
        "model.joblib",
    ]
    assert len(discover(folder, name="svc")) == 1  # one model, not a repository of sub-models
    assert resolve(url, config) == folder and server.count("/archives/iris.tar.gz", 200) == 1


def test_zip_unpacked(server: ArtifactServer, config: StorageConfig) -> None:
    url = server.put("/archives/model.zip", zipped({"model.onnx": b"onnx", "sub/extra.txt": b"x"}))
    folder = resolve(url, config)
    assert (folder / "model.onnx").read_bytes() == b"onnx" and (folder / "sub" / "extra.txt").exists()


def test_server_without_validators_reuses_identical_bytes(
    server: ArtifactServer, config: StorageConfig
) -> None:
    server.validators = False
    url = server.put("/archives/m.tgz", tgz({"model.joblib": b"m"}))
    first = resolve(url, config)
    assert resolve(url, config) == first  # re-downloaded (no way to ask), but not unpacked again
    assert server.count("/archives/m.tgz", 200) == 2


def test_malicious_tar_over_http_refused(
    server: ArtifactServer, config: StorageConfig, tmp_path: Path
) -> None:
    url = server.put("/evil.tar.gz", tgz({"../evil": b"owned", "model.joblib": b"m"}))
    with pytest.raises(StorageRefused, match=r"'\.\./evil' escapes"):
        resolve(url, config)
    assert not list(tmp_path.rglob("evil"))
    entry = next(config.cache_dir.iterdir())
    assert sorted(p.name for p in entry.iterdir()) == [".lock"]  # no model, no half download left behind


def test_404_and_connection_refused(server: ArtifactServer, config: StorageConfig) -> None:
    with pytest.raises(StorageError, match=r"/missing/model.joblib: HTTP 404 Not Found"):
        resolve(f"{server.url}/missing/model.joblib", config)
    dead = f"http://127.0.0.1:{free_port()}/model.joblib"
    with pytest.raises(StorageError, match=r"model.joblib: cannot connect: .*refused"):
        resolve(dead, config)
    with pytest.raises(StorageError, match="cannot connect"):
        fingerprint(dead, config)


def test_timeout_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (kernel backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/model.joblib"
        config = StorageConfig(cache_dir=tmp_path / "cache", timeout_s=0.3)
        with pytest.raises(StorageError, match=r"timed out after 0.3s"):
            resolve(url, config)


def test_too_big_refused(server: ArtifactServer, tmp_path: Path) -> None:
    url = server.put("/big/model.onnx", b"x" * 5000)
    config = StorageConfig(cache_dir=tmp_path / "cache", max_download_bytes=4096)
    # a refusal by policy: `serving up` does not fetch 2 GiB again and again on a backoff (apply again instead)
    with pytest.raises(StorageRefused, match="larger than the download limit of 4096 bytes"):
        resolve(url, config)


def test_too_big_without_content_length_stops_streaming(server: ArtifactServer, tmp_path: Path) -> None:
    server.send_length = False
    url = server.put("/big/model.onnx", b"x" * 50_000)
    config = StorageConfig(cache_dir=tmp_path / "cache", max_download_bytes=4096)
    with pytest.raises(StorageRefused, match="larger than the download limit of 4096 bytes"):
        resolve(url, config)
    entry = next(config.cache_dir.iterdir())
    assert sorted(p.name for p in entry.iterdir()) == [".lock"]  # the partial download is gone


def test_concurrent_resolves_download_once(server: ArtifactServer, config: StorageConfig) -> None:
    url = server.put("/m/model.joblib", b"shared")
    with ThreadPoolExecutor(4) as pool:
        folders = set(pool.map(lambda _: resolve(url, config), range(4)))
    assert len(folders) == 1
    assert server.count("/m/model.joblib", 200) == 1 and server.count("/m/model.joblib", 304) == 3


def test_crash_leftovers_and_broken_metadata_recovered(server: ArtifactServer, config: StorageConfig) -> None:
    url = server.put("/m/model.joblib", b"v1")
    folder = resolve(url, config)
    entry = folder.parent
    (entry / ".tmp-crashed").mkdir()
    (entry / ".tmp-crashed" / "download").write_bytes(b"half a mod")
    assert resolve(url, config) == folder and not (entry / ".tmp-crashed").exists()
    (entry / "meta.json").write_bytes(b"{not json")  # e.g. a crash on a filesystem without atomic rename
    assert resolve(url, config) == folder  # re-downloaded (can't trust the cache), same bytes, same folder
    assert server.count("/m/model.joblib", 200) == 2


def test_unreachable_server_falls_back_to_cached_copy(server: ArtifactServer, config: StorageConfig) -> None:
    url = server.put("/m/model.joblib", b"cached")
    folder = resolve(url, config)
    server.httpd.shutdown()
    server.httpd.server_close()
    assert resolve(url, config) == folder  # a restart while the artifact server is down still serves


def test_a_copy_fetched_with_credentials_is_never_handed_to_a_fetch_without_them(
    server: ArtifactServer, tmp_path: Path
) -> None:
    """The cache is keyed by the URL and its host's headers (KServe's `<host>-headers`, a Secret's token), as
    object stores' copies are by endpoint and keys: with the server down, a service it would have refused
    gets an error, not what another service's token fetched (and no validators of that copy are sent)."""
    url = server.put("/private/model.joblib", b"private")
    host = "127.0.0.1-headers"
    authed = StorageConfig(
        cache_dir=tmp_path / "cache", timeout_s=5.0, env={host: '{"Authorization": "Bearer t"}'}
    )
    anonymous = StorageConfig(cache_dir=tmp_path / "cache", timeout_s=5.0, env={})
    private = resolve(url, authed)
    server.httpd.shutdown()
    server.httpd.server_close()
    assert resolve(url, authed) == private  # its own copy, while the server is down
    with pytest.raises(StorageError) as refused:
        resolve(url, anonymous)
    assert "cannot connect" in refused.value.message or "Connection refused" in refused.value.message


def test_credentials_and_query_not_in_messages(server: ArtifactServer, config: StorageConfig) -> None:
    url = server.url.replace("http://", "http://user:s3cret@") + "/missing/model.joblib?X-Amz-Signature=abc"
    with pytest.raises(StorageError) as info:
        resolve(url, config)
    assert "s3cret" not in info.value.message and "abc" not in info.value.message
    assert "404" in info.value.message


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "serving.cli", "storage", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )


def test_cli_pull(server: ArtifactServer, tmp_path: Path) -> None:
    url = server.put("/archives/iris.tgz", tgz({"model.joblib": b"m", "meta/info.txt": b"i"}))
    dest = tmp_path / "mnt" / "models"
    done = run_cli("pull", url, str(dest), "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (dest / "model.joblib").read_bytes() == b"m" and (dest / "meta" / "info.txt").exists()
    assert "2 files" in done.stdout

    claim = tmp_path / "pvcs" / "claim" / "iris"
    claim.mkdir(parents=True)
    (claim / "model.onnx").write_bytes(b"o")
    dest2 = tmp_path / "dest2"
    done = run_cli(
        "pull",
        "pvc://claim/iris",
        str(dest2),
        "--pvc-root",
        str(tmp_path / "pvcs"),
        "--cache-dir",
        str(tmp_path / "cache"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (dest2 / "model.onnx").read_bytes() == b"o"


@pytest.mark.parametrize(
    "uri,message",
    [
        (
            "hdfs://namenode/model",
            "error: hdfs://namenode/model: storage scheme 'hdfs://' is not supported here",
        ),
        ("pvc://claim/../../etc", "error: pvc://claim/../../etc: path escapes persistent volume claim"),
        ("HTTP404", "HTTP 404 Not Found"),
    ],
)
def test_cli_pull_errors_are_one_line(server: ArtifactServer, tmp_path: Path, uri: str, message: str) -> None:
    uri = f"{server.url}/nope.joblib" if uri == "HTTP404" else uri
    (tmp_path / "pvcs" / "claim").mkdir(parents=True)
    done = run_cli(
        "pull",
        uri,
        str(tmp_path / "dest"),
        "--pvc-root",
        str(tmp_path / "pvcs"),
        "--cache-dir",
        str(tmp_path / "cache"),
        cwd=tmp_path,
    )
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr
