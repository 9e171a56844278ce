"""One compiled model call for the batcher: ``uint8 (N, H, W, C)`` in, ``float32 (N, K)`` out.

``model.predict`` builds a dataset and a progress loop on every call (~50 ms);
a server answering one image at a time cannot afford that. With TensorFlow the
model runs inside a ``tf.function`` traced once for the signature
``[None, H, W, C] uint8``, so any batch size reuses the same graph (~1 ms for a
small CNN). Other backends use ``predict_on_batch`` (compiled by Keras), with
batches padded to a power of two so a JIT backend compiles a handful of shapes
rather than one per batch size. A model whose recipe asks for test-time
augmentation gets it here too (:mod:`cnnkit.tta`), as in ``predict_proba``.
"""

from __future__ import annotations

from typing import Callable

from cnnkit._backend import keras
import numpy as np

from cnnkit.predictor import Predictor
from cnnkit.tta import averaged

InferFn = Callable[[np.ndarray], np.ndarray]


def compile_infer(predictor: Predictor) -> InferFn:
    """The fastest call of ``predictor.model`` this backend offers; same numbers as ``predict_proba``.

    Example:
        >>> infer = compile_infer(predictor)  # doctest: +SKIP
        >>> infer(np.zeros((2, 28, 28, 1), np.uint8)).shape  # doctest: +SKIP
        (2, 10)
    """
    if keras.backend.backend() == "tensorflow":
        return averaged(_tf_infer(predictor), predictor.tta)
    return averaged(_padded(predictor.model.predict_on_batch), predictor.tta)


def _tf_infer(predictor: Predictor) -> InferFn:
    import tensorflow as tf

    model = predictor.model
    signature = [tf.TensorSpec([None, *predictor.input_shape], tf.uint8, name="pixels")]

    @tf.function(input_signature=signature)  # one trace serves every batch size
    def forward(pixels: tf.Tensor) -> tf.Tensor:
        return tf.cast(model(pixels, training=False), tf.float32)

    def infer(pixels: np.ndarray) -> np.ndarray:
        return forward(tf.convert_to_tensor(pixels, dtype=tf.uint8)).numpy()

    return infer


def _padded(call: Callable[[np.ndarray], object]) -> InferFn:
    def infer(pixels: np.ndarray) -> np.ndarray:
        n = len(pixels)
        size = 1 << max(0, (n - 1).bit_length())  # next power of two: few distinct shapes to compile
        if size != n:
            pixels = np.concatenate([pixels, np.zeros((size - n, *pixels.shape[1:]), pixels.dtype)])
        return np.asarray(keras.ops.convert_to_numpy(call(pixels)), dtype=np.float32)[:n]

    return infer
