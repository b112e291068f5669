"""Request bodies for the example models, built once with fixed seeds, and response shape checks.

Pure functions (no Locust import) so the locustfiles, the benchmark and the tests share them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

SEED = 20240601
# (features, V2 datatype) per payload kind; iris is 4 features, the RandomForest benchmark model 32.
KINDS: dict[str, tuple[int, str]] = {
    "iris": (4, "FP64"),
    "iris-fp32": (4, "FP32"),
    "rf32": (32, "FP64"),
}
_NUMPY = {"FP64": np.float64, "FP32": np.float32}


def kind_for_model(model: str) -> str:
    """Default payload kind for a model name: ONNX iris wants FP32, `rf*` 32 features, else iris FP64."""
    if model.startswith("rf"):
        return "rf32"
    return "iris-fp32" if "onnx" in model else "iris"


def rows(kind: str, count: int, seed: int = SEED) -> np.ndarray:
    """`count` plausible feature rows (iris measurements are 0.1–7.9 cm), deterministic for a seed."""
    features, datatype = KINDS[kind]
    rng = np.random.default_rng(seed)
    return rng.uniform(0.1, 7.9, size=(count, features)).round(1).astype(_NUMPY[datatype])


def v1_body(kind: str, count: int = 1) -> bytes:
    return orjson.dumps({"instances": rows(kind, count)}, option=orjson.OPT_SERIALIZE_NUMPY)


IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def v1_records_body(count: int = 1) -> bytes:
    """V1 `instances` as named iris feature records: what the example tabular transformer accepts."""
    data = rows("iris", count).tolist()
    return orjson.dumps({"instances": [dict(zip(IRIS_FEATURES, row, strict=True)) for row in data]})


def v2_json_body(kind: str, count: int = 1, input_name: str = "input-0") -> bytes:
    data = rows(kind, count)
    datatype = KINDS[kind][1]
    doc = {
        "inputs": [
            {"name": input_name, "datatype": datatype, "shape": list(data.shape), "data": data.ravel()}
        ]
    }
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


@dataclass(frozen=True)
class BinaryBody:
    """A V2 binary-extension request: JSON header, raw little-endian tensor bytes after it."""

    body: bytes
    header_length: int

    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(self.header_length),
        }


def v2_binary_body(
    kind: str, count: int = 1, input_name: str = "input-0", binary_output: bool = False
) -> BinaryBody:
    data = rows(kind, count)
    raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
    doc: dict = {
        "inputs": [
            {
                "name": input_name,
                "datatype": KINDS[kind][1],
                "shape": list(data.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
    }
    if binary_output:
        doc["parameters"] = {"binary_data_output": True}
    header = orjson.dumps(doc)
    return BinaryBody(header + raw, len(header))


def check_v1(doc: object, count: int) -> str | None:
    """None when `doc` is a V1 response with `count` predictions, else what is wrong."""
    if not isinstance(doc, dict) or not isinstance(doc.get("predictions"), list):
        return f"no 'predictions' list in {str(doc)[:120]}"
    if len(doc["predictions"]) != count:
        return f"expected {count} predictions, got {len(doc['predictions'])}"
    return None


def check_v2(doc: object, count: int) -> str | None:
    """None when `doc` is a V2 response whose first output has `count` rows (JSON data), else what is wrong."""
    if not isinstance(doc, dict) or not isinstance(doc.get("outputs"), list) or not doc["outputs"]:
        return f"no 'outputs' list in {str(doc)[:120]}"
    out = doc["outputs"][0]
    shape = out.get("shape") if isinstance(out, dict) else None
    if not isinstance(shape, list) or not shape or shape[0] != count:
        return f"expected output shape [{count}, ...], got {shape}"
    data = out.get("data")
    if data is not None and len(data) != int(np.prod(shape)):
        return f"output shape {shape} but {len(data)} data elements"
    return None
