"""Session affinity: one header value always lands on the same arm while the split holds.

A 64-bit hash of the value picks a point in [0, 100); the arms own consecutive slices sized by their weights,
so shares match the weights (a good hash spreads distinct values evenly) and a weight change moves only the
values in the slices that changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_SCALE = 2.0**64


def affinity_point(value: str) -> float:
    """Where `value` falls in [0, 100): blake2b, so it is stable across processes and machines."""
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE * 100.0


def arm_for(value: str, weights: Sequence[int]) -> int:
    """Index of the arm that owns `value`; weights are relative (percents of the arms that can serve)."""
    point = affinity_point(value) * sum(weights) / 100.0
    edge = 0
    for index, weight in enumerate(weights):
        edge += weight
        if point < edge:
            return index
    return len(weights) - 1
