"""Unpack downloaded model archives (.tar.gz, .tgz, .tar, .zip) without letting a member escape its folder.

Every member is checked before anything is written: absolute names, `..` components, links that point
outside, device files and FIFOs are refused (zip-slip / tar-slip), and the unpacked total is capped so a
small archive can't fill the disk. tarfile's own `data` filter runs as a second line of defence.
"""

from __future__ import annotations

import posixpath
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import IO

from serving.storage.errors import StorageError, StorageRefused, disk_full, no_space

ARCHIVE_SUFFIXES = {".tar.gz": "tar", ".tgz": "tar", ".tar": "tar", ".zip": "zip"}
MAX_MEMBERS = 100_000
UNPACK_FACTOR = 8  # unpacked total may be at most this many times the download cap


def archive_kind(filename: str) -> str | None:
    """'tar' or 'zip' when the URL's file name says it is an archive, else None (a plain model file)."""
    lower = filename.lower()
    return next((kind for suffix, kind in ARCHIVE_SUFFIXES.items() if lower.endswith(suffix)), None)


def unpack(uri: str, archive: Path, dest: Path, kind: str, max_bytes: int, where: Path | None = None) -> None:
    """Unpack `archive` into the (empty) `dest`; StorageRefused for an unsafe member, StorageError if broken.
    A full disk is said as such, naming `where` (the cache folder; default `dest`) and the unpacked size."""
    limit = max_bytes * UNPACK_FACTOR
    size: list[int] = []  # the unpacked total, once every member is checked
    try:
        if kind == "zip":
            _unzip(uri, archive, dest, limit, size)
        else:
            _untar(uri, archive, dest, limit, size)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        if no_space(exc):  # the archive is fine, the disk is not (it was "bad zip archive: [Errno 28]")
            raise disk_full(uri, where or dest, size[0] if size else None) from exc
        raise StorageError(f"{uri}: bad {kind} archive: {exc}") from exc


def _member_path(uri: str, name: str) -> str:
    """The normalised relative member name; refuses absolute names and any '..' component."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        raise StorageRefused(f"{uri}: archive member {name!r} has an absolute path")
    if ".." in clean.split("/"):
        raise StorageRefused(f"{uri}: archive member {name!r} escapes the model folder ('..')")
    return posixpath.normpath(clean)


def _untar(uri: str, archive: Path, dest: Path, limit: int, size: list[int]) -> None:
    with tarfile.open(archive, mode="r:*") as tar:
        members = tar.getmembers()
        if len(members) > MAX_MEMBERS:
            raise StorageRefused(f"{uri}: archive has more than {MAX_MEMBERS} members")
        total = 0
        for member in members:
            name = _member_path(uri, member.name)
            if member.issym() or member.islnk():
                _check_link(uri, member, name)
            elif not (member.isfile() or member.isdir()):
                raise StorageRefused(f"{uri}: archive member {member.name!r} is a device or FIFO")
            total += max(member.size, 0)
            if total > limit:
                raise StorageRefused(f"{uri}: archive unpacks to more than {limit} bytes")
        size.append(total)
        try:
            tar.extractall(dest, members=members, filter="data")  # PEP 706 (3.11.4+): resolves link chains
        except tarfile.FilterError as exc:
            raise StorageRefused(f"{uri}: unsafe archive member: {exc}") from exc


def _check_link(uri: str, member: tarfile.TarInfo, name: str) -> None:
    target = member.linkname.replace("\\", "/")
    if target.startswith("/"):
        raise StorageRefused(f"{uri}: archive link {member.name!r} points to an absolute path {target!r}")
    # symlink targets are relative to the link's folder; hard link targets to the archive root
    joined = posixpath.join(posixpath.dirname(name), target) if member.issym() else target
    normal = posixpath.normpath(joined)
    if normal == ".." or normal.startswith("../"):
        raise StorageRefused(f"{uri}: archive link {member.name!r} -> {target!r} escapes the model folder")


def _unzip(uri: str, archive: Path, dest: Path, limit: int, size: list[int]) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise StorageRefused(f"{uri}: archive has more than {MAX_MEMBERS} members")
        total = 0
        for info in infos:
            _member_path(uri, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise StorageRefused(f"{uri}: archive member {info.filename!r} is a symlink")
            total += info.file_size
            if total > limit:
                raise StorageRefused(f"{uri}: archive unpacks to more than {limit} bytes")
        size.append(total)
        for info in infos:
            target = dest / _member_path(uri, info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                _copy_capped(uri, src, out, info.file_size)


def _copy_capped(uri: str, src: IO[bytes], out: IO[bytes], declared: int) -> None:
    """Copy at most the declared size: a zip whose header lies about its size is refused, not trusted."""
    written = 0
    while chunk := src.read(1 << 20):
        written += len(chunk)
        if written > declared:
            raise StorageRefused(f"{uri}: archive member is larger than its header says")
        out.write(chunk)


def model_root(unpacked: Path) -> Path:
    """The folder to serve: an archive holding one top-level folder (the usual `tar czf m.tgz model/`) is
    served from inside it, so the model isn't mistaken for a repository of sub-models."""
    entries = [p for p in unpacked.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return unpacked


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
