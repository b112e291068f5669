"""MLServer's `model-settings.json` read as MLServer reads it, so a model repository made for MLServer (or for
KServe's `kserve-mlserver` runtime) serves here as it is: the model's `name`, `parameters.version` (the
`/versions/V/` it answers), `parameters.uri` (its artifact, relative to the folder or absolute) and `implementation`
(MLServer's sklearn and XGBoost runtimes are ours). A server `settings.json` beside the models, and the
settings file itself, are never taken for an XGBoost model (both are `.json`). What cannot be served (another
implementation, an unreadable file) leaves that model not ready, saying why; the other models serve."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from serving.settings import ModelSettings

MODEL_FILE = "model-settings.json"
SETTINGS_FILES = frozenset({MODEL_FILE, "settings.json"})  # MLServer's own files: never model artifacts
IMPLEMENTATIONS = {
    "mlserver_sklearn.SKLearnModel": "sklearn",
    "mlserver_xgboost.XGBoostModel": "xgboost",
}
DEFAULT_VERSION = "1"  # ModelSettings' (and `--model-version`'s) default: a version given otherwise wins
ERROR_KEY = "mlserver_settings_error"  # in ModelSettings.extra: why the file cannot be served (load fails)


def has_settings(folder: Path) -> bool:
    return (folder / MODEL_FILE).is_file()


def folder_name(folder: Path) -> str:
    """The name a model folder serves under: its model-settings.json `name`, else the folder's."""
    doc = _read(folder)
    name = doc.get("name") if isinstance(doc, dict) else None
    return name if isinstance(name, str) and name else folder.name


def applied(settings: ModelSettings, named: bool) -> ModelSettings:
    """`settings` with what the folder's model-settings.json says (none: unchanged). A name given on the
    command line (`named`: `--name`, or `serving up`'s InferenceService name, as KServe sets MLServer's
    model name) and a `--runtime` or `--model-version` other than the default win over the file."""
    folder = settings.model_dir
    if not has_settings(folder):
        return settings
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


def _refused(settings: ModelSettings, why: str) -> ModelSettings:
    return replace(settings, extra={**settings.extra, ERROR_KEY: why})


def _read(folder: Path) -> Any:
    try:
        return orjson.loads((folder / MODEL_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        return f"cannot be read ({type(exc).__name__})"
