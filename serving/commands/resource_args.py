"""kubectl's ways of naming an InferenceService on the command line, for `get` and `delete`.

`NAME`, `isvc NAME`, `inferenceservices NAME`, `isvc/NAME` (and the same without NAME for a list); the kind
names kubectl accepts for KServe's CRD, with or without the API group. `delete` also takes ServingRuntimes
(`servingruntime|servingruntimes|sr NAME...`, `sr/NAME`), ClusterServingRuntimes (`clusterservingruntime|
clusterservingruntimes|csr NAME...`, `csr/NAME`) and the Secrets and ServiceAccounts `apply -f` kept
(`secret NAME`, `sa/NAME`) and Canaries (`canary NAME`, `canary/NAME`); `get secrets` / `get sa` list their
names, `get canaries` the Canary policies with their phase.
"""

from __future__ import annotations

from serving.errors import BadRequest

KIND_NAMES = frozenset({"isvc", "inferenceservice", "inferenceservices"})
RUNTIME_NAMES = frozenset({"servingruntime", "servingruntimes", "sr"})
CLUSTER_RUNTIME_NAMES = frozenset({"clusterservingruntime", "clusterservingruntimes", "csr"})
CANARY_NAMES = frozenset({"canary", "canaries"})
# core v1 kinds `serving apply -f` keeps (their names only are ever shown)
KEPT_NAMES = {
    "secret": "Secret",
    "secrets": "Secret",
    "serviceaccount": "ServiceAccount",
    "serviceaccounts": "ServiceAccount",
    "sa": "ServiceAccount",
}
GROUPS = ("serving.kserve.io", "serving.dev")
KNOWN = (
    "serving knows inferenceservices (short name isvc), servingruntimes (sr), clusterservingruntimes (csr), "
    "canaries, secrets and serviceaccounts (sa)"
)


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


def kind_of(word: str) -> str | None:
    """The kind a kubectl resource word names (InferenceService, ServingRuntime, ClusterServingRuntime, and
    the core Secret and ServiceAccount)."""
    if word.lower() in KEPT_NAMES:
        return KEPT_NAMES[word.lower()]
    kind, _, group = word.lower().partition(".")
    if group and group not in GROUPS:
        return None
    if kind in KIND_NAMES:
        return "InferenceService"
    if kind in RUNTIME_NAMES:
        return "ServingRuntime"
    if kind in CLUSTER_RUNTIME_NAMES:
        return "ClusterServingRuntime"
    if kind in CANARY_NAMES:
        return "Canary"
    return None


def delete_targets(words: list[str]) -> list[tuple[str, str]]:
    """(kind, name) for each object `serving delete WORDS` names: `NAME`, `KIND NAME...`, `KIND/NAME...`."""
    if not words:
        return []
    first, rest = words[0], words[1:]
    if "/" in first:
        targets = []
        for word in words:
            word_kind, _, name = word.partition("/")
            kind = kind_of(word_kind)
            if kind is None:
                raise BadRequest(f"unknown resource type {word_kind!r}; {KNOWN}")
            if not name:
                raise BadRequest(f"{word!r} names nothing; write {word_kind}/NAME")
            targets.append((kind, name))
        return targets
    kind = kind_of(first)
    if kind is not None:
        if any("/" in word for word in rest):
            raise BadRequest(
                "there is no need to specify a resource type as a separate argument when "
                "passing arguments in resource/name form"
            )
        if not rest:
            raise BadRequest(f"name the {first} to delete: serving delete {first} NAME")
        return [(kind, name) for name in rest]
    if len(words) == 1:
        return [("InferenceService", first)]
    raise BadRequest(f"unknown resource type {first!r}; {KNOWN}")
