"""The ONNX Runtime engine: the model converted to ONNX once, in memory, and run by onnxruntime.

Measured on 2 CPU cores (benchmarks/engines.py, benchmarks/RESULTS.md), ONNX Runtime runs cnnkit's
CNNs 1.5 to 3 times faster than Keras' compiled TensorFlow function, and agrees with it within 1e-6.
The conversion is the one ``cnnkit export --format onnx`` makes (:func:`cnnkit.exporting.to_onnx`):
the network as it runs at inference, taking raw ``uint8`` pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit._backend import keras
from cnnkit.engines.base import Engine
from cnnkit.errors import require


class OnnxEngine(Engine):
    """A Keras model converted to ONNX and run by ONNX Runtime on the CPU.

    Example:
        >>> engine = OnnxEngine(model)  # doctest: +SKIP
        >>> engine(np.zeros((2, 28, 28, 1), np.uint8)).shape  # doctest: +SKIP
        (2, 10)
    """

    name = "onnxruntime"

    def __init__(self, model: keras.Model, threads: int | None = None) -> None:
        require("export", "onnxruntime", "tf2onnx", purpose="The onnxruntime engine")
        import onnxruntime as ort

        from cnnkit.exporting import to_onnx

        self.input_shape = tuple(int(v) for v in model.input_shape[1:])
        self.num_classes = int(model.output_shape[-1])
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(to_onnx(model), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        self._version = ort.__version__

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if len(pixels) == 0:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        return self.session.run(None, {self._input: np.ascontiguousarray(pixels, dtype=np.uint8)})[0]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self._version}
