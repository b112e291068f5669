"""A linear model's verified numpy form, kept on disk by the artifact's hash: a restart needs no scikit-learn.

Importing scikit-learn is most of a predictor's start (~0.9 of 1.1 s here) and of its memory (~85 of
137 MB). For a linear model the prediction is one matrix product (linear_fast_path.py), checked against
scikit-learn's own answers the first time the artifact is loaded. That check's result is stored here, named
by the sha256 of the artifact's bytes (and the scikit-learn version), so the next start of the same bytes (a restart, a new replica, a
scale from zero) serves `predict` from the stored arrays and unpickles the estimator — importing
scikit-learn — only when a request needs it (probabilities, inputs the product does not cover).

Only small artifacts are looked up (a linear model's pickle is a few KB; hashing a large forest's pickle at
every start would cost more than it saves). Entries hold arrays only and are read without pickle; a missing,
unreadable or odd entry just means the artifact is loaded as usual. Writing is best effort (a read-only
home directory is fine). `SERVING_COMPILED_CACHE=0` turns the cache off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.runtimes.linear_fast_path import LinearParams

log = logging.getLogger("serving.runtimes")
MAX_ARTIFACT_BYTES = 8 * 1024 * 1024
FORMAT = "linear-v1"
_STORABLE_LABELS = "biufU"  # label dtypes np.load reads back without pickle


@dataclass(frozen=True, slots=True)
class CachedLinear:
    params: LinearParams
    has_proba: bool  # the estimator offers predict_proba (answered after unpickling it)


def enabled() -> bool:
    return os.environ.get("SERVING_COMPILED_CACHE", "1") != "0"


def cache_dir() -> Path:
    """Beside the downloaded models: $SERVING_CACHE_DIR/.compiled, else ~/.cache/serving/models/.compiled."""
    from serving.storage import default_cache_dir

    return default_cache_dir() / ".compiled"


def entry(artifact: bytes) -> Path:
    """Named by the bytes and by the scikit-learn that checked them: after an upgrade the artifact is loaded
    (and checked) again, so an estimator the new version cannot unpickle fails at start, not at a request."""
    digest = hashlib.sha256(artifact)
    digest.update(_sklearn_version().encode())
    return cache_dir() / f"{FORMAT}-{digest.hexdigest()}.npz"


def _sklearn_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # the installed metadata: no import

    try:
        return version("scikit-learn")
    except PackageNotFoundError:
        return "none"


def load(artifact: bytes) -> CachedLinear | None:
    """The stored form of these exact bytes, or None."""
    if not enabled():
        return None
    try:
        with np.load(entry(artifact), allow_pickle=False) as stored:
            classes = stored["classes"] if bool(stored["classifier"]) else None
            params = LinearParams(stored["coef"], stored["intercept"], classes, int(stored["width"]))
            return CachedLinear(params, bool(stored["has_proba"]))
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a damaged entry: load the artifact as usual
        log.warning("ignoring the compiled-model cache entry for this artifact: %s", exc)
        return None


def store(artifact: bytes, cached: CachedLinear) -> None:
    """Keep `cached` for the next start of these bytes (atomically; failures only logged)."""
    params = cached.params
    classes = params.classes if params.classes is not None else np.zeros(0)
    if not enabled() or classes.dtype.kind not in _STORABLE_LABELS:
        return
    target = entry(artifact)
    temporary: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as out:
            temporary = out.name
            np.savez(
                out,
                coef=params.coef,
                intercept=params.intercept,
                classes=classes,
                classifier=np.array(params.classes is not None),
                width=np.array(params.width),
                has_proba=np.array(cached.has_proba),
            )
        os.replace(temporary, target)
    except OSError as exc:
        log.debug("compiled-model cache not written (%s): %s", target, exc)
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
