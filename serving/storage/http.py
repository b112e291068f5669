"""http(s) artifacts: streamed, size-capped downloads into a content-addressed cache.

Layout: `cache_dir/<sha256(url)[:16]>/` holds `meta.json` (URL, ETag, Last-Modified, sha256 of the bytes,
current content folder) and one immutable folder per content, named by its checksum. A download
goes to a `.tmp-*` folder and is renamed into place, then `meta.json` is replaced atomically: a crash leaves
the old model or the new one, never half of one. A file lock serialises pulls of one URL across processes.
The next resolve sends If-None-Match / If-Modified-Since; a 304 (or identical bytes) reuses the folder.
A URL's host may have request headers of its own: KServe's env `<host>-headers` (a JSON object), which a
service account's Secret with `https-host` and `headers` sets (`serving.storage.kserve_secrets`).
Every caller `resolve()` hands a folder to holds a lease on it (`serving.storage.leases`, `.lease-<content>`
beside the folder) until it releases it; an older content folder is pruned only when nobody holds it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson

from serving.storage import leases
from serving.storage.archives import archive_kind, model_root, remove_tree, unpack
from serving.storage.errors import StorageError, StorageRefused, disk_full, no_space, redact
from serving.storage.kserve_secrets import headers_env

if TYPE_CHECKING:
    from serving.storage import StorageConfig

log = logging.getLogger("serving.storage")
CHUNK_BYTES = 1 << 20


def cache_entry(url: str, cache_dir: Path, headers: Mapping[str, str] | None = None) -> Path:
    """The cache folder of `url` as fetched with these host headers (credentials, hashed: no value is kept): a
    copy, and its validators, go only to whoever fetches with the same ones, as object stores' copies do. A
    service the server refused is never handed, when the server is down, what another's token fetched."""
    identity = orjson.dumps(dict(headers or {}), option=orjson.OPT_SORT_KEYS)
    return Path(cache_dir) / hashlib.sha256(url.encode() + b"\0" + identity).hexdigest()[:16]


def resolve_url(url: str, config: StorageConfig) -> Path:
    entry = cache_entry(url, config.cache_dir, host_headers(url, config.environment()))
    try:
        entry.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"{redact(url)}: cannot create cache folder {entry}: {exc.strerror or exc}"
        ) from exc
    with _locked(entry):
        meta = _read_meta(entry)
        for stale in entry.glob(".tmp-*"):  # left by a crash; we hold the lock, so nobody is using them
            remove_tree(stale)
        try:
            meta = _fetch(url, entry, meta, config)
        except httpx.TransportError as exc:  # unreachable: fall back to the copy we have, if any
            if meta is None:
                raise StorageError(_transport_message(url, exc, config.timeout_s)) from exc
            log.warning("%s; using the cached copy", _transport_message(url, exc, config.timeout_s))
        except httpx.HTTPError as exc:  # e.g. an invalid URL
            raise StorageError(f"{redact(url)}: {exc}") from exc
        except OSError as exc:
            if no_space(exc):
                raise disk_full(redact(url), entry) from exc
            raise StorageError(
                f"{redact(url)}: cannot write the cache in {entry}: {exc.strerror or exc}"
            ) from exc
        return _served(entry, meta)


def host_headers(url: str, env: Mapping[str, str]) -> dict[str, str]:
    """The request headers KServe's env `<host>-headers` gives this URL's host ({} when unset). Errors name the
    env, never its value."""
    name = headers_env(urlsplit(url).hostname or "")
    raw = env.get(name)
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise StorageError(f"{redact(url)}: env {name} must be a JSON object of header names to values")
    return {str(k): v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in value.items()}


def _fetch(url: str, entry: Path, meta: dict[str, Any] | None, config: StorageConfig) -> dict[str, Any]:
    headers = {}
    if meta is not None:
        if meta.get("etag"):
            headers["If-None-Match"] = meta["etag"]
        if meta.get("last_modified"):
            headers["If-Modified-Since"] = meta["last_modified"]
    with _client(config, url) as client, client.stream("GET", url, headers=headers) as resp:
        if resp.status_code == 304 and meta is not None:
            log.info("%s not modified; reusing %s", redact(url), meta["content"])
            return meta
        _check_status(url, resp)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry))
        try:
            download = tmp / "download"
            sha256, size = _stream_to(url, resp, download, config.max_download_bytes, entry)
            return _install(url, entry, tmp, download, (sha256, size), resp, meta, config)
        finally:
            remove_tree(tmp)


