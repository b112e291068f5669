"""What `serving rollout history` and `serving rollout undo` read: per InferenceService, the document each
revision was created from and every rollout event (created, rolled out, rolled back), kept in the state
directory beside the service (atomic writes, bounded), so undo works after a restart and after a promotion.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson

from serving.control.local.state import write_atomic
from serving.errors import ServingError

log = logging.getLogger("serving.local")

EVENT_LIMIT = 100
DOCUMENT_LIMIT = 20  # revisions whose documents are kept for undo


class RolloutHistory:
    def __init__(self, root: Path) -> None:
        self.dir = root / "history"
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}

    def _path(self, namespace: str, name: str) -> Path:
        return self.dir / f"{namespace}__{name}.json"

    def load(self, namespace: str, name: str) -> dict[str, Any]:
        key = (namespace, name)
        if key not in self._cache:
            try:
                self._cache[key] = orjson.loads(self._path(namespace, name).read_bytes())
            except (OSError, orjson.JSONDecodeError):
                self._cache[key] = {"documents": {}, "events": []}
        return self._cache[key]

    def _save(self, namespace: str, name: str) -> None:
        """Best effort: a history that cannot be written never blocks a rollout (it is logged)."""
        try:
            write_atomic(
                self._path(namespace, name),
                orjson.dumps(self.load(namespace, name), option=orjson.OPT_INDENT_2),
            )
        except ServingError as exc:
            log.error("could not write the rollout history of %s/%s: %s", namespace, name, exc.message)

    def remember(self, namespace: str, name: str, revision: str, document: dict[str, Any]) -> None:
        """Keep the document a revision was created from (the newest DOCUMENT_LIMIT revisions)."""
        record = self.load(namespace, name)
        documents: dict[str, Any] = record["documents"]
        if revision in documents:
            return
        documents[revision] = document
        for old in list(documents)[:-DOCUMENT_LIMIT]:
            del documents[old]
        self.event(namespace, name, revision, "created", "applied")

    def event(self, namespace: str, name: str, revision: str | None, event: str, reason: str) -> None:
        record = self.load(namespace, name)
        record["events"].append(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "revision": revision,
                "event": event,
                "reason": reason,
            }
        )
        del record["events"][:-EVENT_LIMIT]
        self._save(namespace, name)

    def document(self, namespace: str, name: str, revision: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = self.load(namespace, name)["documents"].get(revision)
        return doc

    def forget(self, namespace: str, name: str) -> None:
        self._cache.pop((namespace, name), None)
        self._path(namespace, name).unlink(missing_ok=True)
