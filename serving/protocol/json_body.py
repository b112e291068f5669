"""Parsing request bodies with orjson into clear 400s (orjson itself caps nesting at 1024 levels)."""

from __future__ import annotations

from typing import Any

import orjson

from serving.errors import BadRequest


def loads_object(body: bytes | memoryview) -> dict[str, Any]:
    if not body:
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(doc).__name__}")
    return doc


def check_depth(data: list[Any], max_depth: int, name: str) -> None:
    """Nesting depth along the first element: O(depth); numpy rejects anything ragged beyond it."""
    depth, node = 0, data
    while isinstance(node, list):
        depth += 1
        if depth > max_depth:
            raise BadRequest(f"input {name!r}: 'data' is nested deeper than {max_depth} levels")
        if not node:
            return
        node = node[0]
