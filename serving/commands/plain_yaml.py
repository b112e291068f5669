"""YAML for people and for `kubectl apply`: plain block style, never `&id001` anchors or `*id001` aliases.

PyYAML writes an anchor whenever one object appears twice in a document (a shared securityContext, say);
valid YAML, but unreadable in a manifest and surprising in a diff.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_all(documents: Iterable[Any], width: int = 120) -> str:
    return yaml.dump_all(documents, Dumper=PlainDumper, sort_keys=False, width=width)
