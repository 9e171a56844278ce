"""Per-layer arithmetic of a cnnkit model: shapes, filled-in formulas, parameters, FLOPs, receptive field.

Conventions, used in every row:

- Output size per spatial axis, article 002's form with ``p`` = *total* zero padding (both sides):
  ``⌊(n − k + p + s)/s⌋``, which is ``n − k + 1`` for valid padding and stride 1. Keras' ``"same"``
  padding gives ``⌈n/s⌉`` and pads ``p = max((⌈n/s⌉ − 1)·s + k − n, 0)`` (the odd pixel at the end).
  A dilation ``d`` widens a kernel to ``d·(k − 1) + 1``.
- FLOPs per image: a multiply-add is 2 FLOPs; a bias add, an activation, a rescale and each element of
  a pooling window are 1 per element; inference batch norm (folded scale + shift) is 2 per element.
  Dropout, Flatten and the ``Random*`` augmentations are identity at inference: 0.
- Receptive field ``r`` and jump ``j`` (input pixels between neighbouring outputs), per axis, from
  ``r = j = 1`` at the input: ``r_out = r_in + (k − 1)·j_in``, ``j_out = j_in·s``. After Flatten or
  global pooling every unit sees the whole image: ``all``.
- Activation memory: the layer's output as float32 (4 bytes), per image.

Every output shape is checked against Keras' own and every parameter count against
``layer.count_params()``, so the table cannot silently disagree with the model it explains. A
pretrained backbone is one row per stage (:func:`stage_rows`), its parameter total checked too.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from cnnkit._backend import keras
from cnnkit.errors import CnnkitError, ConfigError
from cnnkit.explain.rules import IDENTITY, RULES, elementwise, pair, unsupported

_BYTES_PER_FLOAT = 4


@dataclass
class LayerRow:
    """One layer's arithmetic. Shapes exclude the batch axis; ``receptive_field``/``jump`` are
    ``(height, width)`` in input pixels, ``None`` once every unit sees the whole image."""

    name: str
    type: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    size_formula: str
    padding: str
    stride: str
    params: int
    trainable: int
    param_formula: str
    flops: int
    receptive_field: tuple[int, int] | None
    jump: tuple[int, int] | None
    memory_bytes: int

    @property
    def rf_text(self) -> str:
        if self.receptive_field is None or self.jump is None:
            return "all"
        return f"{pair(self.receptive_field)} ({pair(self.jump)})"


@dataclass(repr=False)
class ModelExplanation:
    """The table for one model with its totals (per image); render with ``to_text``/``to_html``/``to_dict``."""

    model_name: str
    input_shape: tuple[int, ...]
    rows: list[LayerRow]
    total_params: int = field(init=False)
    trainable_params: int = field(init=False)
    total_flops: int = field(init=False)
    activation_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.total_params = sum(r.params for r in self.rows)
        self.trainable_params = sum(r.trainable for r in self.rows)
        self.total_flops = sum(r.flops for r in self.rows)
        self.activation_bytes = sum(r.memory_bytes for r in self.rows)

    def totals_line(self) -> str:
        return (f"Total: {self.total_params:,} parameters ({self.trainable_params:,} trainable, "
                f"{self.total_params - self.trainable_params:,} non-trainable) · "
                f"{self.total_flops:,} FLOPs ({self.total_flops / 1e6:.1f} M) · "
                f"{_human_bytes(self.activation_bytes)} activations, per image")

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        head = ["Layer", "Type", "Input", "Output", "Output size", "Padding", "Stride",
                "Parameters", "FLOPs", "RF (jump)", "Memory"]
        body = [[r.name, r.type, _shape(r.input_shape), _shape(r.output_shape), r.size_formula,
                 r.padding, r.stride, r.param_formula, f"{r.flops:,}", r.rf_text,
                 _human_bytes(r.memory_bytes)] for r in self.rows]
        return head, body

    def to_text(self) -> str:
        """An aligned plain-text table for the terminal, with a totals line and the conventions."""
        head, body = self._cells()
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        numeric = {8, 10}  # FLOPs and memory read best right-aligned

        def line(cells: list[str]) -> str:
            return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        rule = "-" * len(line(head))
        return "\n".join([
            f"{self.model_name}: input {_shape(self.input_shape)}",
            line(head), rule, *(line(r) for r in body), rule, self.totals_line(),
            "Output size: ⌊(n − k + p + s)/s⌋, p = total padding; 'same' = ⌈n/s⌉. FLOPs: multiply-add = 2. "
            "RF: receptive field (jump) in input pixels. Memory: float32 output per image.",
        ])

    def to_html(self) -> str:
        """An HTML ``<table class="explain">`` fragment; all text escaped, no external resources."""
        head, body = self._cells()
        esc = html.escape
        rows = "\n".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in body)
        return (f'<table class="explain">\n<caption>{esc(self.model_name)}: input '
                f"{esc(_shape(self.input_shape))}</caption>\n<thead><tr>"
                + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead>\n<tbody>\n" + rows
                + f'\n</tbody>\n<tfoot><tr><td colspan="{len(head)}">{esc(self.totals_line())}</td></tr>'
                "</tfoot>\n</table>")

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: every row and the totals."""
        return {
            "model": self.model_name, "input_shape": list(self.input_shape),
            "rows": [asdict(r) for r in self.rows],
            "totals": {"params": self.total_params, "trainable_params": self.trainable_params,
                       "flops": self.total_flops, "activation_bytes": self.activation_bytes},
        }


