"""The model every peer server runs: a cnnkit ``.keras`` file, decoded and called as cnnkit does, without cnnkit.

Used by ``litserve_app.py`` (in the product's venv) and ``mlserver_runtime.py`` (in
``benchmarks/.venv-mlserver``, where cnnkit is not installed), so both peers do the same work:

* the model: ``keras.saving.load_model`` of the same file (its preprocessing is inside);
* the metadata: class names, input shape, colour mode and resize policy from the file's ``cnnkit.json``;
* decoding: Pillow, ``convert("L"/"RGB")`` and a bilinear resize as ``cnnkit.images`` does (no EXIF or
  transparency handling: the benchmark sends one plain PNG);
* the call: one ``tf.function`` traced for ``[None, H, W, C] uint8``, ``training=False``, the way cnnkit's
  Keras engine calls it on TensorFlow (``model.predict`` would add ~50 ms of set-up to every request).

    >>> model = PeerModel("runs/demo/model.keras")  # doctest: +SKIP
    >>> model.classify(open("seven.png", "rb").read())  # doctest: +SKIP
    ('7', 0.99...)
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

METADATA_MEMBER = "cnnkit.json"


class PeerModel:
    """A cnnkit model file behind ``decode`` (PNG bytes → pixels) and ``probabilities`` (pixels → classes)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / "model.keras"
        with zipfile.ZipFile(path) as archive:
            meta = json.loads(archive.read(METADATA_MEMBER))
        self.class_names: list[str] = list(meta["class_names"])
        self.input_shape: tuple[int, ...] = tuple(meta["input_shape"])
        self.mode = "L" if meta["color_mode"] == "grayscale" else "RGB"
        self.resize: str = meta.get("resize", "stretch")
        self.model = keras.saving.load_model(path, compile=False, safe_mode=True)
        signature = [tf.TensorSpec([None, *self.input_shape], tf.uint8, name="pixels")]
        self._forward = tf.function(lambda pixels: tf.cast(self.model(pixels, training=False), tf.float32),
                                    input_signature=signature)
        self.probabilities(np.zeros((1, *self.input_shape), np.uint8))  # trace now, not on the first request

    def decode(self, data: bytes) -> np.ndarray:
        """One image file's bytes as ``uint8`` pixels of the model's input shape ``(H, W, C)``."""
        height, width, channels = self.input_shape
        image = Image.open(io.BytesIO(data)).convert(self.mode)
        if image.size != (width, height):
            if self.resize == "crop":
                image = ImageOps.fit(image, (width, height), method=Image.Resampling.BILINEAR)
            elif self.resize == "pad":
                image = ImageOps.pad(image, (width, height), method=Image.Resampling.BILINEAR, color=0)
            else:
                image = image.resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8).reshape(height, width, channels)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, K)`` for a batch of ``uint8`` pixels ``(N, H, W, C)``."""
        return self._forward(tf.convert_to_tensor(pixels, dtype=tf.uint8)).numpy()

    def classify(self, data: bytes) -> tuple[str, float]:
        """The best label and its probability for one image file's bytes."""
        probs = self.probabilities(self.decode(data)[None])[0]
        best = int(np.argmax(probs))
        return self.class_names[best], float(probs[best])
