"""Pretrained backbones: the registry, as data, of the ``keras.applications`` networks cnnkit offers.

Each entry names the Keras constructor, the side its ImageNet weights were trained at, the
weights file Keras publishes for it without the ImageNet classifier, and the hash Keras pins for
that file in its own source (``WEIGHTS_HASHES`` in ``keras/src/applications/*.py``; a test checks
that they agree), with the file's size in bytes (as Keras' own download of it reports it, the byte
count of its progress bar in the keras.io examples and public notebooks: recipe auto names it before
it downloads). Not offered:

- MobileNet V1 and V2: Keras fetches their weights with no hash at all, nothing published pins
  their files, and an unverified download is what the issue tracker warns about.
- EfficientNet (V1): its network differs with the weights argument (``weights="imagenet"`` adds a
  ``Rescaling`` that a weights file given by path does not get: tensorflow/tensorflow#49930), so
  the same file would preprocess two ways. EfficientNetV2 has no such branch.

Every family but ResNet50 keeps its ImageNet preprocessing inside the network
(``include_preprocessing``); ResNet50's, Caffe-style (BGR channel order, ImageNet means
subtracted), is built by :mod:`cnnkit.models.transfer` from explicit layers.

``params`` and ``gflops`` are counted by cnnkit on the network without its classifier at
``input_size`` (:func:`count_flops`: two operations per multiply-add of every convolution and
dense layer); ``top1`` is the ImageNet top-1 accuracy Keras documents for the full network.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from cnnkit.errors import ConfigError

_GOOGLE = "https://storage.googleapis.com/"


@dataclass(frozen=True)
class Backbone:
    """One pretrained network cnnkit can put under a classification head."""

    name: str
    family: str  # the keras.applications constructor
    description: str
    input_size: int  # the side its ImageNet weights were trained at: the default image size
    min_size: int  # the smallest side keras.applications builds it for
    params: int  # without the ImageNet classifier
    gflops: float  # at input_size, without the classifier
    top1: float  # ImageNet top-1 (%), as Keras documents it
    weights_file: str  # the file Keras publishes (no classifier)
    weights_hash: str  # as Keras pins it: md5 (32 hex digits) or sha256 (64)
    weights_size: int  # bytes of weights_file, as Keras' download reports it
    weights_origin: str  # the folder URL it is published under
    preprocessing: str = "inside"  # "inside": the family's own layers; "caffe": BGR, ImageNet means subtracted
    options: dict[str, Any] = field(default_factory=dict)  # more constructor arguments

    @property
    def weights_url(self) -> str:
        return self.weights_origin + self.weights_file

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, stored in each run's config."""
        return dataclasses.asdict(self)


BACKBONES: tuple[Backbone, ...] = (
    Backbone(
        name="mobilenet_v3_small", family="MobileNetV3Small",
        description="MobileNetV3 small, width 1.0: the cheapest; for a CPU in a hurry.",
        input_size=224, min_size=32, params=939_120, gflops=0.11, top1=68.1,
        weights_file="weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        weights_hash="d3e8ec802a04aa4fc771ee12a9a9b836",
        weights_size=4_334_752,
        weights_origin=_GOOGLE + "tensorflow/keras-applications/mobilenet_v3/",
        options={"include_preprocessing": True},
    ),
    Backbone(
        name="mobilenet_v3_large", family="MobileNetV3Large",
        description="MobileNetV3 large, width 1.0: cheap, and 7 points of ImageNet above the small one.",
        input_size=224, min_size=32, params=2_996_352, gflops=0.43, top1=75.6,
        weights_file="weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        weights_hash="07fb09a5933dd0c8eaafa16978110389",
        weights_size=12_683_000,
        weights_origin=_GOOGLE + "tensorflow/keras-applications/mobilenet_v3/",
        options={"include_preprocessing": True},
    ),
    Backbone(
        name="efficientnet_v2_b0", family="EfficientNetV2B0",
        description="EfficientNetV2 B0: the usual first choice for transfer learning on a CPU.",
        input_size=224, min_size=32, params=5_919_312, gflops=1.43, top1=78.7,
        weights_file="efficientnetv2-b0_notop.h5",
        weights_hash="893217f2bb855e2983157299931e43ff",
        weights_size=24_274_472,
        weights_origin=_GOOGLE + "tensorflow/keras-applications/efficientnet_v2/",
        options={"include_preprocessing": True},
    ),
    Backbone(
        name="convnext_tiny", family="ConvNeXtTiny",
        description="ConvNeXt tiny: the most accurate here, and about 6 times EfficientNetV2 B0's arithmetic.",
        input_size=224, min_size=32, params=27_820_128, gflops=8.91, top1=81.3,
        weights_file="convnext_tiny_notop.h5",
        weights_hash="d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
        weights_size=111_650_432,
        weights_origin=_GOOGLE + "tensorflow/keras-applications/convnext/",
        options={"include_preprocessing": True},
    ),
    Backbone(
        name="resnet50", family="ResNet50",
        description="ResNet50: the classic; Caffe-style preprocessing as explicit layers in the model.",
        input_size=224, min_size=32, params=23_587_712, gflops=7.71, top1=74.9,
        weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_hash="4d473c1dd8becc155b73f8504c6f6626",
        weights_size=94_765_736,
        weights_origin=_GOOGLE + "tensorflow/keras-applications/resnet/",
        preprocessing="caffe",
    ),
)

_BY_NAME = {backbone.name: backbone for backbone in BACKBONES}


def backbone_names() -> list[str]:
    """The names ``--backbone`` takes."""
    return list(_BY_NAME)


def get_backbone(name: str | Backbone) -> Backbone:
    """The registry entry called ``name`` (a :class:`Backbone` is returned as it is)."""
    if isinstance(name, Backbone):
        return name
    if name not in _BY_NAME:
        close = difflib.get_close_matches(str(name), backbone_names(), n=1)
        raise ConfigError(f"Unknown backbone. Expected one of {backbone_names()}. Received: backbone={name!r}."
                          + (f" Did you mean {close[0]!r}?" if close else ""),
                          "cnnkit.models.backbones.BACKBONES lists them with their sizes and costs.",
                          params="backbone", cli_hint="Run `cnnkit backbones` to list them with their sizes and costs.")
    return _BY_NAME[name]


def count_flops(model: Any) -> int:
    """Floating-point operations of one image through ``model``: 2 per multiply-add of its convolutions and
    dense layers (nested models included), the rest (activations, normalisation, pooling) left out."""
    return sum(layer_flops(layer) for layer in leaves(model))


def layer_flops(layer: Any) -> int:
    """2 per multiply-add of one image through ``layer`` (a convolution or dense layer; 0 for others)."""
    from cnnkit._backend import keras

    out = layer.output.shape[1:]
    positions = 1
    for size in out[:-1]:
        positions *= int(size)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return 2 * positions * int(out[-1]) * kh * kw
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        return 2 * positions * int(out[-1]) * kh * kw * int(layer.input.shape[-1]) // layer.groups
    if isinstance(layer, keras.layers.Dense):
        return 2 * positions * int(out[-1]) * int(layer.input.shape[-1])
    return 0


def leaves(model: Any) -> list[Any]:
    """Every layer of ``model`` in order, nested models (a backbone, its own sub-models) opened."""
    found = []
    for layer in model.layers:
        found.extend(leaves(layer) if hasattr(layer, "layers") else [layer])
    return found
