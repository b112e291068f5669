"""Turn a `storageUri` into a local model directory (KServe's storage initializer, done on this machine).

Schemes: local paths and `file://` (relative ones against `base_dir`, the YAML's folder), `http(s)://`
(downloaded into a content-addressed cache, archives unpacked safely, conditional requests so an unchanged
artifact is not fetched twice), `pvc://NAME/path` (mapped under `pvc_root`) and the object stores `s3://`,
`gs://`, `az://`, `https://ACCOUNT.blob.core.windows.net/...` (credentials from `StorageConfig.env`, KServe's
variable names). Anything else (hdfs://, ...) is a clear `StorageError` naming the scheme. One module per job:
`local`, `http`, `archives`, `credentials` + `object_store`, `leases`, `reclaim` (the sweep that gives back the
entries nobody needs any more).

A downloaded folder that `resolve()` returns is leased to the caller (`leases`): it stays on disk, whatever is
downloaded for the same URI later, until the caller passes it to `release()` (or the process exits).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from serving.storage.credentials import AZURE_FILES, is_object_uri
from serving.storage.errors import StorageError, StorageRefused, disk_full, no_space, redact
from serving.storage.leases import release

__all__ = [
    "StorageConfig",
    "StorageError",
    "StorageRefused",
    "default_cache_dir",
    "fingerprint",
    "pull",
    "release",
    "resolve",
    "scheme_of",
]

SUPPORTED = "local paths, file://, http://, https://, pvc://, s3://, gs://, az://"


def default_cache_dir() -> Path:
    """$SERVING_CACHE_DIR, else ~/.cache/serving/models."""
    env = os.environ.get("SERVING_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "serving" / "models"


@dataclass(frozen=True)
class StorageConfig:
    cache_dir: Path  # where downloads are cached (default_cache_dir() for the usual place)
    pvc_root: Path | None = None  # pvc://NAME/path -> pvc_root/NAME/path
    allowed_roots: tuple[Path, ...] = ()  # if non-empty, local paths must resolve inside one of them
    base_dir: Path | None = (
        None  # relative local paths and file:// are resolved against it (the YAML's folder)
    )
    timeout_s: float = 60.0  # per network operation (connect, each read), not for the whole download
    max_download_bytes: int = 2 * 1024**3
    env: Mapping[str, str] | None = None  # where object-store credentials are read (None: this process's env)

    def environment(self) -> Mapping[str, str]:
        return os.environ if self.env is None else self.env


def scheme_of(uri: str) -> str:
    """'' for a plain local path, else the lower-cased URI scheme."""
    if "://" not in uri:
        return ""
    return urlsplit(uri).scheme.lower() or uri.split("://", 1)[0].lower()


def _check_uri(uri: str) -> str:
    if not isinstance(uri, str) or not uri.strip():
        raise StorageError("storageUri is empty")
    if "\x00" in uri:
        raise StorageError(f"{uri!r}: NUL byte in storageUri")
    scheme = scheme_of(uri.strip())
    if scheme not in ("", "file", "http", "https", "pvc", "s3", "gs", "az"):
        raise StorageError(
            f"{uri}: storage scheme '{scheme}://' is not supported here (supported: {SUPPORTED})"
        )
    return scheme


def resolve(uri: str, config: StorageConfig) -> Path:
    """A local directory holding the model for `uri`: local paths/file:// as is (checked), http(s) downloaded
    into the cache (archives unpacked), pvc:// mapped. Raises `StorageError` (an `ArtifactError`) naming the URI.

    A folder from the download cache comes with a lease: no later download of the same URI prunes it until
    `release(path)` is called with the returned path (once per `resolve`), or this process exits. Call it when
    nothing will start from the folder any more (a revision retired); for a local path it is a no-op."""
    scheme = _check_uri(uri)
    uri = uri.strip()
    try:
        return _resolve(uri, scheme, config)
    except OSError as exc:  # a step no provider wraps (a lease file, a bookkeeping write)
        if no_space(exc):
            raise disk_full(redact(uri), config.cache_dir) from exc
        raise StorageError(f"{redact(uri)}: {exc}") from exc


def _resolve(uri: str, scheme: str, config: StorageConfig) -> Path:
    if is_object_uri(uri):
        from serving.storage import object_store

        return object_store.resolve_object_uri(uri, config)
    if scheme == "https" and AZURE_FILES.match((urlsplit(uri).hostname or "").lower()):
        raise StorageRefused(
            f"{redact(uri)}: an Azure Files share is not fetched here (KServe's Azure Files form); put the model "
            "in a blob container (https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH or az://) or a path"
        )
    if scheme in ("http", "https"):
        from serving.storage import http

        return http.resolve_url(uri, config)
    from serving.storage import local

    return local.model_dir_for(uri, local.local_path(uri, config), config)


def fingerprint(uri: str, config: StorageConfig) -> str:
    """A cheap content identity of what `uri` points at (local: names+sizes+mtimes; http: ETag/Last-Modified/
    length via HEAD), used to tell whether a model changed. Equal fingerprints mean "no need to reload"."""
    scheme = _check_uri(uri)
    uri = uri.strip()
    if is_object_uri(uri):
        from serving.storage import object_store

        return object_store.object_fingerprint(uri, config)
    if scheme in ("http", "https"):
        from serving.storage import http

        return http.url_fingerprint(uri, config)
    from serving.storage import local

    return local.path_fingerprint(uri, local.local_path(uri, config))


def pull(uri: str, dest: Path, config: StorageConfig) -> tuple[int, int]:
    """Resolve `uri` and copy the model into `dest` (KServe's storage-initializer into /mnt/models).

    Files from our own download cache are hard-linked when possible (they are immutable); a user's local files
    are copied so later edits to them never change a pulled model. Returns (files, bytes)."""
    source = resolve(uri, config)
    try:
        return copy_tree(uri, source, dest, config)
    finally:
        release(source)  # copied (hard links stay valid even if the cache folder is pruned later)


def copy_tree(uri: str, source: Path, dest: Path, config: StorageConfig) -> tuple[int, int]:
    cache = config.cache_dir.resolve()
    link = source.resolve().is_relative_to(cache)
    files = size = 0
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.rglob("*")):
            target = dest / path.relative_to(source)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            _link_or_copy(path, target, link)
            files += 1
            size += target.stat().st_size
    except OSError as exc:
        if no_space(exc):
            raise disk_full(redact(uri), dest) from exc
        raise StorageError(f"{uri}: cannot write into {dest}: {exc.strerror or exc}") from exc
    return files, size


def _link_or_copy(source: Path, target: Path, link: bool) -> None:
    if link:
        try:
            os.link(source, target)
            return
        except OSError:
            pass  # another filesystem: copy instead
    shutil.copy2(source, target)
