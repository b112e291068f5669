"""Train the example models into examples/models/ (run once; `serving demo` does it for you)."""

from serving.demo_models import ensure_example_models

if __name__ == "__main__":
    print(ensure_example_models())
