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
    image = (Image.new("RGB", (10, 8), (200, 100, 50)).convert(mode) if mode != "I;16"
             else Image.new("I;16", (10, 8), 40000))
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    assert decode_image(_bytes(image, fmt), color_mode="grayscale").shape == (8, 10, 1)
    assert decode_image(_bytes(image, fmt), color_mode="rgb").shape == (8, 10, 3)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    image = Image.new("I;16", (4, 4), 65535)
    assert decode_image(_bytes(image, "PNG"), color_mode="grayscale").max() == 255


@pytest.mark.parametrize("values, expected", [
    ([0.0, 0.5, 1.0], [0, 128, 255]),           # float pixels in [0, 1]: the usual convention, times 255
    ([0.0, 100.0, 200.0], [0, 100, 200]),       # float pixels already on the 0-255 scale: kept
    ([0.0, 1000.0, 2000.0], [0, 128, 255]),     # beyond 255: the image's maximum becomes 255
    ([-5.0, float("nan"), 1.0], [0, 0, 255]),   # negative and NaN: 0, never wrapped round to 251
])
def test_floating_point_grey_is_scaled_not_blackened(values, expected):
    image = Image.fromarray(np.array([values], dtype=np.float32))  # mode "F", as a float TIFF opens
    assert image.mode == "F"
    assert decode_image(_bytes(image, "TIFF"), color_mode="grayscale").ravel().tolist() == expected


def test_negative_thirty_two_bit_grey_is_clipped_at_zero():
    image = Image.fromarray(np.array([[-300, 0, 128]], dtype=np.int32))  # mode "I"
    assert decode_image(_bytes(image, "TIFF"), color_mode="grayscale").ravel().tolist() == [0, 0, 128]


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


def _photo(width: int, height: int, orientation: int = 1) -> bytes:
    """A smooth colour JPEG (a gradient and a disc), as photos are; ``orientation`` is its EXIF tag."""
    y, x = np.mgrid[0:height, 0:width]
    disc = (x - width / 2) ** 2 + (y - height / 3) ** 2 < (height / 4) ** 2
    rgb = np.stack([x * 255 // width, y * 255 // height, disc * 200], axis=-1).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=92, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("resize", ["stretch", "crop", "pad"])
@pytest.mark.parametrize("orientation", [1, 6])
def test_a_large_jpeg_scaled_in_its_decoder_matches_a_full_decode(resize, orientation):
    from PIL import ImageOps

    from cnnkit.images import decode_with_info

    data = _photo(1600, 1000, orientation)
    pixels, info = decode_with_info(data, size=(96, 128), resize=resize)
    full = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")  # every pixel decoded
    fitted = {"stretch": lambda im: im.resize((128, 96), Image.Resampling.BILINEAR),
              "crop": lambda im: ImageOps.fit(im, (128, 96), method=Image.Resampling.BILINEAR),
              "pad": lambda im: ImageOps.pad(im, (128, 96), method=Image.Resampling.BILINEAR, color=0)}[resize](full)
    assert pixels.shape == (96, 128, 3)
    assert np.abs(pixels.astype(int) - np.asarray(fitted, dtype=int)).mean() < 2.0  # of 255: the same picture
    assert (info.width, info.height) == ((1000, 1600) if orientation == 6 else (1600, 1000))  # native, upright


def test_jpeg_smaller_than_the_target_is_not_scaled():
    data = _photo(100, 60)
    np.testing.assert_array_equal(decode_image(data, size=(60, 100)),
                                  np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


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
