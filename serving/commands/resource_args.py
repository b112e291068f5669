"""kubectl's ways of naming an InferenceService on the command line, for `get` and `delete`.

`NAME`, `isvc NAME`, `inferenceservices NAME`, `isvc/NAME` (and the same without NAME for a list); the kind
names kubectl accepts for KServe's CRD, with or without the API group.
"""

from __future__ import annotations

from serving.errors import BadRequest

KIND_NAMES = frozenset({"isvc", "inferenceservice", "inferenceservices"})
GROUPS = ("serving.kserve.io", "serving.dev")


def _is_kind(word: str) -> bool:
    kind, _, group = word.lower().partition(".")
    return kind in KIND_NAMES and (not group or group in GROUPS)


def isvc_names(words: list[str]) -> list[str]:
    """The InferenceService names the words mean (empty: all of them); a clear error for anything else."""
    if not words:
        return []
    first, rest = words[0], words[1:]
    if "/" in first:
        return [_slashed(word) for word in words]
    if _is_kind(first):
        if any("/" in word for word in rest):
            raise BadRequest(
                "there is no need to specify a resource type as a separate argument when "
                "passing arguments in resource/name form"
            )
        return rest
    if len(words) == 1:
        return [first]  # `serving get NAME`: the only kind there is
    raise BadRequest(f"unknown resource type {first!r}; serving knows inferenceservices (short name isvc)")


def _slashed(word: str) -> str:
    kind, _, name = word.partition("/")
    if not _is_kind(kind):
        raise BadRequest(f"unknown resource type {kind!r}; serving knows inferenceservices (short name isvc)")
    if not name:
        raise BadRequest(f"{word!r} names no InferenceService; write {kind}/NAME")
    return name
