"""The InferenceService CustomResourceDefinition, generated from the pydantic spec (one source of truth).

`serving crd` prints it; `charts/serving/crds/` and `charts/kustomize/` hold the committed copies and a
test fails when they drift from this output. The pydantic JSON schema is turned into a Kubernetes
*structural* schema: `$ref`s inlined, `Optional` unions collapsed, `str | int` quantities as
`x-kubernetes-int-or-string`, free-form dicts as `x-kubernetes-preserve-unknown-fields`. Unknown fields are
rejected by the API server's strict field validation (kubectl's default), as `serving apply` rejects them.
"""

from __future__ import annotations

from typing import Any

import yaml

from serving.spec import OUR_GROUP, InferenceService

VERSION = "v1beta1"
PLURAL = "inferenceservices"
KIND = "InferenceService"
_KEEP = ("type", "enum", "minimum", "maximum", "pattern", "maxLength", "minLength", "description", "required")
_SCALARS = {"string", "integer", "number"}

PRINTER_COLUMNS: list[dict[str, Any]] = [  # as KServe's `kubectl get isvc`
    {"name": "URL", "type": "string", "jsonPath": ".status.url"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"},
    {
        "name": "Prev",
        "type": "integer",
        "jsonPath": ".status.components.predictor.traffic[?(@.tag=='prev')].percent",
    },
    {
        "name": "Latest",
        "type": "integer",
        "jsonPath": ".status.components.predictor.traffic[?(@.latestRevision==true)].percent",
    },
    {  # KServe's: the `prev` traffic entry (empty once a canary is promoted), not previousRolledoutRevision
        "name": "PrevRolledoutRevision",
        "type": "string",
        "jsonPath": ".status.components.predictor.traffic[?(@.tag=='prev')].revisionName",
    },
    {
        # KServe reads the latestRevision traffic entry; Knative names the latest *ready* revision there even
        # while a newer one loads, where our traffic has only the `prev` entry: the field shows what KServe does
        "name": "LatestReadyRevision",
        "type": "string",
        "jsonPath": ".status.components.predictor.latestReadyRevision",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One pydantic JSON-schema node as a Kubernetes structural-schema node."""
    if "$ref" in node:
        return structural(
            {**defs[node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}, defs
        )
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) == 1:
            return structural({**options[0], **rest}, defs)
        if {o.get("type") for o in options} <= _SCALARS:
            return {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    out = {k: node[k] for k in _KEEP if k in node}
    if "properties" in node:
        out["properties"] = {name: structural(sub, defs) for name, sub in node["properties"].items()}
    if "items" in node:
        out["items"] = structural(node["items"], defs)
    extra = node.get("additionalProperties")
    if extra is True or (node.get("type") == "object" and "properties" not in node and extra is None):
        out["x-kubernetes-preserve-unknown-fields"] = True
    elif isinstance(extra, dict):
        out["additionalProperties"] = structural(extra, defs)
    return out


def open_api_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the InferenceService resource."""
    schema = InferenceService.model_json_schema(by_alias=True)
    defs = schema.get("$defs", {})
    status = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "description": "KServe's status fields (url, conditions, components) plus the rollout record.",
    }
    return resource_schema(
        "An InferenceService (KServe v1beta1 fields): predictor, optional transformer, canary traffic.",
        defs["Metadata"]["properties"]["name"],
        structural(schema["properties"]["spec"], defs),
        status,
    )


def resource_schema(
    description: str, name: dict[str, Any], spec: dict[str, Any], status: dict[str, Any]
) -> dict[str, Any]:
    """The top of a resource's schema: apiVersion, kind, metadata.name's rule, spec and status."""
    return {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "pattern": name["pattern"], "maxLength": name["maxLength"]},
                },
            },
            "spec": spec,
            "status": status,
        },
    }


def definition(
    *,
    group: str,
    version: str,
    kind: str,
    plural: str,
    singular: str,
    schema: dict[str, Any],
    printer_columns: list[dict[str, Any]],
    short_names: tuple[str, ...] = (),
    scope: str = "Namespaced",
) -> dict[str, Any]:
    """One CustomResourceDefinition of ours (every kind: one served version with a status subresource)."""
    names: dict[str, Any] = {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": singular}
    if short_names:
        names["shortNames"] = list(short_names)
    names["categories"] = ["serving"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": {"app.kubernetes.io/part-of": "serving"}},
        "spec": {
            "group": group,
            "scope": scope,
            "names": names,
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer_columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def crd() -> dict[str, Any]:
    return definition(
        group=OUR_GROUP,
        version=VERSION,
        kind=KIND,
        plural=PLURAL,
        singular="inferenceservice",
        short_names=("isvc",),
        printer_columns=PRINTER_COLUMNS,
        schema=open_api_schema(),
    )


def crd_yaml() -> str:
    header = "# Generated by `serving crd` from serving/spec.py; do not edit (tests/test_crd.py checks for drift).\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)
