"""Transformers (installed as `serving.transformers`): pre/post-processing in front of a predictor.

This folder sits at the repo root, so `import transformers` run from there would find it before
HuggingFace's library. When imported under that top-level name, it steps aside: it loads the real
`transformers` from the rest of sys.path, or raises ModuleNotFoundError as if this folder were absent.
"""

if __name__ == "transformers":  # pragma: no cover - exercised by tests in a subprocess
    import importlib.machinery
    import importlib.util
    import os
    import sys

    _here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _path = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _here]
    _spec = importlib.machinery.PathFinder.find_spec("transformers", _path)
    if _spec is None or _spec.loader is None:
        del sys.modules["transformers"]
        raise ModuleNotFoundError("No module named 'transformers'", name="transformers")
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["transformers"] = _module
    _spec.loader.exec_module(_module)
