"""Loading a user's `module:Class` (a runtime or a transformer), checked against the base it must extend."""

from __future__ import annotations

import functools
import importlib
import os
import sys

from serving.errors import ArtifactError


@functools.cache
def _working_dir_importable() -> None:
    """A user's module next to them is importable, as uvicorn's `--app-dir .` does: the directory the
    process started in goes on `sys.path` once per process (not on every load, and never twice)."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def load_class(target: str, base: type, what: str) -> type:
    """Import `module:Class` and check it subclasses `base`; `what` names it in errors ("runtime")."""
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise ArtifactError(f"{what} {target!r}: expected 'module:Class'")
    _working_dir_importable()
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, SyntaxError) as exc:
        raise ArtifactError(f"cannot import {what} {target!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ArtifactError(f"{target!r} is not a {base.__module__}.{base.__qualname__} subclass")
    return cls
