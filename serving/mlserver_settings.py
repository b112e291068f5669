"""MLServer's `model-settings.json` read as MLServer reads it, so a model repository made for MLServer (or for
KServe's `kserve-mlserver` runtime) serves here as it is: the model's `name`, `parameters.version` (the
`/versions/V/` it answers), `parameters.uri` (its artifact, relative to the folder or absolute) and `implementation`
(MLServer's sklearn and XGBoost runtimes are ours). A server `settings.json` beside the models, and the
settings file itself, are never taken for an XGBoost model (both are `.json`). What cannot be served (another
implementation, an unreadable file) leaves that model not ready, saying why; the other models serve."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from serving.errors import ServingError
from serving.protocol.dtypes import numpy_dtype
from serving.settings import ModelSettings
from serving.types import TensorSpec

if TYPE_CHECKING:  # runtimes/ imports this module
    from serving.runtimes.base import ModelMetadata

MODEL_FILE = "model-settings.json"
SETTINGS_FILES = frozenset({MODEL_FILE, "settings.json"})  # MLServer's own files: never model artifacts
IMPLEMENTATIONS = {
    "mlserver_sklearn.SKLearnModel": "sklearn",
    "mlserver_xgboost.XGBoostModel": "xgboost",
}
DEFAULT_VERSION = "1"  # ModelSettings' (and `--model-version`'s) default: a version given otherwise wins
log = logging.getLogger("serving.repository")
ERROR_KEY = "mlserver_settings_error"  # in ModelSettings.extra: why the file cannot be served (load fails)
DECLARED_KEY = "mlserver_declared"  # in ModelSettings.extra: the `inputs` / `outputs` the file declares


def has_settings(folder: Path) -> bool:
    return (folder / MODEL_FILE).is_file()


def folder_name(folder: Path) -> str:
    """The name a model folder serves under: its model-settings.json `name`, else the folder's."""
    doc = _read(folder)
    name = doc.get("name") if isinstance(doc, dict) else None
    return name if isinstance(name, str) and name else folder.name


def applied(settings: ModelSettings, named: bool) -> ModelSettings:
    """`settings` with what the folder's model-settings.json says (and MLServer's batching env). A name given on the
    command line (`named`: `--name`, or `serving up`'s InferenceService name, as KServe sets MLServer's
    model name) and a `--runtime` or `--model-version` other than the default win over the file."""
    folder = settings.model_dir
    # without the file, MLServer's batching env still holds (KServe's kserve-mlserver users set it)
    if not has_settings(folder):
        batching = _batching({}, settings)
        return _refused(settings, batching) if isinstance(batching, str) else replace(settings, **batching)
    doc = _read(folder)
    if not isinstance(doc, dict):
        return _refused(settings, f"{MODEL_FILE} is not a JSON object: {doc}")
    changes: dict[str, Any] = {}
    name = doc.get("name")
    if not named and isinstance(name, str) and name:
        changes["name"] = name
    raw = doc.get("parameters")
    params: dict[str, Any] = raw if isinstance(raw, dict) else {}
    version = params.get("version")
    if isinstance(version, str) and version and settings.version == DEFAULT_VERSION:
        changes["version"] = version
    uri = params.get("uri")
    if isinstance(uri, str) and uri:
        changes["artifact"] = (folder / uri).resolve()  # relative to the folder, or absolute (as MLServer)
    batching = _batching(doc, settings)
    if isinstance(batching, str):
        return _refused(settings, batching)
    changes.update(batching)
    declared = _declared(doc)
    if isinstance(declared, str):
        return _refused(settings, declared)
    if declared:
        changes["extra"] = {**settings.extra, DECLARED_KEY: declared}
    implementation = doc.get("implementation")
    if settings.runtime is None and isinstance(implementation, str) and implementation:
        runtime = IMPLEMENTATIONS.get(implementation)
        if runtime is None:
            known = ", ".join(IMPLEMENTATIONS)
            return _refused(
                settings,
                f"{MODEL_FILE}: implementation {implementation!r} is MLServer's, not served here (served: "
                f"{known}; or give --runtime / the InferenceService's modelFormat)",
            )
        changes["runtime"] = runtime
    return replace(settings, **changes)


