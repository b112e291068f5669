"""Loading a user's `module:Class` (a runtime or a transformer), checked against the base it must extend."""

from __future__ import annotations

import importlib
import os
import sys

from serving.errors import ArtifactError


def load_class(target: str, base: type, what: str) -> type:
    """Import `module:Class` and check it subclasses `base`; `what` names it in errors ("runtime")."""
    module_name, _, class_name = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # a user's module next to them, as uvicorn's --app-dir "." does
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ArtifactError(f"cannot import {what} {target!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ArtifactError(f"{target!r} is not a {base.__module__}.{base.__qualname__} subclass")
    return cls
