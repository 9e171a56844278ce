"""Decode and resize: the only pixel code outside the model.

Training data, ``cnnkit predict`` on files, and the server all turn bytes into
pixels here, so they can never disagree. The result is always a ``uint8`` array
of shape ``(height, width, channels)``; scaling to [0, 1] happens inside the
model.

Mode conversion (documented once, applied everywhere):
  * grayscale models: Pillow ``convert("L")`` (ITU-R 601-2 luma); images with
    transparency are first composited on black, as MNIST digits are light
    strokes on black.
  * rgb models: ``convert("RGB")``; transparency composited on black.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnkit.errors import ConfigError, DataError

COLOR_MODES = {"grayscale": 1, "rgb": 3}
# The file suffixes cnnkit reads as images: folders, manifests and `cnnkit predict FOLDER` alike.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
RESIZE_METHODS = ("stretch", "crop", "pad")
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
MAX_PIXELS = 64_000_000  # ~ an 8000 x 8000 photo; larger is refused (decompression-bomb guard)
_ORIENTATION = 0x0112  # the EXIF tag

ImageSource = str | os.PathLike[str] | bytes


def channels_for(color_mode: str) -> int:
    """Number of channels for a colour mode name ("grayscale" → 1, "rgb" → 3)."""
    try:
        return COLOR_MODES[color_mode]
    except KeyError:
        raise ConfigError(
            f"Unknown colour mode. Expected one of {sorted(COLOR_MODES)}. Received: color_mode={color_mode!r}."
        ) from None


def _describe(source: ImageSource) -> str:
    return f"{len(source)} bytes" if isinstance(source, bytes) else str(source)


def _open(source: ImageSource, max_pixels: int = MAX_PIXELS,
          fit: tuple[int, int] | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Open and decode an image; also its native ``(width, height)``, upright.

    With ``fit`` (``(width, height)``, upright), a JPEG is decoded at the smallest of 1/1, 1/2, 1/4
    and 1/8 of its size that still covers ``fit`` in both sides: the scaling happens inside the JPEG
    decoder (Pillow's ``draft``), which then does a fraction of the work; the resize that follows
    brings it to ``fit`` as for any other image.
    """
    name = _describe(source)
    try:
        if isinstance(source, bytes):
            if not source:
                raise DataError("Cannot decode an empty image (0 bytes).", "Send the image file's bytes.")
            image = Image.open(io.BytesIO(source), formats=ALLOWED_FORMATS)
        else:
            path = Path(source)
            if not path.is_file():
                raise DataError(f"Image file not found. Received: {name}.", "Check the path.")
            if path.stat().st_size == 0:
                raise DataError(f"Image file is empty (0 bytes). Received: {name}.", "Replace or remove the file.")
            image = Image.open(path, formats=ALLOWED_FORMATS)
        width, height = image.size
        if width * height > max_pixels:
            raise DataError(
                f"Image is too large: {width}x{height} pixels exceeds the limit of {max_pixels:,}. Received: {name}.",
                "Downscale the image before passing it to cnnkit.",
            )
        turned = image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)  # EXIF rotation swaps the sides
        native = (height, width) if turned else (width, height)
        if fit is not None and image.format == "JPEG":
            image.draft(image.mode, (fit[1], fit[0]) if turned else fit)
        image.load()
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        # Pillow's "cannot identify image file <_io.BytesIO object at 0x…>" says nothing useful.
        reason = "not an image in a supported format" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise DataError(
            f"Cannot decode image: {reason.rstrip('.')}. Received: {name}.",
            f"Expected a file in one of these formats: {', '.join(ALLOWED_FORMATS)}.",
        ) from exc
    return image, native


@dataclass(frozen=True)
class ImageInfo:
    """What an image was before decoding made it the model's input: its size (upright) and whether it has colour."""

    width: int
    height: int
    colour: bool  # any visible chroma; a grey picture stored as RGB is not colour


# Mean spread between the largest and smallest channel (0-255) of a 32-pixel copy, above which a picture
# counts as colour. Measured on the weather photos: 90 % are above 8; overcast skies and the 27 grey ones
# are below (a warning missed there costs little, one raised on a grey scan would mislead).
_COLOUR_SPREAD = 8.0


def _upright(image: Image.Image) -> Image.Image:
    """EXIF rotation applied, transparency composited on black, 16/32-bit and float grey scaled to 8 bits."""
    ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an image that needs no turn
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = Image.fromarray(_eight_bit_grey(np.asarray(image, dtype=np.float64), image.mode == "F"), mode="L")
    return image


