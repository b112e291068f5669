"""The download cache gives its disk back (`serving.storage.reclaim`), and a full disk is called a full disk.

Real files and a real http artifact server on 127.0.0.1 (tests.test_storage_http). Leases held by another
process are real `flock`s taken by a child Python process. A full disk cannot be made unprivileged (a tmpfs
needs mount; RLIMIT_FSIZE gives EFBIG, not ENOSPC), so the ENOSPC tests write to /dev/full, the kernel device
whose every write fails with ENOSPC: the error is the kernel's own, only the one file the write path opens is
sent there.
"""

from __future__ import annotations

import builtins
import errno
import logging
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from serving.storage import StorageConfig, StorageError, leases, release, resolve
from serving.storage.archives import remove_tree
from serving.storage.errors import disk_full, no_space
from serving.storage.http import cache_entry
from serving.storage.reclaim import entry_of, reclaim
from tests.test_storage_http import ArtifactServer, tgz, zipped

DEV_FULL = Path("/dev/full")


@pytest.fixture
def server() -> Iterator[ArtifactServer]:
    with ArtifactServer() as srv:
        yield srv


@pytest.fixture
def config(tmp_path: Path) -> StorageConfig:
    return StorageConfig(cache_dir=tmp_path / "cache", timeout_s=5.0, max_download_bytes=1 << 20)


def _entry(url: str, config: StorageConfig) -> Path:
    return cache_entry(url, config.cache_dir)


