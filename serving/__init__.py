"""serving: a model-serving gateway speaking KServe V1 and the Open Inference Protocol (V2)."""

__version__ = "0.1.0"