def _eight_bit_grey(array: np.ndarray, is_float: bool) -> np.ndarray:
    """16/32-bit integer or floating-point grey as 0-255: the full range scaled down rather than clipped.

    Above 255 the image's own maximum becomes 255; a floating-point image whose values all lie in
    [0, 1] (the usual convention for float pixels) is scaled by 255. Negative values and NaN become 0.
    """
    array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0.0)
    top = float(array.max()) if array.size else 0.0
    scale = 255.0 / top if top > 255 else 255.0 if is_float and 0 < top <= 1 else 1.0
    return np.rint(array * scale).clip(0, 255).astype(np.uint8)


def _info(image: Image.Image, native: tuple[int, int]) -> ImageInfo:
    colour = False
    if image.mode not in ("1", "L"):  # after _upright: 16/32-bit and float grey are already "L"
        small = image.convert("RGB")
        small.thumbnail((32, 32))  # the spread of a 32 px copy: cheap, and blind to single noisy pixels
        rgb = np.asarray(small, dtype=np.int16)
        colour = float((rgb.max(axis=-1) - rgb.min(axis=-1)).mean()) > _COLOUR_SPREAD
    return ImageInfo(width=native[0], height=native[1], colour=colour)


def decode_image(
    source: ImageSource,
    *,
    size: tuple[int, int] | None = None,
    color_mode: str = "rgb",
    resize: str = "stretch",
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode an image file (or its bytes) into a ``uint8`` array ``(H, W, C)``.

    Args:
        source: a path or the raw bytes of an image.
        size: ``(height, width)`` to resize to, or ``None`` to keep the size.
        color_mode: ``"grayscale"`` (C=1) or ``"rgb"`` (C=3).
        resize: ``"stretch"`` (aspect ratio not kept), ``"crop"`` (centre crop) or ``"pad"``
            (black borders); all bilinear.
        max_pixels: refuse images with more pixels than this (default :data:`MAX_PIXELS`), before
            decoding them; a server sets it lower to bound memory per request.

    Example:
        >>> decode_image("digit.png", size=(28, 28), color_mode="grayscale").shape  # doctest: +SKIP
        (28, 28, 1)
    """
    return _decode(source, size, color_mode, resize, max_pixels, with_info=False)[0]


def decode_with_info(
    source: ImageSource,
    *,
    size: tuple[int, int] | None = None,
    color_mode: str = "rgb",
    resize: str = "stretch",
    max_pixels: int | None = None,
) -> tuple[np.ndarray, ImageInfo]:
    """:func:`decode_image`, plus what the image was before decoding (its native size, colour or not)."""
    pixels, info = _decode(source, size, color_mode, resize, max_pixels, with_info=True)
    assert info is not None  # with_info=True always measures it
    return pixels, info


def _decode(source: ImageSource, size: tuple[int, int] | None, color_mode: str, resize: str,
            max_pixels: int | None, with_info: bool) -> tuple[np.ndarray, ImageInfo | None]:
    channels = channels_for(color_mode)
    if resize not in RESIZE_METHODS:
        raise ConfigError(f"Unknown resize policy. Expected one of {RESIZE_METHODS}. Received: resize={resize!r}.")
    image, native = _open(source, MAX_PIXELS if max_pixels is None else max_pixels,
                          None if size is None else (size[1], size[0]))
    image = _upright(image)
    info = _info(image, native) if with_info else None
    image = image.convert("L" if color_mode == "grayscale" else "RGB")
    if size is not None and image.size != (size[1], size[0]):
        target, method = (size[1], size[0]), Image.Resampling.BILINEAR
        if resize == "crop":  # keep the aspect ratio, fill the frame, cut the overflow (centred)
            image = ImageOps.fit(image, target, method=method)
        elif resize == "pad":  # keep the aspect ratio, fit inside, pad with black (centred)
            image = ImageOps.pad(image, target, method=method, color=0)
        else:
            image = image.resize(target, method)
    return np.asarray(image, dtype=np.uint8).reshape(image.size[1], image.size[0], channels), info


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode a ``uint8`` ``(H, W)``/``(H, W, 1)``/``(H, W, 3)`` array as PNG bytes (lossless)."""
    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        raise DataError(f"Expected uint8 pixels. Received: dtype={array.dtype}.")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