def _poll(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_an_entry_nobody_keeps_is_removed_whole_and_said(
    server: ArtifactServer, config: StorageConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """A URI never fetched again (its service deleted) kept its disk for ever: only a later download of the
    same URI pruned. The sweep removes the entry, naming the URI and its size; the kept one stays whole."""
    caplog.set_level(logging.INFO, logger="serving.storage")
    gone = server.put("/gone/model.tgz", tgz({"model.joblib": b"g" * 3000}))
    kept = server.put("/kept/model.joblib", b"k" * 100)
    release(resolve(gone, config))
    kept_dir = resolve(kept, config)
    release(kept_dir)

    done = reclaim(config.cache_dir, {entry_of(kept_dir, config.cache_dir)})  # type: ignore[arg-type]

    assert not _entry(gone, config).exists()
    assert (kept_dir / "model.joblib").read_bytes() == b"k" * 100
    assert [(r.uri, r.entry) for r in done] == [(gone, True)]
    assert done[0].bytes >= 3000  # the unpacked model and the entry's bookkeeping
    (line,) = [r.getMessage() for r in caplog.records if "reclaimed" in r.getMessage()]
    assert gone in line and f"{done[0].bytes} bytes" in line, line


def test_an_entry_a_live_process_holds_is_never_removed(
    server: ArtifactServer, config: StorageConfig
) -> None:
    """Leases are what a running (or restartable, scaled-to-zero) revision holds, in this process or another
    sharing the cache: the sweep never removes what is held, and removes it once nobody does."""
    url = server.put("/held/model.joblib", b"held")
    folder = resolve(url, config)  # held here
    assert reclaim(config.cache_dir, set()) == [] and (folder / "model.joblib").is_file()
    release(folder)
    other = subprocess.Popen(  # another process (a second `serving up` on this cache) holds the same lease
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'rb'); fcntl.flock(f, fcntl.LOCK_SH); print('held', flush=True);"
            " sys.stdin.read()",
            str(leases.lease_file(folder.parent, folder.name)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        assert reclaim(config.cache_dir, set()) == [] and (folder / "model.joblib").is_file()
    finally:
        assert other.stdin is not None
        other.stdin.close()
        other.wait(timeout=5)
    assert [r.entry for r in reclaim(config.cache_dir, set())] == [True]
    assert not folder.parent.exists()


def test_a_kept_entry_loses_only_the_older_copies_nobody_holds(
    server: ArtifactServer, config: StorageConfig
) -> None:
    """An older copy held by a revision when the newer one came stays after that revision retires, until
    the URI is downloaded again: the sweep prunes it as that download would, never the current one."""
    url = server.put("/chg/model.joblib", b"one")
    first = resolve(url, config)
    server.put("/chg/model.joblib", b"two")
    second = resolve(url, config)
    assert first.is_dir(), "held: not pruned by the newer download"
    release(first)
    done = reclaim(config.cache_dir, {second.parent})
    assert [(r.uri, r.entry) for r in done] == [(url, False)]
    assert not first.exists() and (second / "model.joblib").read_bytes() == b"two"
    assert not leases.lease_file(first.parent, first.name).exists()
    release(second)
    assert reclaim(config.cache_dir, {second.parent}) == [], "the current copy of a kept entry stays"


def test_an_entry_being_downloaded_is_left_for_the_next_sweep(
    server: ArtifactServer, config: StorageConfig
) -> None:
    url = server.put("/busy/model.joblib", b"busy")
    release(resolve(url, config))
    entry = _entry(url, config)
    with leases.locked(entry):  # as a download (or a prune) of that URI holds it
        assert reclaim(config.cache_dir, set()) == []
    assert entry.is_dir()
    assert len(reclaim(config.cache_dir, set())) == 1 and not entry.exists()


def test_a_download_waiting_while_its_entry_is_reclaimed_makes_the_entry_again(
    server: ArtifactServer, config: StorageConfig
) -> None:
    """A download blocked on the entry's lock while a sweep removes that entry must not write into the removed
    folder (it failed "cannot write the cache"): it makes the entry again and fetches into it."""
    url = server.put("/race/model.joblib", b"race")
    release(resolve(url, config))
    entry = _entry(url, config)
    lock_inode = (entry / leases.LOCK_NAME).stat().st_ino
    result: list[Any] = []
    with leases.locked_now(entry) as mine:  # the sweep's hold
        assert mine
        waiter = threading.Thread(target=lambda: result.append(_try(lambda: resolve(url, config))))
        waiter.start()
        _poll(lambda: _waiting_on(lock_inode))  # the kernel lists the download as blocked on that lock
        remove_tree(entry)  # as the sweep does, still holding the lock
    waiter.join(timeout=5)
    (folder,) = result
    assert isinstance(folder, Path), folder
    assert (folder / "model.joblib").read_bytes() == b"race" and entry.is_dir()
    assert server.count("/race/model.joblib", 200) == 2, "fetched again into the new entry"


def _try(call: Callable[[], Path]) -> Path | BaseException:
    try:
        return call()
    except BaseException as exc:  # handed to the test thread
        return exc


def _waiting_on(inode: int) -> bool:
    """Whether /proc/locks shows a process blocked (`->`) on a FLOCK of this inode."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and "FLOCK" in fields and fields[-3].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


def test_entries_are_only_the_downloads() -> None:
    """Folders the sweep must never touch: `files/` (local files), `composed/`, anything named otherwise."""
    cache = Path("/c")
    assert entry_of("/c/0123456789abcdef/abcd/model", cache) == Path("/c/0123456789abcdef")
    assert entry_of("/c/objects/0123456789abcdef/d1", cache) == Path("/c/objects/0123456789abcdef")
    for other in ("/c/files/0123456789abcdef", "/c/composed/1-2-x", "/c/.compiled/x", "/elsewhere/x", "/c"):
        assert entry_of(other, cache) is None, other


def test_foreign_folders_in_the_cache_are_left_alone(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for name in ("files/0123456789abcdef", "composed/1-2-x", ".compiled/abc", "notes"):
        (cache / name).mkdir(parents=True)
        (cache / name / "f").write_bytes(b"x")
    assert reclaim(cache, set()) == []
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("f")) == [
        ".compiled/abc/f",
        "composed/1-2-x/f",
        "files/0123456789abcdef/f",
        "notes/f",
    ]


# -- a full disk -------------------------------------------------------------------------------------------


def _to_dev_full(
    real_open: Callable[..., IO[Any]], when: Callable[[str, str], bool]
) -> Callable[..., IO[Any]]:
    """`open` that sends the files `when(path, mode)` picks to /dev/full (writes fail with the kernel's ENOSPC)."""

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> IO[Any]:
        if isinstance(file, (str, os.PathLike)) and when(os.fspath(file), mode):
            return real_open(DEV_FULL, mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    return fake_open


needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full on this machine")


@needs_dev_full
def test_a_full_disk_while_downloading_says_so_and_leaves_nothing(
    server: ArtifactServer, config: StorageConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download's file is opened on /dev/full: its first write gets ENOSPC from the kernel, as on a full
    disk. The message names the cache folder and the size being written; nothing half-written stays."""
    from serving.storage import http

    url = server.put("/big/model.joblib", b"m" * 5000)
    monkeypatch.setattr(
        http, "open", _to_dev_full(builtins.open, lambda p, m: p.endswith("/download")), raising=False
    )
    with pytest.raises(StorageError) as failure:
        resolve(url, config)
    entry = _entry(url, config)
    assert failure.value.message == f"{url}: no space left on device under {entry} (writing 5000 bytes)"
    assert sorted(p.name for p in entry.iterdir()) == [leases.LOCK_NAME]


@needs_dev_full
@pytest.mark.parametrize("kind", ["zip", "tgz"])
def test_a_full_disk_while_unpacking_is_not_a_bad_archive(
    server: ArtifactServer, config: StorageConfig, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The audit's disk-full pull said `bad zip archive: [Errno 28] No space left on device`: the archive was
    fine. Each unpacked member is written to /dev/full (tarfile opens through its own `bltn_open`)."""
    from serving.storage import archives

    files = {"model.joblib": b"z" * 4000, "labels.txt": b"abc"}
    url = server.put(f"/pack/model.{kind}", zipped(files) if kind == "zip" else tgz(files))
    to_full = _to_dev_full(builtins.open, lambda p, m: "/out/" in p and "w" in m)
    monkeypatch.setattr(archives, "open", to_full, raising=False)
    monkeypatch.setattr(tarfile, "bltn_open", to_full)
    with pytest.raises(StorageError) as failure:
        resolve(url, config)
    entry = _entry(url, config)
    message = failure.value.message
    assert message == f"{url}: no space left on device under {entry} (writing 4003 bytes)", message
    assert "archive" not in message
    assert sorted(p.name for p in entry.iterdir()) == [leases.LOCK_NAME], "nothing half-unpacked stays"


def test_an_sdk_wrapped_enospc_is_still_a_full_disk(tmp_path: Path) -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise RuntimeError("client error") from exc
    except RuntimeError as wrapped:
        assert no_space(wrapped)
    assert not no_space(OSError(errno.EIO, "I/O error")) and not no_space(ValueError("x"))
    assert disk_full("s3://b/m", tmp_path, 10, so_far=True).message == (
        f"s3://b/m: no space left on device under {tmp_path} (10 bytes written when it filled)"
    )