def _declared(doc: dict[str, Any]) -> dict[str, tuple[TensorSpec, ...]] | str:
    """The `inputs` / `outputs` the file declares (MLServer answers them as the model's metadata), or why one
    is not a tensor (MLServer refuses the file)."""
    out: dict[str, tuple[TensorSpec, ...]] = {}
    for key in ("inputs", "outputs"):
        items = doc.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            return f"{MODEL_FILE}: {key} must be a list of {{name, datatype, shape}}"
        specs = []
        for index, item in enumerate(items):
            where = f"{MODEL_FILE}: {key}[{index}]"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                return f"{where} must be an object with a string name"
            shape = item.get("shape", [-1])
            if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) for d in shape
            ):
                return f"{where}.shape must be a list of integers (-1: any)"
            try:
                dtype = numpy_dtype(str(item.get("datatype", "BYTES")))
            except ServingError as exc:
                return f"{where}.datatype: {exc.message}"
            specs.append(TensorSpec(item["name"], dtype, tuple(shape)))
        out[key] = tuple(specs)
    return out


def declared_metadata(settings: ModelSettings, meta: ModelMetadata) -> ModelMetadata:
    """The runtime's metadata with the inputs and outputs model-settings.json declares, as MLServer answers."""
    declared = settings.extra.get(DECLARED_KEY)
    if not declared:
        return meta
    return replace(
        meta, inputs=declared.get("inputs", meta.inputs), outputs=declared.get("outputs", meta.outputs)
    )


def _batching(doc: dict[str, Any], settings: ModelSettings) -> dict[str, Any] | str:
    """MLServer's adaptive batching (`max_batch_size` N > 1 and `max_batch_time` T > 0 seconds, from the file,
    else from `MLSERVER_MODEL_MAX_BATCH_SIZE` / `_TIME`; either 0 or absent: off) as our batcher's settings;
    batching turned on by flags (`--max-batch-size`, KServe's `batcher:`) wins. A value of the wrong type: why
    (the model is not ready, as MLServer refuses the file)."""
    if settings.max_batch_size > 0:
        return {}
    values: dict[str, float] = {}
    sources = set()
    for key, kind, env in (
        ("max_batch_size", int, "MLSERVER_MODEL_MAX_BATCH_SIZE"),
        ("max_batch_time", float, "MLSERVER_MODEL_MAX_BATCH_TIME"),
    ):
        where, raw = (MODEL_FILE, doc[key]) if key in doc else (env, os.environ.get(env) or None)
        if raw is None:  # absent (an env variable set empty counts as unset)
            values[key] = 0
            continue
        sources.add(where)
        value = _number(raw, kind)
        if value is None or not math.isfinite(value) or value < 0:
            expected = "a non-negative integer" if kind is int else "a non-negative number of seconds"
            return f"{where}: {key} must be {expected}, not {raw!r}"
        values[key] = value
    size, wait_s = int(values["max_batch_size"]), values["max_batch_time"]
    if size > 1 and wait_s > 0:
        return {"max_batch_size": size, "max_latency_s": wait_s}
    if size > 1 or wait_s > 0:
        log.warning(
            "model %s (%s): max_batch_size %d with max_batch_time %g s: adaptive batching needs both "
            "(size > 1, time > 0); off, as in MLServer",
            settings.name,
            ", ".join(sorted(sources)),
            size,
            wait_s,
        )
    return {}


def _number(raw: Any, kind: type) -> float | None:
    """`raw` (JSON, or an env string) as an int or float; None if it is not one (a bool is not)."""
    if isinstance(raw, str):
        try:
            return kind(raw.strip())  # type: ignore[no-any-return]
        except ValueError:
            return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    if kind is int and isinstance(raw, float):
        return int(raw) if raw.is_integer() else None
    return raw


def _refused(settings: ModelSettings, why: str) -> ModelSettings:
    return replace(settings, extra={**settings.extra, ERROR_KEY: why})


def _read(folder: Path) -> Any:
    try:
        return orjson.loads((folder / MODEL_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        return f"cannot be read ({type(exc).__name__})"
