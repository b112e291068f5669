"""`serving get servingruntimes` (short `sr`: namespace and cluster runtimes) and `serving get
clusterservingruntimes` (`csr`: cluster runtimes, built-ins included), as a table, JSON or YAML."""

from __future__ import annotations

import json
from typing import Any

import yaml

from serving.commands.isvc_table import aligned
from serving.commands.resource_args import kind_of
from serving.control.runtime_catalog import is_builtin
from serving.errors import BadRequest, NotFound, existing_names
from serving.servingruntime import ServingRuntime, parse_runtime, runtime_implementation
from serving.spec import SUPPORTED_FORMATS


def is_runtime_kind(word: str) -> bool:
    return kind_of(word) in ("ServingRuntime", "ClusterServingRuntime")


def select(items: list[dict[str, Any]], word: str, namespace: str) -> list[dict[str, Any]]:
    cluster_only = kind_of(word) == "ClusterServingRuntime"
    out = []
    for item in items:
        cluster = item.get("kind") == "ClusterServingRuntime"
        if cluster or (
            not cluster_only and item.get("metadata", {}).get("namespace", "default") == namespace
        ):
            out.append(item)
    return out


def runs_here(runtime: ServingRuntime) -> str:
    """What `serving up` runs for it: the `--runtime` of its args (a name or module:Class), else our runtime of
    each format it lists that we serve (the model's format picks one); `<none>` when we serve none of them."""
    try:
        explicit = runtime_implementation(runtime, "")
    except BadRequest:  # its MLSERVER_MODEL_IMPLEMENTATION is an MLServer class not served here
        return "<none>"
    if explicit:
        return explicit
    listed = {f.name.lower() for f in runtime.spec.supported_model_formats}
    return ",".join(f for f in SUPPORTED_FORMATS if f in listed) or "<none>"


def named(items: list[dict[str, Any]], names: list[str], word: str) -> list[dict[str, Any]]:
    """The runtimes of these names, in that order (every one listed when none is named); a name not there is
    kubectl's NotFound, naming those there are."""
    if not names:
        return items
    found = {item.get("metadata", {}).get("name"): item for item in items}
    missing = [name for name in names if name not in found]
    if missing:
        kind = (kind_of(word) or "ServingRuntime").lower()
        there = [n for n in found if isinstance(n, str)]
        raise NotFound(f"{kind} {missing[0]!r} not found{existing_names(there)}")
    return [found[name] for name in names]


def render(items: list[dict[str, Any]], output: str, one: bool = False) -> str:
    """A table, or JSON/YAML: the object itself for one named runtime (as kubectl prints it), else a list."""
    doc: Any = items[0] if one and items else {"items": items}
    if output == "json":
        return json.dumps(doc, indent=2)
    if output == "yaml":
        return yaml.safe_dump(doc, sort_keys=False).rstrip("\n")
    rows = [("NAME", "KIND", "DISABLED", "MODELTYPE", "PROTOCOLS", "RUNTIME", "SOURCE")]
    for item in items:
        runtime = parse_runtime(item)
        formats = sorted({f.name for f in runtime.spec.supported_model_formats})
        rows.append(
            (
                runtime.name,
                runtime.kind,
                str(runtime.spec.disabled).lower(),
                ",".join(formats),
                ",".join(runtime.spec.protocol_versions) or "all",  # KServe: no list supports every one
                runs_here(runtime),
                "built-in" if is_builtin(item) else "applied",
            )
        )
    return aligned(rows)
