"""The arithmetic of each supported layer: output shape, filled-in formulas, parameters, FLOPs.

One rule per layer type, ``rule(layer, input_shape) -> Step``; :func:`cnnkit.explain.table.explain_model`
chains them, adds receptive field and memory, and checks each step against Keras. The conventions
(article 002's output-size form, FLOPs per multiply-add) are in :mod:`cnnkit.explain.table`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cnnkit.errors import ConfigError

# Augmentation layers are identity at inference, so they change nothing in the table: every one a recipe can
# ask for (cnnkit.models.preprocessing.AUGMENTATIONS; tests/test_explain.py explains each), and dropout.
IDENTITY = {"RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomErasing",
            "Dropout", "SpatialDropout2D"}


@dataclass
class Step:
    """What a layer rule computes; the driver adds the shared checks, memory and receptive field."""

    out: tuple[int, ...]
    size: str = "unchanged"
    params: int = 0
    param_text: str = "0"
    flops: int = 0
    padding: str = "—"
    stride: str = "—"
    window: tuple[tuple[int, int], tuple[int, int]] | None = None  # (kernel, stride) per axis
    sees_all: bool = False


def unsupported(layer: Any, option: str, value: Any, expected: str) -> None:
    raise ConfigError(f"Cannot explain layer {layer.name!r} ({type(layer).__name__}): unsupported {option}. "
                      f"Expected {expected}. Received: {option}={value!r}.")


def _window_axis(n: int, k: int, s: int, padding: str) -> tuple[int, int, str]:
    """Output size, total padding and the filled-in formula along one spatial axis."""
    if padding == "same":
        out = -(-n // s)
        return out, max((out - 1) * s + k - n, 0), f"⌈{n}/{s}⌉ = {out}"
    out = (n - k + s) // s
    text = f"{n} − {k} + 1 = {out}" if s == 1 else f"⌊({n} − {k} + 0 + {s})/{s}⌋ = {out}"
    return out, 0, text


def _window(layer: Any, shape: tuple[int, ...], kernel: tuple[int, int], strides: tuple[int, int],
            dilation: tuple[int, int] = (1, 1)) -> tuple[tuple[int, int], Step]:
    """The shared geometry of every sliding window: convolutions and pooling."""
    if layer.padding not in ("valid", "same"):
        unsupported(layer, "padding", layer.padding, "'valid' or 'same'")
    k_eff = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    axes = [_window_axis(shape[i], k_eff[i], strides[i], layer.padding) for i in range(2)]
    size = axes[0][2] if axes[0][2] == axes[1][2] else f"{axes[0][2]}; {axes[1][2]}"
    if dilation != (1, 1):  # show how the kernel widened, once per distinct axis
        size += " (k = " + "; ".join(dict.fromkeys(
            f"{d}·({k} − 1) + 1 = {e}" for k, d, e in zip(kernel, dilation, k_eff))) + ")"
    padding = layer.padding if layer.padding == "valid" else f"same (p={pair((axes[0][1], axes[1][1]))})"
    step = Step(out=(axes[0][0], axes[1][0], shape[2]), size=size, padding=padding,
                 stride=pair(strides), window=(k_eff, strides))
    return (axes[0][0], axes[1][0]), step


def _activation_flops(layer: Any, n: int) -> int:
    return 0 if layer.activation.__name__ == "linear" else n


def _conv(layer: Any, shape: tuple[int, ...]) -> Step:
    if getattr(layer, "groups", 1) != 1:
        unsupported(layer, "groups", layer.groups, "1")
    (h, w), step = _window(layer, shape, layer.kernel_size, layer.strides, layer.dilation_rate)
    (kh, kw), cin, bias = layer.kernel_size, shape[2], int(layer.use_bias)
    kind = type(layer).__name__
    if kind == "Conv2D":
        f = layer.filters
        step.params = (kh * kw * cin + bias) * f
        step.param_text = f"({kh}·{kw}·{cin} + 1)·{f}" if bias else f"{kh}·{kw}·{cin}·{f}"
        macs = kh * kw * cin * h * w * f
    else:
        m = layer.depth_multiplier
        cm = f"{cin}" + (f"·{m}" if m > 1 else "")
        if kind == "DepthwiseConv2D":
            f = cin * m
            step.params = (kh * kw + bias) * f
            step.param_text = f"({kh}·{kw} + 1)·{cm}" if bias else f"{kh}·{kw}·{cm}"
            macs = kh * kw * h * w * f
        else:  # SeparableConv2D: a depthwise kernel, then a 1×1 pointwise kernel, then the bias
            f = layer.filters
            step.params = kh * kw * cin * m + cin * m * f + bias * f
            step.param_text = f"{kh}·{kw}·{cm} + {cm}·{f}" + (f" + {f}" if bias else "")
            macs = (kh * kw + f) * cin * m * h * w
    step.param_text += f" = {step.params:,}"
    step.out = (h, w, f)
    outputs = h * w * f
    step.flops = 2 * macs + bias * outputs + _activation_flops(layer, outputs)
    return step


def _pool(layer: Any, shape: tuple[int, ...]) -> Step:
    _, step = _window(layer, shape, layer.pool_size, layer.strides)
    step.flops = math.prod(layer.pool_size) * math.prod(step.out)
    return step


def _global_pool(layer: Any, shape: tuple[int, ...]) -> Step:
    verb = "max" if "Max" in type(layer).__name__ else "mean"
    out = (1, 1, shape[2]) if layer.keepdims else (shape[2],)
    return Step(out=out, size=f"{verb} over {shape[0]}×{shape[1]}", flops=math.prod(shape), sees_all=True)


def _crop(layer: Any, shape: tuple[int, ...]) -> Step:
    (top, bottom), (left, right) = layer.cropping
    h, w = shape[0] - top - bottom, shape[1] - left - right
    text = [f"{n} − {a} − {b} = {m}" for n, a, b, m in ((shape[0], top, bottom, h), (shape[1], left, right, w))]
    return Step(out=(h, w, shape[2]), size=text[0] if text[0] == text[1] else "; ".join(text))


def _dense(layer: Any, shape: tuple[int, ...]) -> Step:
    n, u, bias = shape[-1], layer.units, int(layer.use_bias)
    out = (*shape[:-1], u)
    params = (n + bias) * u
    text = f"({n} + 1)·{u}" if bias else f"{n}·{u}"
    outputs = math.prod(out)
    # On a feature map Dense acts per position, like a 1×1 convolution: the receptive field is unchanged.
    return Step(out=out, size=f"units = {u}", params=params, param_text=f"{text} = {params:,}",
                 flops=2 * n * outputs + bias * outputs + _activation_flops(layer, outputs),
                 window=((1, 1), (1, 1)) if len(shape) == 3 else None)


def _batch_norm(layer: Any, shape: tuple[int, ...]) -> Step:
    if layer.axis not in (-1, len(shape)) and layer.axis != [len(shape)]:
        unsupported(layer, "axis", layer.axis, "-1 (channels last)")
    c, learned = shape[-1], int(layer.center) + int(layer.scale)
    params = (2 + learned) * c  # plus the moving mean and variance, which are not trained
    trainable = learned * c if layer.trainable else 0
    return Step(out=shape, params=params, param_text=f"{2 + learned}·{c} = {params:,} ({trainable:,} trainable)",
                 flops=2 * math.prod(shape))


def _flatten(layer: Any, shape: tuple[int, ...]) -> Step:
    n = math.prod(shape)
    return Step(out=(n,), size="·".join(map(str, shape)) + f" = {n}", sees_all=True)


def elementwise(layer: Any, shape: tuple[int, ...]) -> Step:
    kind = type(layer).__name__
    if kind == "Rescaling":
        per = 1 + int(layer.offset != 0)
    elif kind == "Activation":
        per = _activation_flops(layer, 1)
    elif kind == "Normalization":  # (x - mean) / std
        per = 2
    else:  # ReLU costs one op per element; the identity-at-inference layers cost nothing
        per = int(kind == "ReLU")
    return Step(out=shape, flops=per * math.prod(shape))


RULES: dict[str, Callable[[Any, tuple[int, ...]], Step]] = {
    "Conv2D": _conv, "SeparableConv2D": _conv, "DepthwiseConv2D": _conv,
    "MaxPooling2D": _pool, "AveragePooling2D": _pool,
    "GlobalMaxPooling2D": _global_pool, "GlobalAveragePooling2D": _global_pool,
    "BatchNormalization": _batch_norm, "Dense": _dense, "Flatten": _flatten, "Cropping2D": _crop,
    "Rescaling": elementwise, "ReLU": elementwise, "Activation": elementwise, "Normalization": elementwise,
}


def pair(values: tuple[int, int]) -> str:
    return str(values[0]) if values[0] == values[1] else f"{values[0]}×{values[1]}"
