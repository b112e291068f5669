"""Durations as Kubernetes users write them (Go's `time.ParseDuration` subset): `60s`, `1m30s`, `500ms`, `1h`."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")


def parse_duration_s(text: str) -> float:
    """Seconds; a bare number is seconds. ValueError (for pydantic validators too) on anything else."""
    value = str(text).strip()
    try:
        seconds = float(value)
    except ValueError:
        match = _DURATION.match(value)
        if not value or match is None or not any(match.groups()):
            raise ValueError(f"{text!r} is not a duration (write e.g. 60s, 1m30s, 500ms)") from None
        hours, minutes, secs, millis = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs + millis / 1000
    if seconds < 0:
        raise ValueError(f"{text!r} is negative")
    return seconds
