"""The shared decoder: formats by content, modes converted one documented way, clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cnnkit.errors import ConfigError, DataError
from cnnkit.images import decode_image, encode_png

pytestmark = pytest.mark.backends


def _bytes(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_png_round_trip_is_exact():
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(encode_png(pixels), color_mode="grayscale"), pixels)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "1"])
def test_every_mode_becomes_the_requested_channels(mode):
    image = Image.new("RGB", (10, 8), (200, 100, 50)).convert(mode) if mode != "I;16" else Image.new("I;16", (10, 8), 40000)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    assert decode_image(_bytes(image, fmt), color_mode="grayscale").shape == (8, 10, 1)
    assert decode_image(_bytes(image, fmt), color_mode="rgb").shape == (8, 10, 3)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    image = Image.new("I;16", (4, 4), 65535)
    assert decode_image(_bytes(image, "PNG"), color_mode="grayscale").max() == 255


def test_transparency_is_composited_on_black():
    image = Image.new("RGBA", (4, 4), (255, 255, 255, 0))
    assert decode_image(_bytes(image, "PNG"), color_mode="grayscale").max() == 0


def test_format_is_detected_from_content_not_extension(tmp_path):
    path = tmp_path / "actually_png.jpg"
    path.write_bytes(_bytes(Image.new("L", (5, 5), 9), "PNG"))
    assert decode_image(path, color_mode="grayscale").max() == 9


def test_exif_orientation_is_applied():
    image = Image.new("L", (6, 3), 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert decode_image(buffer.getvalue(), color_mode="grayscale").shape == (6, 3, 1)


def test_resize_to_model_size():
    big = _bytes(Image.new("RGB", (300, 200), (0, 0, 0)), "PNG")
    assert decode_image(big, size=(28, 28), color_mode="grayscale").shape == (28, 28, 1)


@pytest.mark.parametrize("content,match", [
    (b"", "empty image"),
    (b"this is text, not a picture", "Cannot decode image"),
    (None, "Cannot decode image"),  # truncated PNG, filled below
])
def test_bad_bytes_are_a_data_error(content, match):
    if content is None:
        content = _bytes(Image.new("L", (64, 64), 3), "PNG")[:60]
    with pytest.raises(DataError, match=match):
        decode_image(content, color_mode="grayscale")


def test_missing_and_empty_files_name_the_path(tmp_path):
    with pytest.raises(DataError, match=r"not found\. Received: .*missing\.png"):
        decode_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty \(0 bytes\)\. Received: .*empty\.png"):
        decode_image(tmp_path / "empty.png")


def test_unknown_colour_mode():
    with pytest.raises(ConfigError, match="Received: color_mode='cmyk'"):
        decode_image(encode_png(np.zeros((2, 2), np.uint8)), color_mode="cmyk")


@pytest.mark.parametrize("policy,expected_corner", [("stretch", 255), ("crop", 255), ("pad", 0)])
def test_resize_policies(policy, expected_corner):
    wide = _bytes(Image.new("L", (40, 20), 255), "PNG")  # 2:1 white image into a square
    out = decode_image(wide, size=(10, 10), color_mode="grayscale", resize=policy)
    assert out.shape == (10, 10, 1)
    assert out[0, 0, 0] == expected_corner  # only "pad" adds (black) borders
