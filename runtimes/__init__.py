"""Model runtimes (installed as `serving.runtimes`): one module per framework, picked by short name.

A runtime never imports the protocol or HTTP layers: it loads an artifact and maps tensors to tensors.
"""

from __future__ import annotations

from pathlib import Path

from serving.errors import ArtifactError
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
    """Model files directly inside `model_dir` (hidden files and sub-folders ignored)."""
    if not model_dir.is_dir():
        return []
    return sorted(
        p
        for p in model_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in ARTIFACT_SUFFIXES
    )


def find_artifact(model_dir: Path, suffixes: tuple[str, ...] | None = None) -> Path:
    """The one model file in `model_dir`; a clear error for none or several."""
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


def detect_runtime(model_dir: Path) -> str:
    return ARTIFACT_SUFFIXES[find_artifact(model_dir).suffix.lower()]


def runtime_class(name: str | None, model_dir: Path) -> type[Runtime]:
    """Resolve a short name, an alias, `module:Class`, or None (detect from the artifact)."""
    spec = RUNTIME_ALIASES.get(name or "", name) or detect_runtime(model_dir)
    target = RUNTIMES.get(spec, spec)
    if ":" not in target:
        known = ", ".join(RUNTIMES)
        raise ArtifactError(f"unknown runtime {spec!r}; use one of {known} or 'module:Class'")
    return load_class(target, Runtime, "runtime")


__all__ = ["Runtime", "ModelMetadata", "RUNTIMES", "find_artifact", "runtime_class", "ArtifactError"]
