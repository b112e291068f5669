"""Give the download cache's disk back once nothing needs a copy any more.

A download is pruned by a later download of the same URI (only the folders nobody holds); a URI never
fetched again (its service deleted, its revisions replaced) would keep its disk for ever. `reclaim()` is the
sweep for those: the caller (`serving up`'s control plane) says which cache entries its revisions may still
start from (`keep`), and every other entry (`CACHE/<16 hex>` for http(s), `CACHE/objects/<16 hex>`) goes as a
whole, unless a process holds a lease in it (a revision running from it, here or in another process sharing
the cache). In the entries that stay, a folder other than the current copy that nobody holds goes, as the next
download of that URI would prune it. Everything happens under the entry's lock, taken without waiting: an
entry a download or prune is busy with is left for the next sweep, and no lease can be taken meanwhile
(`leases.hold()` needs that lock). The local-file folders (`files/`), the `storageUris` folders (`composed/`,
removed when their revision retires) and anything not named like an entry are never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from serving.storage import leases
from serving.storage.archives import remove_tree

log = logging.getLogger("serving.storage")
ENTRY = re.compile(r"[0-9a-f]{16}")  # http.cache_entry / object_store.cache_key: 16 hex digits
OBJECTS = "objects"
ARCHIVE_MARK = (
    ".archive-"  # + digest: object stores' file beside a folder saying it holds an unpacked archive
)
SOURCE = "uri"  # object stores' file beside the folders: the (redacted) URI the entry holds


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """One folder whose disk was given back: the URI it held, its size, and whether the whole entry went."""

    uri: str
    bytes: int
    entry: bool


def entry_of(path: Path | str, cache_dir: Path) -> Path | None:
    """The cache entry `path` (a folder `resolve()` handed out) lies in, or None if it is not in one."""
    cache = Path(os.path.abspath(cache_dir))
    try:
        parts = Path(os.path.abspath(path)).relative_to(cache).parts
    except ValueError:
        return None
    if len(parts) >= 2 and parts[0] == OBJECTS and ENTRY.fullmatch(parts[1]):
        return cache / OBJECTS / parts[1]
    if parts and ENTRY.fullmatch(parts[0]):
        return cache / parts[0]
    return None


def entries(cache_dir: Path) -> list[Path]:
    """Every download entry in the cache (http(s) and object stores)."""
    cache = Path(os.path.abspath(cache_dir))
    found: list[Path] = []
    for folder in (cache, cache / OBJECTS):
        with contextlib.suppress(OSError):
            found += sorted(p for p in folder.iterdir() if ENTRY.fullmatch(p.name) and p.is_dir())
    return found


def reclaim(cache_dir: Path, keep: Collection[Path]) -> list[Reclaimed]:
    """Remove every entry not in `keep` that nobody holds a lease in, and the unheld older copies in the
    entries that stay; one log line each (URI, bytes). Returns what went."""
    kept = {Path(os.path.abspath(p)) for p in keep}
    done: list[Reclaimed] = []
    for entry in entries(cache_dir):
        try:
            with leases.locked_now(entry) as mine:
                if mine:
                    done += _sweep(entry, entry in kept)
        except FileNotFoundError:  # removed meanwhile (another process's sweep)
            continue
    return done


def _sweep(entry: Path, kept: bool) -> list[Reclaimed]:
    """Under the entry's lock: the whole entry if it is not kept and nothing in it is held, else the copies
    nobody holds besides the current one."""
    uri = _source(entry)
    if not kept:
        with _all_free(entry) as free:
            if free:
                size = _size(entry)
                remove_tree(entry)
                log.info("cache: reclaimed %s, %d bytes (no revision uses it any more)", uri, size)
                return [Reclaimed(uri, size, True)]
    current = _current(entry)
    if current is None:  # unknown which copy is current: keep them all
        return []
    done = []
    for child in sorted(entry.iterdir()):
        if child.name.startswith(".") or child.name == current or not child.is_dir():
            continue
        size = _size(child)
        if leases.remove_unless_held(entry, child.name, sidecars=(f"{ARCHIVE_MARK}{child.name}",)):
            log.info("cache: reclaimed an older copy of %s, %d bytes (nobody holds it)", uri, size)
            done.append(Reclaimed(uri, size, False))
    return done


@contextlib.contextmanager
def _all_free(entry: Path) -> Iterator[bool]:
    """Whether no process holds a lease on any folder of the entry; the leases stay locked (exclusively)
    until the block ends, so none is taken while the entry goes."""
    files: list[BinaryIO] = []
    try:
        for lease in sorted(entry.glob(f"{leases.LEASE_PREFIX}*")):
            files.append(open(lease, "rb"))  # noqa: SIM115 (closed in the finally, after the removal)
            try:
                fcntl.flock(files[-1], fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
        yield True
    finally:
        for lease_file in files:
            lease_file.close()


def _source(entry: Path) -> str:
    """The URI the entry holds (redacted when it was written), for the log line."""
    try:
        meta = orjson.loads((entry / "meta.json").read_bytes())  # http(s)
        if isinstance(meta, dict) and isinstance(meta.get("url"), str):
            return str(meta["url"])
    except (OSError, orjson.JSONDecodeError):
        pass
    try:
        return (entry / SOURCE).read_text().strip() or entry.name  # object stores
    except OSError:
        return f"cache entry {entry.name} (URI unknown)"


def _current(entry: Path) -> str | None:
    """The name of the copy the entry's URI resolves to now (http: meta.json; object stores: `current`)."""
    try:
        meta = orjson.loads((entry / "meta.json").read_bytes())
        if isinstance(meta, dict) and isinstance(meta.get("content"), str):
            return str(meta["content"])
    except (OSError, orjson.JSONDecodeError):
        pass
    try:
        return (entry / "current").read_text().strip() or None
    except OSError:
        return None


def _size(folder: Path) -> int:
    """Bytes of the files under `folder`, each file (inode) once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(parent, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total
