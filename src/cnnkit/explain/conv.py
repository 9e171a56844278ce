"""A small NumPy reference of what a convolutional layer computes, printing each step.

Keras' ``Conv2D`` computes *cross-correlation*: the kernel slides over the input unflipped, each
window is multiplied element-wise with the kernel and summed (a true convolution would flip the
kernel first). This module does the same on one 2-D channel, so article 002's worked example can be
checked by hand and against Keras (the tests do both).

Output size per axis, article 002's form with ``p`` = *total* zero padding (both sides together):
``⌊(n − k + p + s)/s⌋`` — ``n − k + 1`` without padding and stride 1; same size when ``p = k − 1``.

Example:
    >>> cross_correlate([[0, 1, 2, 4], [3, 0, -1, 5], [-2, 0, 1, 3], [1, 0, 9, 0]],
    ...                 [[0, 2, 1], [1, 3, 2], [2, 0, -1]]).tolist()
    [[0, 12], [-8, 12]]
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from typing import TextIO

import numpy as np
from numpy.typing import ArrayLike

from cnnkit.errors import ConfigError

# Article 002's worked example (its fourth sum has sign typos in the article; the result, 12, is right).
EXAMPLE_INPUT = [[0, 1, 2, 4], [3, 0, -1, 5], [-2, 0, 1, 3], [1, 0, 9, 0]]
EXAMPLE_KERNEL = [[0, 2, 1], [1, 3, 2], [2, 0, -1]]


def output_size(n: int, k: int, p: int, s: int) -> int:
    """Output length along one axis: ``⌊(n − k + p + s)/s⌋``, with ``p`` the total padding.

    Example:
        >>> output_size(28, 3, 0, 2)
        13
    """
    for name, value, least in (("n", n, 1), ("k", k, 1), ("p", p, 0), ("s", s, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ConfigError(f"Expected {name} to be an integer >= {least}. Received: {name}={value!r}.")
    if n + p < k:
        raise ConfigError(f"Expected the padded input to be at least as large as the window. "
                          f"Received: n={n}, p={p}, k={k}.", "Use a smaller kernel or more padding.")
    return (n - k + p + s) // s


def cross_correlate(x: ArrayLike, kernel: ArrayLike, *, stride: int = 1,
                    padding: int | str = 0) -> np.ndarray:
    """Slide ``kernel`` over ``x`` (both 2-D), multiply element-wise and sum, as Keras' Conv2D does.

    Args:
        stride: step between windows, in both directions.
        padding: zeros added on *each* side, or ``"valid"`` (0) / ``"same"`` (Keras' rule: output
            ``⌈n/s⌉``, the odd padding pixel at the bottom/right).
    """
    x, kernel = _matrix(x, "x"), _matrix(kernel, "kernel")
    padded = _pad(x, kernel.shape, stride, padding)
    return _slide(padded, kernel.shape, stride, lambda window: np.sum(window * kernel))


def max_pool(x: ArrayLike, size: int, stride: int | None = None) -> np.ndarray:
    """Maximum of each ``size``×``size`` window (valid padding; ``stride`` defaults to ``size``)."""
    x = _matrix(x, "x")
    return _slide(x, (size, size), stride or size, np.max)


def avg_pool(x: ArrayLike, size: int, stride: int | None = None) -> np.ndarray:
    """Mean of each ``size``×``size`` window (valid padding; ``stride`` defaults to ``size``)."""
    x = _matrix(x, "x")
    return _slide(x.astype(float), (size, size), stride or size, np.mean)


def walkthrough(x: ArrayLike, kernel: ArrayLike, *, stride: int = 1, padding: int | str = 0,
                out: TextIO | None = None) -> np.ndarray:
    """Print every window position, its element-wise products and their sum; return the output.

    Example:
        >>> walkthrough(EXAMPLE_INPUT, EXAMPLE_KERNEL, stride=1, padding=0)  # doctest: +SKIP
        out[0, 0] = 0×0 + 1×2 + 2×1 + 3×1 + 0×3 + (-1)×2 + (-2)×2 + 0×0 + 1×(-1) = 0
        ...
    """
    out = sys.stdout if out is None else out
    x, kernel = _matrix(x, "x"), _matrix(kernel, "kernel")
    padded = _pad(x, kernel.shape, stride, padding)
    (kh, kw), p = kernel.shape, padded.shape[0] - x.shape[0]
    rows, cols = (output_size(x.shape[i], kernel.shape[i], padded.shape[i] - x.shape[i], stride)
                  for i in range(2))
    print(f"Input {x.shape[0]}×{x.shape[1]}, kernel {kh}×{kw}, stride {stride}, "
          f"padding {padding!r}" + (f" ({p} zero rows/columns in total)" if p else ""), file=out)
    if p:
        print("Padded input:\n" + _grid(padded), file=out)
    n = x.shape[0]
    formula = f"{n} − {kh} + {p} + 1" if stride == 1 else f"⌊({n} − {kh} + {p} + {stride})/{stride}⌋"
    print(f"Output size: {formula} = {rows}" + ("" if rows == cols else f" × {cols}"), file=out)
    result = cross_correlate(x, kernel, stride=stride, padding=padding)
    for i in range(rows):
        for j in range(cols):
            window = padded[i * stride:i * stride + kh, j * stride:j * stride + kw]
            terms = " + ".join(f"{_num(a, True)}×{_num(b, True)}" for a, b in zip(window.ravel(), kernel.ravel()))
            print(f"out[{i}, {j}] = {terms} = {_num(result[i, j])}", file=out)
    print("Output:\n" + _grid(result), file=out)
    return result


def conv_demo() -> str:
    """The full text of article 002's worked example, plus padding, stride and pooling examples."""
    buf = io.StringIO()
    print("Cross-correlation (what Keras' Conv2D computes: the kernel is not flipped).", file=buf)
    print("Input:\n" + _grid(np.array(EXAMPLE_INPUT)) + "\nKernel:\n" + _grid(np.array(EXAMPLE_KERNEL)), file=buf)
    for title, stride, padding in (
        ("1. Valid, stride 1: 4 − 3 + 1 = 2", 1, 0),
        ("2. Padding 1 (p = 2 in total = k − 1 keeps the size): 4 − 3 + 2 + 1 = 4", 1, 1),
        ("3. Padding 1, stride 2: ⌊(4 − 3 + 2 + 2)/2⌋ = 2", 2, 1),
    ):
        print(f"\n{title}", file=buf)
        walkthrough(EXAMPLE_INPUT, EXAMPLE_KERNEL, stride=stride, padding=padding, out=buf)
    for title, name, pool, size, stride in (
        ("4. Max pooling 2×2, stride 2: ⌊(4 − 2 + 0 + 2)/2⌋ = 2", "max", max_pool, 2, 2),
        ("5. Average pooling 2×2, stride 2: ⌊(4 − 2 + 0 + 2)/2⌋ = 2", "mean", avg_pool, 2, 2),
        ("6. Max pooling 3×3, stride 1 (the article's example): 4 − 3 + 1 = 2", "max", max_pool, 3, 1),
    ):
        print(f"\n{title} (pooling has no parameters)", file=buf)
        _pool_steps(np.array(EXAMPLE_INPUT), name, pool, size, stride, buf)
    return buf.getvalue()


