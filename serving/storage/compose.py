"""KServe's `storageUris`: several URIs fetched into one model folder, each at its place under /mnt/models.

KServe's storage-initializer downloads each URI into its `mountPath` of the pod's model volume, in order; here
each is resolved as a single `storageUri` is (cached, leased) and laid into a folder of its own for the
revision, hard-linked from the download cache where it can be (a user's local files are copied, so later edits
never change a served model). Files of a later item replace an earlier one's of the same name: KServe calls
such overlaps undefined; here the order of the list decides. Each build has a folder of its own (process id
first: a folder whose process is gone is swept by the next build), handed out only once complete and removed
when its revision retires.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from serving.storage import StorageConfig, copy_tree, scheme_of
from serving.storage.archives import remove_tree
from serving.storage.errors import StorageError
from serving.storage.leases import release

COMPOSED = "composed"  # under the cache folder: one folder per revision runner that has storageUris
_built = itertools.count(1)


def composed_dir(config: StorageConfig, owner: str) -> Path:
    """A new folder name for `owner` (a revision) in this process: never one another runner reads."""
    return config.cache_dir / COMPOSED / f"{os.getpid()}-{next(_built)}-{owner}"


def compose(
    items: Sequence[tuple[str, str]], dest: Path, config: StorageConfig, fetch: Callable[[str], Path]
) -> Path:
    """Lay each (uri, subpath) into `dest/subpath`, `fetch(uri)` giving the resolved (leased) folder; returns
    `dest`. Raises the first item's `StorageError` that cannot be fetched (it names its URI); nothing of a
    failed build is left."""
    _sweep(dest.parent)
    done = False
    try:
        for uri, subpath in items:
            target = dest / subpath if subpath else dest
            target.mkdir(parents=True, exist_ok=True)
            single = _local_file(uri, config)
            if single is not None:  # just that file, not the folder it sits in
                (target / single.name).unlink(missing_ok=True)
                shutil.copy2(single, target / single.name)
                continue
            source = fetch(uri)
            try:
                copy_tree(uri, source, target, config)
            finally:
                release(source)  # copied or hard-linked: the cached folder may be pruned later
        done = True
    except OSError as exc:
        raise StorageError(
            f"storageUris: cannot build the model folder {dest}: {exc.strerror or exc}"
        ) from exc
    finally:
        if not done:
            remove_tree(dest)
    return dest


def discard(model_dir: Path | None, config: StorageConfig) -> None:
    """Remove a revision's composed folder once nothing will start from it (other folders are left alone)."""
    if model_dir is not None and model_dir.parent == config.cache_dir / COMPOSED:
        remove_tree(model_dir)


def _sweep(root: Path) -> None:
    """Folders left by a process that is gone (killed before it could discard them)."""
    if not root.is_dir():
        return
    for folder in root.iterdir():
        pid = folder.name.partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            remove_tree(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _local_file(uri: str, config: StorageConfig) -> Path | None:
    if scheme_of(uri) not in ("", "file", "pvc"):
        return None
    from serving.storage import local

    path = local.local_path(uri, config)
    return path if path.is_file() else None
