"""Train the example models into examples/models/ (run once; `serving demo` does it for you)."""

from serving.demo_models import ensure_example_models

if __name__ == "__main__":
    folder = ensure_example_models()
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    print(f"example models in {folder}: {', '.join(names)} (trained where missing, kept where present)")
