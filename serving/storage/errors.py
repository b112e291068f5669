"""Storage failures, inside the one error family: a storage problem is an artifact problem.

`StorageError` (400) is anything that keeps a `storageUri` from becoming a local model directory;
`StorageRefused` (403) is a policy refusal (outside the allowed roots, path traversal, unsafe archive).
Messages always name the URI so a revision's status says which artifact failed.
"""

from __future__ import annotations

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
