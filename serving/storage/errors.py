"""Storage failures, inside the one error family: a storage problem is an artifact problem.

`StorageError` (400) is anything that keeps a `storageUri` from becoming a local model directory;
`StorageRefused` (403) is a policy refusal (outside the allowed roots, path traversal, unsafe archive).
Messages always name the URI so a revision's status says which artifact failed. A full disk is said as such
(`disk_full`), whatever step hit it: it is neither a broken archive nor an unreachable store.
"""

from __future__ import annotations

import errno
from pathlib import Path
from urllib.parse import urlsplit

from serving.errors import ArtifactError, ArtifactRefused


class StorageError(ArtifactError):
    """The artifact behind a storageUri cannot be fetched, found or unpacked."""


class StorageRefused(ArtifactRefused, StorageError):
    """Refused by policy: traversal, a path outside the allowed roots, an archive member escaping its folder."""


def redact(uri: str) -> str:
    """The URI without credentials or query string (presigned URLs carry tokens there): safe for logs."""
    parts = urlsplit(uri)
    if not parts.netloc:
        return uri
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" + ("?..." if parts.query else "")


def no_space(exc: BaseException) -> bool:
    """Whether `exc`, or what it was raised from (an SDK may wrap it), is the disk being full (ENOSPC)."""
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, OSError) and chain.errno == errno.ENOSPC:
            return True
        chain = chain.__cause__ or chain.__context__
    return False


def disk_full(uri: str, folder: Path, size: int | None = None, *, so_far: bool = False) -> StorageError:
    """The error for a write that found the disk full: where, and how much was being written when known (or,
    `so_far`, how much had been written when it filled). Not a refusal: once space is freed the same fetch
    succeeds (`serving up` retries it)."""
    if size is None:
        amount = ""
    elif so_far:
        amount = f" ({size} bytes written when it filled)"
    else:
        amount = f" (writing {size} bytes)"
    return StorageError(f"{uri}: no space left on device under {folder}{amount}")
