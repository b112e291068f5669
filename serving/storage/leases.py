"""Leases on cached model folders: a folder handed out by `resolve()` is never removed while it may be in use.

Every cached folder `entry/NAME` (object stores: a listing digest; http: a content checksum) has a lease file
`entry/.lease-NAME` beside it, outside the served folder. `hold()` (called under the entry's lock, when
`resolve()` returns the folder) opens that file and takes a shared `flock` on it; the open file stays in this
process's registry until `release(model_dir)` closes it. `remove_unless_held()` (also under the entry's lock,
when a newer download prunes) removes a folder only if it can lock its lease file exclusively, i.e. nobody in
this process or any other holds it. Leases need no bookkeeping to survive crashes: a process that exits,
however it exits, drops its locks with its file descriptors, so a folder is never pinned by a dead process.

A caller that keeps using a folder (a revision whose replicas start from it, again after a crash or on a
scale-up) holds the lease for as long as it may start a replica from it and then calls `release()`. Without a
`release()` the folder is kept until the process exits, which wastes disk but never breaks a revision.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from serving.storage.archives import remove_tree

LEASE_PREFIX = ".lease-"
LOCK_NAME = ".lock"
# served folder (absolute path) -> one open, share-locked lease file per hold
_held: dict[str, list[BinaryIO]] = {}
_guard = threading.Lock()


def lease_file(entry: Path, name: str) -> Path:
    return entry / f"{LEASE_PREFIX}{name}"


def hold(entry: Path, name: str, served: Path) -> Path:
    """Take a lease on `entry/name` for whoever receives `served` (the folder itself or one inside it); returns
    `served`. The caller holds the entry's lock, so no prune can run between finding the folder and this."""
    lease = open(lease_file(entry, name), "a+b")  # noqa: SIM115 (kept open: the lock lives as long as the file)
    try:
        fcntl.flock(lease, fcntl.LOCK_SH)
    except OSError:
        lease.close()
        raise
    with _guard:
        _held.setdefault(_key(served), []).append(lease)
    return served


def release(model_dir: Path | str) -> bool:
    """Give back one lease taken when `resolve()` returned `model_dir` (pass the very path it returned). The
    folder may then be removed by a later download of the same URI, once nobody else holds it. Never blocks;
    a path that holds no lease (a local path, an already released one) is ignored: returns False."""
    with _guard:
        files = _held.get(_key(model_dir))
        if not files:
            return False
        lease = files.pop()
        if not files:
            del _held[_key(model_dir)]
    lease.close()  # closing the last descriptor of this open file drops its shared lock
    return True


def held(model_dir: Path | str) -> int:
    """How many leases this process holds on `model_dir` (for tests and diagnostics)."""
    with _guard:
        return len(_held.get(_key(model_dir), ()))


def remove_unless_held(entry: Path, name: str, sidecars: tuple[str, ...] = ()) -> bool:
    """Remove `entry/name` (and its lease file and `sidecars`, files beside it) if no process holds a lease on
    it; True if removed. Call it under the entry's lock, as `hold()` is, so no lease is taken meanwhile."""
    path = lease_file(entry, name)
    with open(path, "a+b") as lease:
        try:
            fcntl.flock(lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live caller may still start a replica from it
        remove_tree(entry / name)
        for sidecar in sidecars:
            (entry / sidecar).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def locked(entry: Path) -> Iterator[None]:
    """Hold `entry`'s lock (waiting for it). An entry removed while we waited (a reclaim) is made again and
    locked anew: a download never writes into a folder that is no longer in the cache."""
    while True:
        entry.mkdir(parents=True, exist_ok=True)
        try:
            lock = open(entry / LOCK_NAME, "a+b")  # noqa: SIM115 (closed below, after the unlock)
        except FileNotFoundError:
            continue  # removed between the mkdir and the open
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _still_there(lock, entry / LOCK_NAME):
                continue  # reclaimed while we waited: the lock we got guards nothing
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
            return


@contextlib.contextmanager
def locked_now(entry: Path) -> Iterator[bool]:
    """Try `entry`'s lock without waiting: yields False (and holds nothing) if a download or prune has it."""
    with open(entry / LOCK_NAME, "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield _still_there(lock, entry / LOCK_NAME)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _still_there(lock: BinaryIO, path: Path) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(lock.fileno())
    return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)


def _key(path: Path | str) -> str:
    return os.path.abspath(path)
