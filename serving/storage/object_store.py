"""s3://, gs://, az:// (and Azure's https blob URLs): one provider over fsspec (s3fs, gcsfs, adlfs).

Cache layout: `cache_dir/objects/<sha256(uri)[:16]>/<listing digest>/` is one immutable model folder, named by
a digest of the listing (every object's name, size and ETag/generation), so a second revision of the same
model finds it without downloading and a changed object gives a new folder. A download goes to
`.partial-<digest>` and is renamed into place when complete: a crash never leaves half a model, and the next
attempt keeps the objects already fetched whole (resumable per batch of objects: an object takes its name
only once its batch is complete, since a file of the right size is no proof it is). A file lock serialises pulls of one URI.
Bookkeeping lives beside the folders, never in them (the folder holds exactly the model's files): `current`
(the digest last resolved), `uri` (the URI, redacted: what a reclaim names), `.archive-<digest>` (the folder is an unpacked archive) and `.lease-<digest>`
(`serving.storage.leases`: every caller `resolve()` handed the folder to holds a lease until it releases it;
a folder is pruned only when nobody does).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from serving.storage import leases, scheme_of
from serving.storage.archives import archive_kind, model_root, remove_tree, unpack
from serving.storage.credentials import ObjectLocation, filesystem_options, parse_location, secret_values
from serving.storage.errors import StorageError, StorageRefused, disk_full, no_space, redact
from serving.storage.http import _locked
from serving.storage.reclaim import ARCHIVE_MARK, SOURCE

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from serving.storage import StorageConfig

log = logging.getLogger("serving.storage")
Listing = list[tuple[str, str, int, str]]  # (remote path, relative name, size, version tag)
VERSION_FIELDS = ("generation", "ETag", "etag", "version_id", "LastModified", "last_modified", "updated")
MIN_SECRET_CHARS = 8  # shorter values are no real secret: scrubbing them would only corrupt ordinary words


def filesystem(location: ObjectLocation, env: Mapping[str, str], timeout_s: float) -> AbstractFileSystem:
    """A fresh fsspec filesystem (no instance or listing cache: each resolve sees the store as it is now)."""
    protocol, options = filesystem_options(location, env, timeout_s)
    if protocol == "s3":
        from s3fs import S3FileSystem

        fs = S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **options)
        # botocore already retries each call (AWS_MAX_ATTEMPTS, default 3): s3fs's own 5 rounds on top of those
        # made an endpoint that never answers take 5 x 3 x the read timeout (15 minutes) to be reported
        fs.retries = 1
        return fs
    if protocol == "gcs":
        from gcsfs.core import GCSFileSystem  # the plain client: the extended one probes a gRPC API first

        # each retry of an unreachable store is a traceback at ERROR there; the StorageError we raise says it once
        logging.getLogger("gcsfs").setLevel(logging.CRITICAL)
        return GCSFileSystem(skip_instance_cache=True, **options)
    from adlfs import AzureBlobFileSystem

    return AzureBlobFileSystem(skip_instance_cache=True, **options)


def list_objects(uri: str, fs: AbstractFileSystem, location: ObjectLocation) -> Listing:
    """The objects `uri` names: one object, or every object under the prefix. Raises if there are none."""
    info = fs.info(location.path) if location.key else {"type": "directory"}
    if info.get("type") == "file":
        return [(location.path, PurePosixPath(location.key).name, int(info["size"]), _version(info))]
    found = fs.find(location.path, detail=True)
    listing = []
    for path, meta in sorted(found.items()):
        relative = path[len(location.path) :].lstrip("/")
        if meta.get("type") != "file" or not relative or relative.endswith("/"):
            continue
        if any(seg in ("", ".", "..") for seg in relative.split("/")):
            raise StorageRefused(f"{uri}: object {path!r} would land outside the model folder")
        listing.append((path, relative, int(meta.get("size") or 0), _version(meta)))
    if not listing:
        raise FileNotFoundError(location.path)
    return listing


def _version(meta: Mapping[str, Any]) -> str:
    return "/".join(str(meta[k]) for k in VERSION_FIELDS if meta.get(k) is not None)


def listing_digest(uri: str, listing: Listing) -> str:
    text = "\n".join([uri] + [f"{rel}\t{size}\t{tag}" for _, rel, size, tag in listing])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def object_fingerprint(uri: str, config: StorageConfig) -> str:
    location = parse_location(uri)
    env = config.environment()
    with translated(uri, env, config):
        fs = filesystem(location, env, config.timeout_s)
        return listing_digest(uri, list_objects(uri, fs, location))


def resolve_object_uri(uri: str, config: StorageConfig) -> Path:
    """The local model folder for `uri`, downloaded into the cache unless the same listing is there already."""
    location = parse_location(uri)
    env = config.environment()
    entry = config.cache_dir / "objects" / cache_key(uri, location, env, config.timeout_s)
    try:
        entry.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"{uri}: cannot create cache folder {entry}: {exc.strerror or exc}") from exc
    with _locked(entry):
        _name_source(entry, uri)
        try:
            with translated(uri, env, config):
                fs = filesystem(location, env, config.timeout_s)
                listing = list_objects(uri, fs, location)
        except StorageError as exc:
            cached = _current(entry)
            if cached is None or "unreachable" not in exc.message:
                raise
            log.warning("%s; using the cached copy %s", exc.message, cached.name)
            return _handed_out(entry, cached.name)
        digest = listing_digest(uri, listing)
        folder = entry / digest
        if folder.is_dir():
            log.info("%s unchanged (%s); using the cached copy", uri, digest)
        else:
            with translated(uri, env, config):
                _download(uri, fs, listing, entry, digest, config)
        (entry / "current").write_text(digest)
        return _handed_out(entry, digest)


def cache_key(uri: str, location: ObjectLocation, env: Mapping[str, str], timeout_s: float) -> str:
    """The cache entry of `uri` as fetched from one endpoint with one set of credentials: a copy is handed out
    (when the store cannot be reached) only to whoever could have fetched it, never to a service whose own
    endpoint or keys differ (hashed: no value is kept). No credentials at all: the error is raised here."""
    _, options = filesystem_options(location, env, timeout_s)
    source = {k: v for k, v in options.items() if k not in ("config_kwargs", "requests_timeout")}
    identity = orjson.dumps(source, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(uri.encode() + b"\0" + identity).hexdigest()[:16]


def _download(
    uri: str, fs: AbstractFileSystem, listing: Listing, entry: Path, digest: str, config: StorageConfig
) -> None:
    total = sum(size for _, _, size, _ in listing)
    if total > config.max_download_bytes:
        raise StorageRefused(  # by policy: not fetched again and again (a smaller object: apply again)
            f"{uri}: {total} bytes is larger than the download limit of {config.max_download_bytes}"
        )
    partial = entry / f".partial-{digest}"
    todo: list[tuple[str, Path, int]] = []
    for remote, relative, size, _ in listing:
        local = partial / relative
        if local.is_file() and local.stat().st_size == size:
            continue  # fetched whole by an earlier, interrupted attempt (only whole objects get their name)
        local.parent.mkdir(parents=True, exist_ok=True)
        todo.append((remote, local, size))
    for batch in _batches(todo):
        # Each object lands under a name of its own and takes its real name once its batch is complete: a file
        # of the right size is no proof (s3fs sizes a large object's file before its parts arrive), so a cut
        # download never leaves a file the next attempt would take as whole
        landing = [local.with_name(PART_PREFIX + local.name) for _, local, _ in batch]
        try:
            fs.get([r for r, _, _ in batch], [str(p) for p in landing])  # concurrent inside fsspec's loop
        except Exception as exc:
            for part in landing:
                part.unlink(missing_ok=True)
            if no_space(exc):
                raise disk_full(uri, entry, total) from exc
            raise
        for part, (_, local, _) in zip(landing, batch, strict=True):
            os.replace(part, local)
    _check_sizes(uri, partial, listing)
    if len(listing) == 1 and (kind := archive_kind(listing[0][1])):
        archive = partial / listing[0][1]
        unpacked = entry / f".unpack-{digest}"
        remove_tree(unpacked)
        try:
            unpack(uri, archive, unpacked, kind, config.max_download_bytes, where=entry)
        except StorageError:
            remove_tree(unpacked)  # half an archive's contents is of no use to anyone
            raise
        remove_tree(partial)
        partial = unpacked
        (entry / f"{ARCHIVE_MARK}{digest}").write_text(kind)  # before the rename: the folder never lacks it
    os.rename(partial, entry / digest)
    _prune(entry, keep=digest)
    log.info("%s fetched: %d objects, %d bytes", uri, len(listing), total)


PART_PREFIX = ".landing-"  # an object being fetched, not yet whole
BATCH_OBJECTS = 16  # fetched together (fsspec runs them concurrently); a failure costs its batch only
BATCH_BYTES = 256 * 1024 * 1024


def _batches(todo: list[tuple[str, Path, int]]) -> list[list[tuple[str, Path, int]]]:
    """The objects to fetch, in batches of at most BATCH_OBJECTS and (unless one object is larger) BATCH_BYTES."""
    batches: list[list[tuple[str, Path, int]]] = []
    current: list[tuple[str, Path, int]] = []
    size = 0
    for item in todo:
        if current and (len(current) >= BATCH_OBJECTS or size + item[2] > BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(item)
        size += item[2]
    if current:
        batches.append(current)
    return batches


def _check_sizes(uri: str, folder: Path, listing: Listing) -> None:
    for _, relative, size, _ in listing:
        got = (folder / relative).stat().st_size if (folder / relative).is_file() else -1
        if got != size:
            raise StorageError(f"{uri}: {relative} arrived with {got} of {size} bytes; try again")


def _handed_out(entry: Path, digest: str) -> Path:
    """The folder to serve for `entry/digest` (inside an archive's single top folder), leased to the caller:
    no later prune removes it until the caller calls `serving.storage.release()` with it (or exits)."""
    folder = entry / digest
    mark = entry / f"{ARCHIVE_MARK}{digest}"
    legacy = folder / ".archive"  # where caches written before the mark moved out of the folder kept it
    if not mark.exists() and legacy.is_file() and legacy.read_text() in ("tar", "zip"):
        mark.write_text(legacy.read_text())  # (with the mark there, a `.archive` inside is the model's own)
        legacy.unlink()
    served = model_root(folder) if mark.is_file() else folder
    return leases.hold(entry, digest, served)


def _name_source(entry: Path, uri: str) -> None:
    """Which URI the entry holds (`SOURCE`, beside its folders), for the line that says it was reclaimed."""
    source = entry / SOURCE
    with contextlib.suppress(OSError):
        if not source.is_file():
            source.write_text(redact(uri))


def _current(entry: Path) -> Path | None:
    try:
        folder = entry / (entry / "current").read_text().strip()
    except OSError:
        return None
    return folder if folder.is_dir() else None


def _prune(entry: Path, keep: str) -> None:
    """Remove the folders other than the new one that nobody holds a lease on: a revision still running (or
    able to restart or scale up) from an older folder holds one, in this process or another."""
    for child in entry.iterdir():
        if child.is_dir() and not child.name.startswith(".") and child.name != keep:
            leases.remove_unless_held(entry, child.name, sidecars=(f"{ARCHIVE_MARK}{child.name}",))


@contextlib.contextmanager
def translated(uri: str, env: Mapping[str, str], config: StorageConfig) -> Iterator[None]:
    """Turn an SDK failure into a `StorageError` that says what to do, names the URI, never a secret."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(
            scrub(f"{uri}: {describe(exc, _endpoint_hint(uri, env), scheme_of(uri))}", env)
        ) from exc