def _install(
    url: str,
    entry: Path,
    tmp: Path,
    download: Path,
    checksum: tuple[str, int],
    resp: httpx.Response,
    meta: dict[str, Any] | None,
    config: StorageConfig,
) -> dict[str, Any]:
    """Move the downloaded bytes (unpacked if an archive) into their content folder; record the metadata."""
    sha256, size = checksum
    filename = url_filename(url)
    kind = archive_kind(filename)
    content = sha256[:16]
    if not (entry / content).is_dir():  # identical bytes (a server without validators): nothing to unpack
        out = tmp / "out"
        out.mkdir()
        if kind:
            unpack(redact(url), download, out, kind, config.max_download_bytes, where=entry)
        else:
            download.rename(out / filename)
        os.rename(out, entry / content)
    new = {
        "url": redact(url),
        "etag": resp.headers.get("etag"),
        "last_modified": resp.headers.get("last-modified"),
        "sha256": sha256,
        "size": size,
        "filename": filename,
        "archive": kind,
        "content": content,
    }
    _write_meta(entry, new)
    _prune(entry, keep=content)
    log.info("%s fetched (%s, sha256 %s)", redact(url), filename, sha256[:12])
    return new


def _stream_to(url: str, resp: httpx.Response, path: Path, max_bytes: int, cache: Path) -> tuple[str, int]:
    """Stream the body into `path` (under the cache folder `cache`), refusing more than `max_bytes`."""
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise StorageRefused(  # by policy: not fetched again and again (a smaller object: apply again)
            f"{redact(url)}: {declared} bytes is larger than the download limit of {max_bytes} bytes"
        )
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "wb") as out:
            for chunk in resp.iter_bytes(CHUNK_BYTES):
                size += len(chunk)
                if size > max_bytes:
                    raise StorageRefused(
                        f"{redact(url)}: larger than the download limit of {max_bytes} bytes"
                    )
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        if no_space(exc):  # the whole download's size when the server said it, else what had arrived
            if declared and declared.isdigit():
                raise disk_full(redact(url), cache, int(declared)) from exc
            raise disk_full(redact(url), cache, size, so_far=True) from exc
        raise
    return digest.hexdigest(), size


def url_filename(url: str) -> str:
    """The URL path's last segment (the name the model file is saved under); 'model' if there is none."""
    name = unquote(posixpath.basename(urlsplit(url).path))
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
        return "model"
    return name


def url_fingerprint(url: str, config: StorageConfig) -> str:
    """URL + ETag + Last-Modified + Content-Length from a HEAD (a GET whose body is not read, if HEAD is
    refused). Without validators, a same-sized change can't be seen; servers of model files send them."""
    try:
        with _client(config, url) as client:
            resp = client.head(url)
            if resp.status_code in (405, 501):
                with client.stream("GET", url) as resp:
                    _check_status(url, resp)
            _check_status(url, resp)
    except httpx.TransportError as exc:
        raise StorageError(_transport_message(url, exc, config.timeout_s)) from exc
    except httpx.HTTPError as exc:
        raise StorageError(f"{redact(url)}: {exc}") from exc
    parts = [url] + [resp.headers.get(h, "") for h in ("etag", "last-modified", "content-length")]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _client(config: StorageConfig, url: str) -> httpx.Client:
    """A client for one download; the host's own headers go to that host only, never to where a redirect
    leads (they are credentials)."""
    headers = host_headers(url, config.environment())
    host = (urlsplit(url).hostname or "").lower()

    def to_its_host(request: httpx.Request) -> None:
        if request.url.host.lower() == host:
            request.headers.update(headers)
        else:  # a redirect's request starts as a copy of the one before
            for name in headers:
                request.headers.pop(name, None)

    hooks = {"request": [to_its_host]} if headers else {}
    return httpx.Client(timeout=httpx.Timeout(config.timeout_s), follow_redirects=True, event_hooks=hooks)


def _check_status(url: str, resp: httpx.Response) -> None:
    if resp.status_code >= 400 or resp.status_code == 304:
        raise StorageError(f"{redact(url)}: HTTP {resp.status_code} {resp.reason_phrase}".rstrip())


def _transport_message(url: str, exc: Exception, timeout_s: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"{redact(url)}: timed out after {timeout_s:g}s ({type(exc).__name__})"
    return f"{redact(url)}: cannot connect: {exc or type(exc).__name__}"


def _served(entry: Path, meta: dict[str, Any]) -> Path:
    """The folder to serve (inside an archive's single top folder), leased to the caller: no later prune
    removes it until the caller calls `serving.storage.release()` with it (or exits)."""
    folder = entry / meta["content"]
    return leases.hold(entry, meta["content"], model_root(folder) if meta.get("archive") else folder)


def _read_meta(entry: Path) -> dict[str, Any] | None:
    """The cached metadata, or None if absent, unreadable or pointing at a missing folder (refetch)."""
    try:
        meta = orjson.loads((entry / "meta.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("content"), str):
        return None
    return meta if (entry / meta["content"]).is_dir() else None


def _write_meta(entry: Path, meta: dict[str, Any]) -> None:
    tmp = entry / f".meta.{os.getpid()}.tmp"
    tmp.write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    os.replace(tmp, entry / "meta.json")


def _prune(entry: Path, keep: str) -> None:
    """Drop the content folders other than the current one that nobody holds a lease on (a revision still
    running, or able to restart or scale up, from an older content holds one, in this process or another)."""
    for child in entry.iterdir():
        if child.is_dir() and not child.name.startswith(".") and child.name != keep:
            leases.remove_unless_held(entry, child.name)


_locked = leases.locked  # the entry's lock (object stores take it too)
