"""How a revision that failed and will be tried again says so in its status message: one wording, written by
the control plane and read by `apply --wait` (which keeps waiting through it, as `kubectl wait` waits through a
storage initializer's CrashLoopBackOff, instead of failing a CI step on a one-second outage of the store)."""

from __future__ import annotations

import re

_RETRIED = re.compile(r"\(attempt \d+ failed; retrying in [\d.e+-]+ s, at \d\d:\d\d:\d\d UTC\)$")


def retry_note(why: str, attempts: int, delay_s: float, at: str) -> str:
    """`why (attempt N failed; retrying in D s, at HH:MM:SS UTC)`: `at` is the UTC time of the next attempt."""
    return f"{why} (attempt {attempts} failed; retrying in {delay_s:g} s, at {at} UTC)"


def is_retried(message: str) -> bool:
    """Whether a failure message is one the control plane will try again."""
    return _RETRIED.search(message) is not None
