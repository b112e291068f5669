"""Train the example models into examples/models/, next to this file (run once from a clone; the YAML files in
examples/ point there). `serving demo` needs none of them: it trains its own model into its cache folder."""

from pathlib import Path

from serving.demo_models import ensure_example_models

if __name__ == "__main__":
    folder = ensure_example_models(Path(__file__).resolve().parent / "models")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    print(f"example models in {folder}: {', '.join(names)} (trained where missing, kept where present)")
