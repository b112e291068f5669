"""Local paths, `file://` and `pvc://`: map the URI to a path, refuse traversal, hand back a model directory.

Every path is resolved (symlinks followed) before it is checked, so `..` or a symlink can't step outside
a persistent volume claim or the configured allowed roots.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from serving.runtimes import ARTIFACT_SUFFIXES
from serving.storage.errors import StorageError, StorageRefused

if TYPE_CHECKING:
    from serving.storage import StorageConfig

MAX_FINGERPRINT_FILES = 10_000  # a model folder is small; stop hashing stat() results beyond this


def local_path(uri: str, config: StorageConfig) -> Path:
    """The existing, resolved local path `uri` names (a file or a directory)."""
    if uri.lower().startswith("pvc://"):
        return _pvc_path(uri, config)
    raw = uri
    if uri.lower().startswith("file://"):
        raw = unquote(uri[len("file://") :])
        if raw.startswith("localhost/"):
            raw = raw[len("localhost") :]
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = (config.base_dir or Path.cwd()) / path
    # checked before existence (and again after: the target may be a symlink), so a refused path
    # never reveals whether something exists there
    for candidate in (_lexical(path), None):
        resolved = candidate or _existing(uri, path)
        if config.allowed_roots and not any(_inside(resolved, root) for root in config.allowed_roots):
            roots = ", ".join(str(r) for r in config.allowed_roots)
            raise StorageRefused(f"{uri}: {resolved} is outside the allowed model roots ({roots})")
    if config.allowed_roots:
        roots = ", ".join(str(r) for r in config.allowed_roots)
        _no_link_out(uri, resolved, config.allowed_roots, f"the allowed model roots ({roots})")
    return resolved


def _pvc_path(uri: str, config: StorageConfig) -> Path:
    if config.pvc_root is None:
        raise StorageError(f"{uri}: pvc:// needs a PVC root on this machine (serving up --pvc-root DIR)")
    rest = unquote(uri[len("pvc://") :])
    claim, _, inner = rest.partition("/")
    if not claim or claim in (".", "..") or "\\" in claim:
        raise StorageRefused(f"{uri}: invalid persistent volume claim name {claim!r}")
    claim_root = (Path(config.pvc_root) / claim).resolve()
    if inner.startswith("/"):
        raise StorageRefused(f"{uri}: the path inside the claim must be relative")
    for candidate in (_lexical(claim_root / inner), None):  # before existence, and after it
        resolved = candidate or _existing(uri, claim_root / inner)
        if not _inside(resolved, claim_root):
            raise StorageRefused(f"{uri}: path escapes persistent volume claim '{claim}'")
    _no_link_out(uri, resolved, (claim_root,), f"persistent volume claim '{claim}'")
    return resolved


def _no_link_out(uri: str, folder: Path, roots: tuple[Path, ...], where: str) -> None:
    """No symlink under a model folder may lead out of where it must stay: the files a model loads are
    confined as its path is (a folder inside the claim whose `model.joblib` links to /elsewhere is refused)."""
    if not folder.is_dir():
        return
    for parent, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            entry = Path(parent) / name
            if entry.is_symlink() and not any(_inside(_lexical(entry), root) for root in roots):
                inner = entry.relative_to(folder)
                raise StorageRefused(f"{uri}: {inner} is a symlink that leads out of {where}")


def _lexical(path: Path) -> Path:
    """Resolved as far as it exists (symlinks followed), without requiring the target to exist."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # symlink loop: judge the spelled path
        return Path(os.path.abspath(path))


def _existing(uri: str, path: Path) -> Path:
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise StorageError(f"{uri}: no such file or directory ({path})") from None
    except (OSError, RuntimeError) as exc:  # permission denied, symlink loop
        raise StorageError(f"{uri}: cannot read {path}: {exc}") from exc
    if not (resolved.is_dir() or resolved.is_file()):
        raise StorageError(f"{uri}: {resolved} is neither a file nor a directory")
    return resolved


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.is_relative_to(Path(root).expanduser().resolve())
    except OSError:
        return False


def model_dir_for(uri: str, path: Path, config: StorageConfig) -> Path:
    """`path` if it is a directory; for a single file, its folder when it is the only model file there,
    else a cache folder holding just a hard link (or copy) of it."""
    if path.is_dir():
        return path
    others = [
        p
        for p in path.parent.iterdir()
        if p != path and p.is_file() and not p.name.startswith(".") and p.suffix.lower() in ARTIFACT_SUFFIXES
    ]
    if not others:
        return path.parent
    return _isolate(uri, path, Path(config.cache_dir))


def _isolate(uri: str, path: Path, cache_dir: Path) -> Path:
    folder = cache_dir / "files" / hashlib.sha256(str(path).encode()).hexdigest()[:16]
    target = folder / path.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if target.exists() and (target.samefile(path) or _same_stat(target, path)):
            return folder
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copy2(path, tmp)  # another filesystem
        os.replace(tmp, target)  # atomic: a reader sees the old or the new file, never half of one
    except OSError as exc:
        raise StorageError(f"{uri}: cannot stage {path.name} in {folder}: {exc.strerror or exc}") from exc
    return folder


def _same_stat(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    return sa.st_size == sb.st_size and sa.st_mtime_ns == sb.st_mtime_ns


def path_fingerprint(uri: str, path: Path) -> str:
    """Hash of relative names, sizes and mtimes: cheap (stat only), changes whenever a file is rewritten."""
    digest = hashlib.sha256()
    entries = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for entry in entries[:MAX_FINGERPRINT_FILES]:
        try:
            st = entry.stat()
        except OSError as exc:
            raise StorageError(f"{uri}: cannot stat {entry}: {exc.strerror or exc}") from exc
        name = entry.name if entry == path else str(entry.relative_to(path))
        digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