def explain(target: str | os.PathLike[str]) -> ModelExplanation:
    """Explain a preset (built untrained) or a trained model (a run folder or ``.keras`` file).

    Example:
        >>> explain("article-002").total_params  # doctest: +SKIP
        484714
    """
    from cnnkit.artifact import load_model
    from cnnkit.models import build_model
    from cnnkit.presets import PRESETS

    if isinstance(target, str) and target in PRESETS:
        return explain_model(build_model(target))
    if not os.path.exists(target):
        raise ConfigError(f"Expected a preset name ({', '.join(PRESETS)}) or a run folder / .keras file. "
                          f"Received: target={str(target)!r}.",
                          "See cnnkit.PRESETS for the presets, or pass the out folder of a finished cnnkit.train().",
                          cli_hint="Run `cnnkit summary --list` for the presets, or pass a folder made by "
                                   "`cnnkit train`.")
    return explain_model(load_model(target)[0])


def explain_model(model: keras.Model) -> ModelExplanation:
    """Build the per-layer table of a Sequential CNN, checked against Keras' shapes and counts.

    Raises:
        ConfigError: a layer type or configuration the table does not cover.
        CnnkitError: a computed shape or parameter count that disagrees with Keras (a bug here).
    """
    if not isinstance(model, keras.Sequential) or not model.inputs:
        raise ConfigError(f"Expected a built keras.Sequential model (a chain of layers with an Input). "
                          f"Received: model={type(model).__name__} {model.name!r}.")
    image = tuple(int(d) for d in model.inputs[0].shape[1:])
    rows: list[LayerRow] = []
    shape: tuple[int, ...] = image
    rf, jump, sees_all = [1, 1], [1, 1], False
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # a pretrained backbone: one row per stage
            rows.extend(stage_rows(layer, shape))
            shape, sees_all = rows[-1].output_shape, True
            continue
        kind = type(layer).__name__
        rule = RULES.get(kind) or (elementwise if kind in IDENTITY else None)
        if rule is None:
            raise ConfigError(
                f"Cannot explain layer {layer.name!r}: unsupported type. Expected one of "
                f"{sorted(set(RULES) | IDENTITY)}. Received: type={kind!r}.",
                "The table covers the Keras layers cnnkit presets use.")
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            unsupported(layer, "data_format", layer.data_format, "'channels_last'")
        step = rule(layer, shape)
        try:
            keras_shape = layer.output.shape
        except (AttributeError, ValueError):  # a layer not yet called symbolically
            keras_shape = layer.compute_output_shape((None, *shape))
        _check(layer, "output shape", tuple(int(d) for d in keras_shape[1:]), step.out)
        _check(layer, "parameter count", layer.count_params(), step.params)
        if step.window is not None and not sees_all:
            for axis in range(2):
                (k, s) = step.window[0][axis], step.window[1][axis]
                rf[axis] += (k - 1) * jump[axis]
                jump[axis] *= s
        sees_all = sees_all or step.sees_all
        trainable = sum(math.prod(w.shape) for w in layer.trainable_weights)
        text = step.param_text
        if step.params and not trainable and kind != "BatchNormalization":
            text += " (frozen)"
        rows.append(LayerRow(
            layer.name, kind, shape, step.out, step.size, step.padding, step.stride, step.params,
            trainable, text, step.flops, None if sees_all else (rf[0], rf[1]),
            None if sees_all else (jump[0], jump[1]), math.prod(step.out) * _BYTES_PER_FLOAT))
        shape = step.out
    result = ModelExplanation(model.name, image, rows)
    _check(model, "total parameter count", model.count_params(), result.total_params)
    return result


