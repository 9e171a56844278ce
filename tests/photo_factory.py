"""Generate small photo folders like the weather set (``cloudy1.jpg``, ``rain3.png``) with every hazard.

Each class has its own colour and pattern (a model can learn them in one epoch) and
every image differs from the others, so two equal pixel rows mean one file used twice.
``add_hazards`` adds files a real photo folder ships with: valid odd ones, which must be
used, and broken ones, which must be skipped and named with a reason.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("cloudy", "rain", "shine")
SIZE = (40, 30)  # (width, height): not square, so resize policies differ
_COLOURS = {"cloudy": (128, 128, 128), "rain": (30, 60, 200), "shine": (240, 200, 40)}

RED, GREEN, BLUE, ORANGE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 128, 0)  # odd files differ


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def class_image(label: str, i: int, size: tuple[int, int] = SIZE) -> Image.Image:
    """``label``'s colour with its pattern (cloudy: rows, rain: columns, shine: plain); ``i`` shifts brightness."""
    width, height = size
    pixels = np.empty((height, width, 3), dtype=np.int64)
    pixels[:] = _COLOURS[label]
    if label == "cloudy":
        pixels[::4] -= 60
    elif label == "rain":
        pixels[:, ::4] += 50
    pixels += 2 * i
    pixels[0, 0] = (i, 255 - i, 7 * i % 256)  # one marker pixel: every image's bytes and pixels differ
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_clean(root: Path, per_class: int = 12, classes: tuple[str, ...] = CLASSES,
                size: tuple[int, int] = SIZE) -> list[Path]:
    """``per_class`` valid images per class, named ``<class><i>``; every 4th is a PNG, the rest JPEG."""
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for label in classes:
        for i in range(per_class):
            fmt, suffix = ("PNG", ".png") if i % 4 == 3 else ("JPEG", ".jpg")
            path = root / f"{label}{i}{suffix}"
            path.write_bytes(encode(class_image(label, i, size), fmt, **({"quality": 95} if fmt == "JPEG" else {})))
            written.append(path)
    return written


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb in 68 bytes; never decodable)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def _half(left: tuple[int, ...], right: tuple[int, ...], mode: str = "RGB") -> Image.Image:
    """``SIZE`` image: left half ``left``, right half ``right``."""
    image = Image.new(mode, SIZE, right)
    image.paste(left, (0, 0, SIZE[0] // 2, SIZE[1]))
    return image


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape; shown rotated 90° clockwise: the left half becomes the top half
    return encode(_half(RED, (0, 0, 0)), "JPEG", exif=exif, quality=95)


def _animated_gif() -> bytes:
    first, second = Image.new("RGB", SIZE, RED), Image.new("RGB", SIZE, BLUE)
    return encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)


def _sixteen_bit_grey() -> bytes:
    ramp = np.tile(np.linspace(0, 65535, SIZE[0]).astype(np.uint16), (SIZE[1], 1))  # beyond 255: must be scaled
    return encode(Image.fromarray(ramp), "PNG")


def _truncated_jpeg() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG")
    return data[: len(data) // 2]


# File name -> (bytes, what it is). Labels come from the names, like the weather set.
VALID_ODD = {
    "rain20.jpg": (lambda: encode(class_image("rain", 20), "PNG"), "a PNG named .jpg"),
    "shine20.jpg": (lambda: encode(Image.new("RGB", SIZE, GREEN), "GIF"), "a GIF named .jpg"),
    "cloudy20.png": (lambda: encode(_half((*RED, 255), (255, 255, 255, 0), "RGBA"), "PNG"),
                     "RGBA, right half transparent"),
    "rain21.jpg": (lambda: encode(Image.new("RGB", SIZE, ORANGE).convert("CMYK"), "JPEG", quality=95), "a CMYK JPEG"),
    "shine21.tif": (lambda: encode(Image.new("RGB", SIZE, BLUE).convert("CMYK"), "TIFF"), "a CMYK TIFF"),
    "cloudy21.png": (_sixteen_bit_grey, "16-bit grey (I;16) ramp"),
    "shine22.jpg": (_exif_rotated, "EXIF orientation 6"),
    "rain22.gif": (_animated_gif, "an animated GIF: red, then blue"),
}
# File name -> (bytes, reason fragment the report must give).
BROKEN = {
    "cloudy30.jpg": (_truncated_jpeg, "Cannot decode image: image file is truncated"),
    "rain30.jpg": (lambda: b"", "empty file (0 bytes)"),
    "shine30.jpg": (lambda: b"Hello, I am a text file with a .jpg name.\n",
                    "Cannot decode image: not an image in a supported format"),
    "cloudy31.png": (lambda: png_header(9000, 9000),
                     "Image is too large: 9000x9000 pixels exceeds the limit of 64,000,000"),
    "rain31.png": (lambda: png_header(50000, 50000),
                   "Cannot decode image: Image size (2500000000 pixels) exceeds limit"),
    "notes.txt": (lambda: b"shot on my phone\n", "not an image suffix"),
}


def add_hazards(root: Path) -> None:
    """Write every file of :data:`VALID_ODD` and :data:`BROKEN` into ``root``."""
    for name, (make, _) in {**VALID_ODD, **BROKEN}.items():
        (root / name).write_bytes(make())


def weather_like(root: Path, per_class: int = 12) -> Path:
    """A flat folder: ``per_class`` clean images per class plus every hazard."""
    write_clean(root, per_class)
    add_hazards(root)
    return root
