"""The install stays CPU-only: `import xgboost` comes from `xgboost-cpu` (the GPU build from PyPI adds ~680 MB
of CUDA/NCCL). The full fresh-venv measurement is `scripts/check-install-size` (minutes, so not in pytest)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _requirement_names() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    return [re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in declared]


def test_xgboost_is_the_cpu_build_and_no_gpu_package_is_declared() -> None:
    names = _requirement_names()
    assert "xgboost-cpu" in names
    assert "xgboost" not in names, "xgboost from PyPI pulls nvidia-nccl (CUDA); depend on xgboost-cpu"
    assert not [n for n in names if n.startswith("nvidia-")]


def test_the_cpu_build_imports_as_xgboost() -> None:
    import xgboost

    assert callable(xgboost.XGBClassifier)