def _pool_steps(x: np.ndarray, name: str, pool: Callable[..., np.ndarray], size: int, stride: int,
                out: TextIO) -> None:
    result = pool(x, size, stride)
    for i in range(result.shape[0]):
        for j in range(result.shape[1]):
            window = x[i * stride:i * stride + size, j * stride:j * stride + size]
            print(f"out[{i}, {j}] = {name}({', '.join(_num(v, True) for v in window.ravel())}) = "
                  f"{_num(result[i, j])}", file=out)
    print("Output:\n" + _grid(result), file=out)


def _matrix(a: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or 0 in a.shape or not np.issubdtype(a.dtype, np.number):
        raise ConfigError(f"Expected {name} to be a non-empty 2-D array of numbers. "
                          f"Received: {name} with shape={a.shape}, dtype={a.dtype}.")
    return a


def _pad(x: np.ndarray, kernel: tuple[int, ...], stride: int, padding: int | str) -> np.ndarray:
    """Zero-pad ``x``; also validates stride and padding (and that the window fits)."""
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ConfigError(f"Expected stride to be an integer >= 1. Received: stride={stride!r}.")
    if padding == "valid":
        padding = 0
    if padding == "same":
        widths = []
        for n, k in zip(x.shape, kernel):
            total = max((-(-n // stride) - 1) * stride + k - n, 0)
            widths.append((total // 2, total - total // 2))
    elif isinstance(padding, (int, np.integer)) and not isinstance(padding, bool) and padding >= 0:
        widths = [(int(padding), int(padding))] * 2
    else:
        raise ConfigError(f"Expected padding to be an integer >= 0, 'valid' or 'same'. Received: padding={padding!r}.")
    for n, k, (a, b) in zip(x.shape, kernel, widths):
        output_size(n, k, a + b, stride)  # raises a clear error when the window does not fit
    return np.pad(x, widths)


def _slide(x: np.ndarray, window: tuple[int, ...], stride: int,
           reduce: Callable[[np.ndarray], object]) -> np.ndarray:
    for n, k in zip(x.shape, window):
        output_size(n, k, 0, stride)
    rows, cols = ((n - k) // stride + 1 for n, k in zip(x.shape, window))
    cells = [[reduce(x[i * stride:i * stride + window[0], j * stride:j * stride + window[1]])
              for j in range(cols)] for i in range(rows)]
    return np.array(cells)


def _num(v: float, operand: bool = False) -> str:
    """A number as the article writes it: integers plain, negative operands in parentheses."""
    text = str(int(v)) if float(v).is_integer() else f"{float(v):.4g}"
    return f"({text})" if operand and v < 0 else text


def _grid(a: np.ndarray) -> str:
    cells = [[_num(v) for v in row] for row in a]
    width = max(len(c) for row in cells for c in row)
    return "\n".join("  " + " ".join(c.rjust(width) for c in row) for row in cells)
