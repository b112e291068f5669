"""The local control plane's state directory: one JSON file per InferenceService, written atomically.

A failed write (disk full, read-only directory) raises `StateError` and leaves the last good file in place,
so the applied configuration and what is on disk never disagree.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import orjson

from serving.errors import ServingError

DEFAULT_STATE_DIR = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "serving"


class StateError(ServingError):
    status_code = 507


class StateStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.services_dir = root / "services"

    def prepare(self) -> None:
        try:
            self.services_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the state directory {self.root}: {exc.strerror or exc}") from exc

    def _path(self, namespace: str, name: str) -> Path:
        return self.services_dir / f"{namespace}__{name}.json"

    def save(self, namespace: str, name: str, record: dict[str, Any]) -> None:
        write_atomic(self._path(namespace, name), orjson.dumps(record, option=orjson.OPT_INDENT_2))

    def delete(self, namespace: str, name: str) -> None:
        try:
            self._path(namespace, name).unlink(missing_ok=True)
        except OSError as exc:
            raise StateError(f"cannot remove state of {namespace}/{name}: {exc.strerror or exc}") from exc

    def load_all(self) -> list[dict[str, Any]]:
        records = []
        for path in sorted(self.services_dir.glob("*.json")):
            try:
                records.append(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError):
                continue  # a foreign or damaged file: skip it rather than refuse to start
        return records

    def token(self) -> str:
        """The control API token, created once (mode 0600) in the state directory."""
        path = self.root / "token"
        if path.exists():
            return path.read_text().strip()
        token = secrets.token_urlsafe(32)
        write_atomic(path, token.encode(), mode=0o600)
        return token


SERVER_FILE = "server"  # the control API's URL of the `serving up` using this state directory, while it runs


def write_server(state_dir: Path, url: str) -> None:
    """Where this state directory's `serving up` listens, and its pid: `serving apply --state-dir DIR` goes
    there, and only while that process lives (it went to the default port, sending DIR's token to whatever
    listened on it)."""
    write_atomic(state_dir / SERVER_FILE, orjson.dumps({"url": url, "pid": os.getpid()}), mode=0o600)


def clear_server(state_dir: Path, url: str) -> None:
    """Forget the URL on shutdown, unless another `serving up` wrote its own meanwhile."""
    if read_server(state_dir) == url:
        with contextlib.suppress(OSError):
            (state_dir / SERVER_FILE).unlink()


def read_server(state_dir: Path) -> str | None:
    """The URL of the `serving up` running with this state directory; None when none is (no file, or its
    process is gone: a kill -9 leaves the file)."""
    try:
        record = orjson.loads((state_dir / SERVER_FILE).read_bytes())
        url, pid = record["url"], int(record["pid"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return str(url)


def read_token(state_dir: Path) -> str | None:
    try:
        return (state_dir / "token").read_text().strip()
    except OSError:
        return None


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """`data` at `path` whole or not at all (temp file, fsync, rename). Mode 0600: the specs kept here may
    hold credentials written in a storageUri, as the Secrets and the token do."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StateError(f"cannot write {path}: {exc.strerror or exc}") from exc
