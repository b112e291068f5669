"""Storage: local paths, file://, pvc://, allowed roots, traversal, unsupported schemes, archive safety."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from serving.errors import ArtifactError, ArtifactRefused
from serving.storage import StorageConfig, StorageError, StorageRefused, fingerprint, resolve
from serving.storage.archives import unpack


@pytest.fixture
def config(tmp_path: Path) -> StorageConfig:
    return StorageConfig(cache_dir=tmp_path / "cache", pvc_root=tmp_path / "pvc", base_dir=tmp_path / "yamls")


def write(path: Path, data: bytes = b"model") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_local_directory_absolute_relative_and_file_uri(tmp_path: Path, config: StorageConfig) -> None:
    model = tmp_path / "yamls" / "models" / "iris"
    write(model / "model.joblib")
    assert resolve(str(model), config) == model
    assert resolve("models/iris", config) == model  # relative to base_dir (the YAML's folder)
    assert resolve("./models/../models/iris", config) == model
    assert resolve(f"file://{model}", config) == model
    assert resolve("file://models/iris", config) == model
    assert resolve(f"file://localhost{model}", config) == model


def test_single_model_file_alone_is_served_from_its_folder(tmp_path: Path, config: StorageConfig) -> None:
    model = write(tmp_path / "alone" / "model.onnx")
    write(tmp_path / "alone" / "README.md", b"notes")  # not a model file: doesn't count
    assert resolve(str(model), config) == model.parent


def test_single_model_file_among_others_gets_its_own_folder(tmp_path: Path, config: StorageConfig) -> None:
    chosen = write(tmp_path / "many" / "a.joblib", b"A")
    write(tmp_path / "many" / "b.joblib", b"B")
    folder = resolve(str(chosen), config)
    assert folder.is_relative_to(config.cache_dir)
    assert [p.name for p in folder.iterdir()] == ["a.joblib"]
    assert (folder / "a.joblib").read_bytes() == b"A"
    # the model file is replaced (new inode): resolving again stages the new content
    chosen.unlink()
    write(chosen, b"A2")
    assert resolve(str(chosen), config) == folder
    assert (folder / "a.joblib").read_bytes() == b"A2"


def test_missing_path_names_the_uri(config: StorageConfig) -> None:
    with pytest.raises(StorageError, match=r"nothing/here: no such file or directory") as info:
        resolve("nothing/here", config)
    assert isinstance(info.value, ArtifactError) and info.value.status_code == 400


def test_pvc_mapping(tmp_path: Path, config: StorageConfig) -> None:
    model = tmp_path / "pvc" / "models-claim" / "sklearn" / "iris"
    write(model / "model.joblib")
    assert resolve("pvc://models-claim/sklearn/iris", config) == model
    with pytest.raises(StorageError, match="pvc-root"):
        resolve("pvc://models-claim/sklearn/iris", StorageConfig(cache_dir=tmp_path / "c"))


@pytest.mark.parametrize(
    "uri",
    [
        "pvc://models-claim/../other-claim/secret",
        "pvc://models-claim/sklearn/../../../outside",
        "pvc://../outside",
        "pvc://models-claim//etc/passwd",
        "pvc://models-claim/escape-link",
    ],
)
def test_pvc_traversal_refused(tmp_path: Path, config: StorageConfig, uri: str) -> None:
    write(tmp_path / "pvc" / "models-claim" / "sklearn" / "iris" / "model.joblib")
    write(tmp_path / "pvc" / "other-claim" / "secret" / "model.joblib")
    write(tmp_path / "outside" / "model.joblib")
    (tmp_path / "pvc" / "models-claim" / "escape-link").symlink_to(tmp_path / "outside")
    with pytest.raises(StorageRefused) as info:
        resolve(uri, config)
    assert info.value.status_code == 403 and uri in info.value.message


def test_a_file_under_a_model_folder_that_links_out_is_refused(tmp_path: Path, config: StorageConfig) -> None:
    """A real folder inside the claim (or the allowed roots) whose `model.joblib` is a symlink to a file
    outside: the files a model loads are confined as its path is. A link that stays inside is fine."""
    write(tmp_path / "outside" / "model.joblib", b"secret")
    folder = tmp_path / "pvc" / "claim" / "lnk"
    folder.mkdir(parents=True)
    (folder / "model.joblib").symlink_to(tmp_path / "outside" / "model.joblib")
    with pytest.raises(
        StorageRefused, match="model.joblib is a symlink that leads out of persistent volume claim"
    ):
        resolve("pvc://claim/lnk", config)
    inside = write(tmp_path / "pvc" / "claim" / "shared" / "model.joblib")
    within = tmp_path / "pvc" / "claim" / "ok"
    within.mkdir()
    (within / "model.joblib").symlink_to(inside)
    assert resolve("pvc://claim/ok", config) == within
    roots = StorageConfig(cache_dir=tmp_path / "cache", allowed_roots=(tmp_path / "pvc",))
    with pytest.raises(StorageRefused, match="leads out of the allowed model roots"):
        resolve(str(folder), roots)


def test_allowed_roots(tmp_path: Path) -> None:
    inside = write(tmp_path / "models" / "iris" / "model.joblib").parent
    outside = write(tmp_path / "elsewhere" / "model.joblib").parent
    (tmp_path / "models" / "sneaky").symlink_to(outside)
    config = StorageConfig(cache_dir=tmp_path / "cache", allowed_roots=(tmp_path / "models",))
    assert resolve(str(inside), config) == inside
    for uri in (
        str(outside),
        f"file://{outside}",
        str(tmp_path / "models" / ".." / "elsewhere"),
        str(tmp_path / "models" / "sneaky"),
    ):
        with pytest.raises(ArtifactRefused, match="outside the allowed model roots"):
            resolve(uri, config)


@pytest.mark.parametrize(
    "uri,scheme",
    [
        # s3://, gs:// and az:// are fetched (tests/test_storage_{s3,gcs,azure}.py, against loopback servers)
        ("hdfs://namenode/model", "hdfs"),
        ("webhdfs://namenode/model", "webhdfs"),
        ("wasbs://container@account.blob.core.windows.net/model", "wasbs"),
        ("hf://org/model", "hf"),
    ],
)
def test_unsupported_schemes_are_named(config: StorageConfig, uri: str, scheme: str) -> None:
    with pytest.raises(StorageError, match=rf"'{scheme}://' is not supported here"):
        resolve(uri, config)
    with pytest.raises(StorageError, match="not supported"):
        fingerprint(uri, config)


def test_empty_uri(config: StorageConfig) -> None:
    with pytest.raises(StorageError, match="empty"):
        resolve("  ", config)


def test_local_fingerprint_changes_with_content(tmp_path: Path, config: StorageConfig) -> None:
    model = write(tmp_path / "fp" / "model.joblib", b"one")
    first = fingerprint(str(model.parent), config)
    assert fingerprint(str(model.parent), config) == first
    file_first = fingerprint(f"file://{model}", config)
    model.write_bytes(b"two!")
    assert fingerprint(str(model.parent), config) != first
    assert fingerprint(f"file://{model}", config) != file_first
    changed = fingerprint(str(model.parent), config)
    write(tmp_path / "fp" / "extra.json", b"{}")
    assert fingerprint(str(model.parent), config) != changed


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "members,reason",
    [
        ([(tarfile.TarInfo("../evil"), b"x")], r"'\.\.'"),
        ([(tarfile.TarInfo("ok/../../evil"), b"x")], r"'\.\.'"),
        ([(tarfile.TarInfo("/tmp/evil"), b"x")], "absolute path"),
        ([(link("out", "../../"), b"")], "escapes"),
        ([(link("out", "/etc/passwd"), b"")], "absolute path"),
        ([(link("hard", "../evil", tarfile.LNKTYPE), b"")], r"'\.\.'|escapes"),
        # a chain of links that is only outside once resolved: tarfile's data filter catches it
        (
            [
                (tarfile.TarInfo("a/b/f"), b"x"),
                (link("a/up", ".."), b""),
                (link("a/b/up2", "../up/.."), b""),
                (tarfile.TarInfo("a/b/up2/evil"), b"x"),
            ],
            "unsafe|escapes|outside",
        ),
        ([(link("dev", "", tarfile.CHRTYPE), b"")], "device"),
    ],
)
def test_malicious_tar_refused_and_nothing_written_outside(tmp_path: Path, members, reason: str) -> None:
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(tar_bytes(members))
    dest = tmp_path / "work" / "dest"
    dest.mkdir(parents=True)
    with pytest.raises(StorageRefused, match=reason):
        unpack("http://host/bad.tar.gz", archive, dest, "tar", 1 << 20)
    assert not (tmp_path / "work" / "evil").exists() and not (tmp_path / "evil").exists()
    assert sorted(os.listdir(tmp_path)) == ["bad.tar.gz", "work"]


def test_zip_slip_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model.joblib", b"fine")
        zf.writestr("../evil.txt", b"gotcha")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(StorageRefused, match="escapes"):
        unpack("http://host/bad.zip", archive, dest, "zip", 1 << 20)
    assert not (tmp_path / "evil.txt").exists() and list(dest.iterdir()) == []  # checked before writing


def test_archive_bomb_capped(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.onnx", b"\0" * (1 << 20))  # 1 MiB of zeros compresses to ~1 KiB
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(StorageRefused, match="unpacks to more than"):
        unpack("http://host/bomb.zip", archive, dest, "zip", 16 * 1024)


def test_corrupt_archive_is_a_clear_error(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tgz"
    archive.write_bytes(b"this is not gzip")
    with pytest.raises(StorageError, match="bad tar archive"):
        unpack("http://host/broken.tgz", archive, tmp_path, "tar", 1 << 20)
