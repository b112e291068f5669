"""`serving up` gives the download cache's disk back once no revision it keeps needs a copy (audit
/tmp/audit-store2 F4: a deleted service's 3 GiB stayed for ever), and never a copy a revision it keeps may
start from again: a running or scaled-to-zero one (its lease), a stopped one, the one before for a rollback,
one in the rollout history for `rollout undo`. In-process: fake replicas (tests.test_control_local), a real
http artifact server on loopback, real cache folders; `serving up` restarts are new control planes on the
same state directory."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.control.local.control_plane import DOWNLOADS, LocalControlPlane
from serving.revision import Revision
from serving.spec import parse
from serving.storage import StorageConfig, release, resolve
from serving.storage.http import cache_entry
from serving.storage.leases import held
from tests.test_control_local import _until
from tests.test_control_retry import _isvc, _plane, _ready, running
from tests.test_storage_http import ArtifactServer


@pytest.fixture
def artifacts() -> Iterator[ArtifactServer]:
    with ArtifactServer() as server:
        yield server


def _apply_doc(plane: LocalControlPlane, doc: dict[str, Any]) -> Any:
    return plane.apply(parse(doc), doc)


def _revision(doc: dict[str, Any]) -> str:
    return Revision.from_spec(parse(doc)).name


def _swept(plane: LocalControlPlane) -> bool:
    """No sweep due or running: the last retirement's sweep is over."""
    return not plane._reclaim_due and plane._reclaiming is None


def _retired(plane: LocalControlPlane, revision: str, folder: Path) -> bool:
    """The revision's runner is gone and its lease given back (its sweep is then due, or done)."""
    return ("default", revision) not in plane.runners and held(folder) == 0


@pytest.mark.asyncio
async def test_a_deleted_services_download_is_reclaimed_and_said(
    tmp_path: Path, artifacts: ArtifactServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="serving.storage")
    url = artifacts.put("/gone/model.joblib", b"x" * 4000)
    async with running(_plane(tmp_path)) as plane:
        await _apply_doc(plane, _isvc("gone", url))
        await _until(lambda: _ready(plane, "gone"))
        entry = cache_entry(url, plane.storage.cache_dir)
        assert (plane.store.root / DOWNLOADS / f"default__{_revision(_isvc('gone', url))}").is_file()
        await plane.delete("default", "gone")
        await _until(lambda: not entry.exists())
        await _until(lambda: _swept(plane))
        assert list((plane.store.root / DOWNLOADS).iterdir()) == [], "its note goes with it"
    (line,) = [r.getMessage() for r in caplog.records if "reclaimed" in r.getMessage()]
    assert url in line and " bytes" in line and int(line.split(", ")[1].split()[0]) >= 4000, line


@pytest.mark.asyncio
async def test_copies_a_kept_revision_may_start_from_again_stay_until_it_is_gone(
    tmp_path: Path, artifacts: ArtifactServer
) -> None:
    """v1 (A) -> v2 (B) -> v3 (C): v2 is the revision before (a rollback's), v1 is only in the rollout
    history (`rollout undo`). Neither runs nor holds a lease, yet their copies stay, through a sweep and a
    restart of `serving up`; with the artifact server down, v3 comes back and v1 (undo) is served from them.
    Deleting the service then gives all three back."""
    urls = [artifacts.put(f"/{name}/model.joblib", name.encode() * 500) for name in ("a", "b", "c")]
    docs = [_isvc("svc", url) for url in urls]
    async with running(_plane(tmp_path)) as plane:
        folders = []
        for doc in docs:
            await _apply_doc(plane, doc)
            await _until(lambda doc=doc: plane.revision_ready("default", _revision(doc)))
            folders.append(plane.runners[("default", _revision(doc))].model_dir)
        await _until(lambda: _retired(plane, _revision(docs[0]), folders[0]))
        await _until(lambda: _retired(plane, _revision(docs[1]), folders[1]))
        await _until(lambda: _swept(plane))
        assert all((folder / "model.joblib").is_file() for folder in folders)

    artifacts.httpd.shutdown()  # the store is unreachable from now on: only the cached copies can serve
    artifacts.httpd.server_close()
    async with running(_plane(tmp_path)) as plane:  # the sweep at start keeps them too
        await _until(lambda: _ready(plane, "svc"))
        await _until(lambda: _swept(plane))
        await _apply_doc(plane, docs[0])  # what `serving rollout undo --to-revision v1` applies
        await _until(lambda: plane.revision_ready("default", _revision(docs[0])))
        assert plane.runners[("default", _revision(docs[0]))].model_dir == folders[0]
        await plane.delete("default", "svc")
        entries = [cache_entry(url, plane.storage.cache_dir) for url in urls]
        await _until(lambda: not any(entry.exists() for entry in entries))


@pytest.mark.asyncio
async def test_a_stopped_service_keeps_its_copy_for_the_resume(
    tmp_path: Path, artifacts: ArtifactServer
) -> None:
    """KServe's stop annotation retires the processes (and the lease) but keeps the revision: its copy
    stays, and the resume is a 304, not a second download."""
    url = artifacts.put("/stop/model.joblib", b"s" * 1000)
    doc = _isvc("stop", url)
    stopped = _isvc("stop", url)
    stopped["metadata"]["annotations"] = {"serving.kserve.io/stop": "true"}
    async with running(_plane(tmp_path)) as plane:
        await _apply_doc(plane, doc)
        await _until(lambda: _ready(plane, "stop"))
        folder = plane.runners[("default", _revision(doc))].model_dir
        await _apply_doc(plane, stopped)
        await _until(lambda: _retired(plane, _revision(doc), folder))
        await _until(lambda: _swept(plane))
        assert (folder / "model.joblib").is_file()
        await _apply_doc(plane, doc)
        await _until(lambda: _ready(plane, "stop"))
    assert (artifacts.count("/stop/model.joblib", 200), artifacts.count("/stop/model.joblib", 304)) == (1, 1)


@pytest.mark.asyncio
async def test_a_copy_left_by_an_earlier_run_is_reclaimed_at_start(
    tmp_path: Path, artifacts: ArtifactServer
) -> None:
    """A download no stored service uses (deleted before this version, or while `serving up` was stopped
    with its cache shared) goes when `serving up` starts; a restored service's copy stays."""
    cache = tmp_path / "state" / "cache"
    orphan = artifacts.put("/orphan/model.joblib", b"o" * 2000)
    release(resolve(orphan, StorageConfig(cache_dir=cache)))
    assert cache_entry(orphan, cache).is_dir()
    url = artifacts.put("/kept/model.joblib", b"k")
    async with running(_plane(tmp_path)) as plane:
        await _apply_doc(plane, _isvc("kept", url))
        await _until(lambda: _ready(plane, "kept"))
        await _until(lambda: not cache_entry(orphan, cache).exists())
    async with running(_plane(tmp_path)) as plane:
        await _until(lambda: _ready(plane, "kept"))
        await _until(lambda: _swept(plane))
        assert cache_entry(url, cache).is_dir()
