"""Benchmark models not among the examples: a 200-tree RandomForest on 32 features.

Trained on first use into `loadtests/results/models/` (gitignored) with a fixed seed, so its pickle
matches the installed scikit-learn; the iris examples come from `serving.demo_models`.
"""

from __future__ import annotations

from pathlib import Path

from loadtests.servers import RESULTS
from serving.errors import ServingError

MODELS = RESULTS / "models"
RF_NAME = "rf-200"
RF_TREES, RF_FEATURES = 200, 32


def train_random_forest(target: Path, trees: int = RF_TREES, features: int = RF_FEATURES) -> Path:
    """A RandomForestClassifier (depth-limited so the file stays small) on synthetic data."""
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    x, y = make_classification(
        n_samples=4000, n_features=features, n_informative=12, n_classes=3, random_state=7
    )
    model = RandomForestClassifier(n_estimators=trees, max_depth=10, random_state=7, n_jobs=1).fit(x, y)
    target.mkdir(parents=True, exist_ok=True)
    path = target / "model.joblib"
    joblib.dump(model, path)
    return path


def model_dir(name: str) -> Path:
    """The folder to serve for an example name: `rf-200`, or a folder of examples/models (trained if missing)."""
    if name == RF_NAME:
        folder = MODELS / RF_NAME
        if not (folder / "model.joblib").exists():
            train_random_forest(folder)
        return folder
    from serving.demo_models import MODELS_DIR, ensure_example_models

    folder = MODELS_DIR / name
    if not folder.is_dir():
        ensure_example_models()
    if not folder.is_dir():
        known = sorted(p.name for p in MODELS_DIR.iterdir() if p.is_dir())
        raise ServingError(f"unknown example {name!r}: expected {RF_NAME} or one of {known}")
    return folder
