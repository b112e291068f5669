"""Kubernetes' `$(VAR)` references in a container's `args`, `command` and env `value`s, expanded as the kubelet
expands them, for the processes `serving up` starts (on Kubernetes the kubelet does it).

`$(NAME)` becomes the value of NAME when the container defines it (an env value: only from the variables
listed before it); an unknown one stays as written; `$$` is a literal `$` (so `$$(NAME)` is `$(NAME)`). A
model container's `args: ["--model_name=$(MODEL_NAME)"]` then serves the model under the name its env gives,
as on Kubernetes, instead of under the literal text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_REFERENCE = re.compile(r"\$\$|\$\(([^)]*)\)")


def expand(text: str, values: Mapping[str, str]) -> str:
    """One string, expanded once (never again: `$$(A)` stays `$(A)`)."""
    if "$" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:  # `$$`
            return "$"
        found = values.get(name)
        return match.group(0) if found is None else found

    return _REFERENCE.sub(one, text)


def expand_all(texts: Iterable[str], values: Mapping[str, str]) -> list[str]:
    return [expand(text, values) for text in texts]


def expanded_env(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """An env list (name, value) in order, each value expanded from the variables defined before it."""
    out: dict[str, str] = {}
    for name, value in pairs:
        out[name] = expand(value, out)
    return out
