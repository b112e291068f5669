"""ONNX Runtime: names, dtypes and shapes come from the session; several inputs and outputs work."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from serving.errors import BadRequest
from serving.protocol.dtypes import cast_exactly
from serving.runtimes import find_artifact
from serving.runtimes.base import ModelMetadata, Runtime, select_outputs
from serving.types import TensorDict, TensorSpec

log = logging.getLogger("serving.runtimes.onnx")
ONNX_TYPES: dict[str, np.dtype] = {
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(string)": np.dtype(object),
}


class ONNXRuntime(Runtime):
    platform = "onnxruntime_onnx"

    def load(self) -> None:
        import onnxruntime as ort

        path = find_artifact(self.settings.model_dir, (".onnx",), self.settings.artifact)
        options = ort.SessionOptions()
        if self.settings.intra_op_threads:
            options.intra_op_num_threads = self.settings.intra_op_threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._inputs = tuple(_spec(i) for i in self.session.get_inputs())
        # Non-tensor outputs (e.g. skl2onnx's ZipMap sequences) cannot travel as tensors: said at load, and to
        # whoever asks for one
        self._outputs = tuple(_spec(o) for o in self.session.get_outputs() if o.type in ONNX_TYPES)
        self._not_tensors = {o.name: o.type for o in self.session.get_outputs() if o.type not in ONNX_TYPES}
        for name, kind in self._not_tensors.items():
            log.warning("model %r: %s", self.settings.name, _not_a_tensor(name, kind))
        self._output_names = {o.name: o for o in self._outputs}
        self._input_dtypes = {i.name: i.dtype for i in self._inputs}
        self._input_shapes = {i.name: i.shape for i in self._inputs}
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        self._invalid_argument = InvalidArgument

    def predict(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> TensorDict:
        if outputs is not None and self._not_tensors:
            for name in outputs:
                if name in self._not_tensors:
                    raise BadRequest(
                        f"model {self.settings.name!r}: {_not_a_tensor(name, self._not_tensors[name])}"
                    )
        names = select_outputs(self._output_names, outputs, self.settings.name) or tuple(self._output_names)
        feed = self._feed(inputs)
        try:
            results = self.session.run(list(names), feed)
        except self._invalid_argument as exc:  # onnxruntime's own input checks: the caller's fault, a 400
            raise BadRequest(f"model {self.settings.name!r} rejected the input: {exc}") from exc
        return {name: np.asarray(value) for name, value in zip(names, results, strict=True)}

    def _feed(self, inputs: TensorDict) -> dict[str, Any]:
        if len(inputs) == 1 and len(self._inputs) == 1:
            # A single tensor feeds a single-input model whatever the client called it (V1 has no names).
            inputs = {self._inputs[0].name: next(iter(inputs.values()))}
        missing = [name for name in self._input_dtypes if name not in inputs]
        if missing:
            raise BadRequest(f"model {self.settings.name!r} needs input {missing[0]!r}")
        extra = [name for name in inputs if name not in self._input_dtypes]
        if extra:  # it would be dropped without a word
            raise BadRequest(
                f"model {self.settings.name!r} has no input {extra[0]!r}; its inputs: {', '.join(self._input_dtypes)}"
            )
        feed = {}
        for name, dtype in self._input_dtypes.items():
            array = inputs[name]
            _check_shape(self.settings.name, name, array.shape, self._input_shapes[name])
            if dtype.kind == "O":
                feed[name] = np.vectorize(_text, otypes=[object])(array) if array.size else array
            elif array.dtype.kind in "OSU":
                raise BadRequest(
                    f"model {self.settings.name!r} input {name!r} takes numbers ({dtype}); it got strings"
                )
            else:
                feed[name] = cast_exactly(array, dtype, f"model {self.settings.name!r} input {name!r}")
        return feed

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            platform=self.platform,
            inputs=self._inputs,
            outputs=self._outputs,
            default_outputs=tuple(self._output_names),
        )


def _not_a_tensor(name: str, kind: str) -> str:
    advice = (
        " (skl2onnx's ZipMap: convert with options={'zipmap': False} to serve the probabilities as a tensor)"
        if kind.startswith("seq(map(")
        else ""
    )
    return f"output {name!r} is an ONNX {kind}, not a tensor: the protocol cannot carry it, so it is not served{advice}"


def _check_shape(model: str, name: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    """Rank and fixed dimensions against the model's declared input (-1 = any), before onnxruntime sees it."""
    if expected and (
        len(shape) != len(expected) or any(e not in (-1, d) for d, e in zip(shape, expected, strict=True))
    ):
        message = (
            f"model {model!r} expects input {name!r} of shape {list(expected)} (-1: any size); "
            f"got shape {list(shape)}"
        )
        if len(shape) == 1 and len(expected) == 2 and expected[1] > 0 and shape[0] % expected[1] == 0:
            message += "; send a list of rows (one list per row), not one flat list"
        raise BadRequest(message)


def _spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else -1 for d in (node.shape or []))
    return TensorSpec(node.name, ONNX_TYPES.get(node.type, np.dtype(object)), shape)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