def stage_rows(backbone: keras.Model, shape: tuple[int, ...]) -> list[LayerRow]:
    """A pretrained backbone summarised by stage: its layers grouped by how far they have shrunk the image
    (/1, /2, /4 ... to the nearest power of two; padding goes with the convolution it pads, and 1x1 side
    paths with their stage), the final pooling last. FLOPs count its convolutions and dense layers."""
    from cnnkit.models.backbones import count_flops, layer_flops

    side, level = shape[0], 0
    stages: dict[Any, list[Any]] = {}
    layers = [layer for layer in backbone.layers if not isinstance(layer, keras.layers.InputLayer)]
    outs = [tuple(int(d) for d in layer.output.shape[1:]) for layer in layers]
    last_map = max(i for i, out in enumerate(outs) if len(out) == 3)
    for i, (layer, out) in enumerate(zip(layers, outs)):
        if len(out) == 3 and out[0] > 1:  # squeeze-and-excitation's 1x1 side paths stay in their stage
            level = max(level, round(math.log2(side / out[0])))
        stages.setdefault("pooled" if i > last_map else level, []).append(layer)
    rows = []
    for number, (level, layers) in enumerate(stages.items(), start=1):
        shown = [layer for layer in layers if not isinstance(layer, keras.layers.ZeroPadding2D)] or layers
        out = tuple(int(d) for d in shown[-1].output.shape[1:])
        params = sum(layer.count_params() for layer in layers)
        trainable = sum(math.prod(w.shape) for layer in layers for w in layer.trainable_weights)
        text = f"{params:,}" + (" (frozen)" if params and not trainable else "")
        size = "pooled" if level == "pooled" else f"{out[0]}×{out[1]} (/{2 ** level})"
        rows.append(LayerRow(
            f"{backbone.name} stage {number}", f"{len(layers)} layers", shape, out, size, "", "", params, trainable,
            text, sum(count_flops(layer) if isinstance(layer, keras.Model) else layer_flops(layer) for layer in layers),
            None, None, math.prod(out) * _BYTES_PER_FLOAT))
        shape = out
    _check(backbone, "parameter count", backbone.count_params(), sum(row.params for row in rows))
    return rows


def _check(layer: Any, what: str, expected: Any, computed: Any) -> None:
    if expected != computed:
        raise CnnkitError(
            f"The explained {what} of {layer.name!r} ({type(layer).__name__}) disagrees with Keras'. "
            f"Expected {expected}. Received: computed={computed}.",
            "This is a bug in cnnkit.explain; please report it with the model's config.")


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def _human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1024**2 else f"{n / 1024**2:.1f} MiB"
