"""`did you mean 'storageUri'?` for an unknown field: the closest name the spec knows at that path.

Pydantic reports an unknown field by its location only; this walks the pydantic model tree along that
location to the model that refused it and compares the field with that model's names (as YAML spells them:
camelCase aliases) with difflib. Works for every spec model, nested in lists and dicts too.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel


def did_you_mean(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """`; did you mean 'x'?` for the unknown field at `loc` (pydantic's error location), or ``."""
    if not loc or not isinstance(loc[-1], str):
        return ""
    model = _model_at(root, loc[:-1])
    if model is None:
        return ""
    known = [info.alias or name for name, info in model.model_fields.items()]
    lowered = {k.lower(): k for k in known}  # `storageURI`, `STORAGE_URI`: same letters, other case (first:
    match = lowered.get(loc[-1].lower().replace("_", "").replace("-", ""))  # `storage` is closer to difflib)
    close = [match] if match else difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _model_at(root: type[BaseModel], path: tuple[int | str, ...]) -> type[BaseModel] | None:
    current: Any = root
    for part in path:
        if isinstance(part, int):
            current = _element(current)
            continue
        model = _as_model(current)
        if model is None:
            return None
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return None
        current = field.annotation
    return _as_model(current)


def _as_model(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside `X`, `X | None`, or a list/dict of X (the first one found)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if arg is type(None):
            continue
        found = _as_model(arg)
        if found is not None:
            return found
    return None


def _element(annotation: Any) -> Any:
    """What an index into `annotation` yields: a list's item type (Optional unwrapped)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _element(args[0]) if args else annotation
    return args[0] if args else annotation