def scrub(text: str, env: Mapping[str, str]) -> str:
    """`text` with every credential from `env` that appears in it as a whole token (not glued to letters or
    digits on either side; as is or percent-encoded) replaced by `***`. Values shorter than MIN_SECRET_CHARS
    are no real secret and left alone: replacing every "b" would corrupt the message, not protect anything."""
    tokens: set[str] = set()
    for secret in secret_values(env):
        if len(secret) >= MIN_SECRET_CHARS:
            tokens.update((secret, quote(secret, safe="")))
    for token in sorted(tokens, key=len, reverse=True):  # a secret holding another is scrubbed whole
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", "***", text)
    return text


def describe(exc: Exception, endpoint: str, scheme: str = "s3") -> str:
    """One sentence per failure kind: denied, missing, unreachable, TLS (its advice for the URI's store)."""
    text = _first_line(exc)
    if _is_tls(exc):
        plain_http = "WRONG_VERSION_NUMBER" in text or "wrong version number" in text  # an http-only server
        if scheme != "s3":
            setting = (
                "AZURE_STORAGE_BLOB_ENDPOINT"
                if scheme in ("az", "abfs", "https")
                else "STORAGE_EMULATOR_HOST"
            )
            if plain_http:
                return f"TLS failure talking to {endpoint} ({text}): the endpoint speaks plain http; give {setting} as http://"
            return (
                f"TLS failure talking to {endpoint} ({text}); check {setting} and the endpoint's certificate"
            )
        if plain_http:
            return (
                f"TLS failure talking to {endpoint} ({text}): the endpoint speaks plain http; set S3_USE_HTTPS=0 "
                '(KServe: the annotation serving.kserve.io/s3-usehttps: "0") or an http:// AWS_ENDPOINT_URL'
            )
        return (
            f"TLS failure talking to {endpoint} ({text}); for a private CA set AWS_CA_BUNDLE "
            "(or S3_VERIFY_SSL=0 to skip verification)"
        )
    if isinstance(exc, PermissionError) or _status(exc) in (401, 403):
        return f"access denied (403): {text}; check the credentials and that they may read this bucket"
    if isinstance(exc, FileNotFoundError) or _status(exc) == 404:
        return f"no such bucket, key or prefix ({text})"
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or "connect" in text.lower():
        return f"endpoint unreachable: {endpoint} ({text})"
    return f"{type(exc).__name__}: {text}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _status(exc: BaseException) -> int | None:
    for attr in ("status_code", "status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    return None


def _is_tls(exc: BaseException) -> bool:
    chain: BaseException | None = exc
    while chain is not None:
        if (
            isinstance(chain, ssl.SSLError)
            or "CERTIFICATE_VERIFY_FAILED" in str(chain)
            or "SSL" in type(chain).__name__
        ):
            return True
        chain = chain.__cause__ or chain.__context__
    return False


def _endpoint_hint(uri: str, env: Mapping[str, str]) -> str:
    scheme = uri.split("://", 1)[0].lower()
    if scheme == "s3":
        return env.get("AWS_ENDPOINT_URL") or env.get("S3_ENDPOINT") or "the S3 endpoint"
    if scheme == "gs":
        return env.get("STORAGE_EMULATOR_HOST") or "storage.googleapis.com"
    return env.get("AZURE_STORAGE_BLOB_ENDPOINT") or "the Azure blob endpoint"
