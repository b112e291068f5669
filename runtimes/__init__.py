"""Model runtimes (installed as `serving.runtimes`): one module per framework, picked by short name.

A runtime never imports the protocol or HTTP layers: it loads an artifact and maps tensors to tensors.
"""

from __future__ import annotations

from pathlib import Path

from serving.errors import ArtifactError
from serving.mlserver_settings import SETTINGS_FILES
from serving.plugins import load_class
from serving.runtimes.base import ModelMetadata, Runtime

RUNTIMES: dict[str, str] = {
    "sklearn": "serving.runtimes.sklearn:SKLearnRuntime",
    "xgboost": "serving.runtimes.xgboost:XGBoostRuntime",
    "onnx": "serving.runtimes.onnx:ONNXRuntime",
}
RUNTIME_ALIASES = {"scikit-learn": "sklearn", "onnxruntime": "onnx", "xgb": "xgboost"}

ARTIFACT_SUFFIXES: dict[str, str] = {
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".pickle": "sklearn",
    ".json": "xgboost",
    ".ubj": "xgboost",
    ".bst": "xgboost",
    ".onnx": "onnx",
}


def find_artifacts(model_dir: Path) -> list[Path]:
    """Model files directly inside `model_dir` (hidden files, sub-folders and MLServer's settings files
    ignored)."""
    if not model_dir.is_dir():
        return []
    return sorted(
        p
        for p in model_dir.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and p.suffix.lower() in ARTIFACT_SUFFIXES
        and p.name not in SETTINGS_FILES
    )


def find_artifact(
    model_dir: Path, suffixes: tuple[str, ...] | None = None, artifact: Path | None = None
) -> Path:
    """The one model file in `model_dir` (or `artifact`, when the model names its file); a clear error for
    none or several."""
    if artifact is not None:
        if not artifact.is_file():
            raise ArtifactError(
                f"model file {artifact.name} (model-settings.json parameters.uri) does not exist"
            )
        if suffixes is not None and artifact.suffix.lower() not in suffixes:
            raise ArtifactError(
                f"{artifact.name} is not a model file of this runtime ({', '.join(suffixes)})"
            )
        return artifact
    if not model_dir.is_dir():
        raise ArtifactError(f"model directory {model_dir} does not exist")
    found = [p for p in find_artifacts(model_dir) if suffixes is None or p.suffix.lower() in suffixes]
    if len(found) > 1:
        named_model = [p for p in found if p.stem == "model"]
        if len(named_model) == 1:
            return named_model[0]
        names = ", ".join(p.name for p in found)
        raise ArtifactError(f"{model_dir} holds several model files ({names}); keep one or name it model.*")
    if not found:
        wanted = ", ".join(suffixes or tuple(ARTIFACT_SUFFIXES))
        raise ArtifactError(f"{model_dir} holds no model file (looked for {wanted})")
    return found[0]


def detect_runtime(model_dir: Path, artifact: Path | None = None) -> str:
    path = find_artifact(model_dir, artifact=artifact)
    try:
        return ARTIFACT_SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise ArtifactError(
            f"{path.name}: no runtime serves {path.suffix or 'files without a suffix'}"
        ) from None


def runtime_class(name: str | None, model_dir: Path, artifact: Path | None = None) -> type[Runtime]:
    """Resolve a short name, an alias, `module:Class`, or None (detect from the artifact)."""
    spec = RUNTIME_ALIASES.get(name or "", name) or detect_runtime(model_dir, artifact)
    target = RUNTIMES.get(spec, spec)
    if ":" not in target:
        known = ", ".join(RUNTIMES)
        raise ArtifactError(f"unknown runtime {spec!r}; use one of {known} or 'module:Class'")
    return load_class(target, Runtime, "runtime")


__all__ = ["Runtime", "ModelMetadata", "RUNTIMES", "find_artifact", "runtime_class", "ArtifactError"]
