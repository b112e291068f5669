"""Optional API-key authentication on the router, per namespace.

Keys come from a file (`--api-keys FILE`: one `NAMESPACE:KEY` per line, `*` for every namespace,
`#` comments) and/or env `SERVING_API_KEYS` (comma-separated `NAMESPACE:KEY`). Clients send
`Authorization: Bearer KEY` or `X-API-Key: KEY`. Comparison is constant-time (hmac.compare_digest).
No or unknown key → 401; a key of another namespace → 403.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from serving.errors import BadRequest, Forbidden, Unauthorized

ANY_NAMESPACE = "*"


@dataclass(frozen=True, slots=True)
class KeyRing:
    keys: tuple[tuple[str, bytes], ...]  # (namespace, sha256(key)); hashing keeps lengths uniform
    public_health: bool = True

    @classmethod
    def load(
        cls, path: Path | None, env_value: str | None = None, public_health: bool = True
    ) -> KeyRing | None:
        entries: list[str] = []
        if path is not None:
            try:
                entries += path.read_text().splitlines()
            except OSError as exc:
                raise BadRequest(f"cannot read API keys from {path}: {exc.strerror or exc}") from exc
        if env_value:
            entries += env_value.split(",")
        keys = []
        for number, raw in enumerate(entries, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            namespace, sep, key = line.partition(":")
            if not sep or not key.strip() or not namespace.strip():
                raise BadRequest(f"API key entry {number} must be NAMESPACE:KEY")
            keys.append((namespace.strip(), _digest(key.strip())))
        return cls(tuple(keys), public_health) if keys else None

    @classmethod
    def from_environment(cls, path: Path | None, public_health: bool = True) -> KeyRing | None:
        return cls.load(path, os.environ.get("SERVING_API_KEYS"), public_health)

    def check(self, namespace: str | None, headers: list[tuple[bytes, bytes]]) -> None:
        """Raise 401/403 unless the request carries a key valid for `namespace` (None: any namespace)."""
        given = _presented_key(headers)
        if given is None:
            raise Unauthorized("an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
        digest = _digest(given)
        known = False
        allowed = False
        for key_namespace, key_digest in self.keys:  # no early exit: same work whichever key matches
            match = hmac.compare_digest(digest, key_digest)
            known |= match
            allowed |= match and (namespace is None or key_namespace in (namespace, ANY_NAMESPACE))
        if not known:
            raise Unauthorized("the API key is not valid")
        if not allowed:
            raise Forbidden(f"the API key is not valid for namespace {namespace!r}")


KEY_HEADERS = frozenset({b"authorization", b"x-api-key"})  # the router's to read; not passed on to replicas


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    return None
