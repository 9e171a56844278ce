"""Near-duplicates: look-alike copies of one photo end up in one split, listed; byte copies still caught."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cnnkit.datasets.duplicates import near_duplicate_groups, perceptual_hashes
from cnnkit.datasets.photos import load_folder
from cnnkit.errors import ConfigError

from helpers import run_cli


def _scene(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A photo-like picture, different for every seed: coarse colour structure (like sky, ground, objects)
    with sharp-edged shapes and fine grain on top."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    pixels = np.asarray(coarse, dtype=np.float64)
    for _ in range(3):
        x0, y0 = rng.integers(0, size[0] - 30), rng.integers(0, size[1] - 30)
        pixels[y0:y0 + rng.integers(10, 30), x0:x0 + rng.integers(10, 30)] = rng.uniform(0, 255, 3)
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _copies(original: Image.Image) -> dict[str, bytes]:
    """The ways a photo gets copied: each one's name, and bytes unlike the original's."""
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter clockwise: stored turned back, the pixels differ
    width, height = original.size
    return {
        "resized": _bytes(original.resize((width // 2, height // 2)), "JPEG", quality=92),
        "reencoded": _bytes(original, "JPEG", quality=60),
        "png": _bytes(original, "PNG"),
        "rotated_exif": _bytes(original.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=92, exif=exif),
        "cropped": _bytes(original.crop((4, 3, width - 4, height - 3)), "JPEG", quality=92),
    }


@pytest.fixture
def photo_folder(tmp_path):
    """Three classes of 8 distinct photos each; photo 0 of class sky has five look-alike copies and one byte copy."""
    root = tmp_path / "photos"
    for c, label in enumerate(("sky", "sea", "sand")):
        (root / label).mkdir(parents=True)
        for i in range(8):
            (root / label / f"{i}.jpg").write_bytes(_bytes(_scene(100 * c + i), "JPEG", quality=92))
    original = Image.open(root / "sky" / "0.jpg")
    original.load()
    for name, data in _copies(original).items():
        (root / "sky" / f"copy_{name}.{'png' if name == 'png' else 'jpg'}").write_bytes(data)
    (root / "sky" / "byte_copy.jpg").write_bytes((root / "sky" / "0.jpg").read_bytes())
    return root


def test_every_kind_of_copy_is_found_and_kept_in_one_split(photo_folder):
    for seed in range(4):  # whatever the draw, the group moves as one
        dataset = load_folder(photo_folder, image_size=64, seed=seed, test_fraction=0.3)
        assert len(dataset.profile.groups) == 1, dataset.report
        assert "Near-duplicates: 1 group of look-alike images (each kept whole in one split):" in dataset.report
        listed = next(line for line in dataset.report.splitlines() if line.startswith("  sky/") and " = " in line)
        for name in ("resized", "reencoded", "png", "rotated_exif", "cropped"):
            assert f"copy_{name}" in listed
        assert "byte_copy.jpg -> sky/0.jpg" in dataset.report  # the byte hash still catches its copy
        # The group's six images are all in one split: train, val or test.
        where = {part: getattr(dataset, f"x_{part}") for part in ("train", "val", "test")}
        group_pixels = {bytes(p) for p in _group_pixels(photo_folder, dataset)}
        holding = [part for part, x in where.items() if x is not None and any(bytes(row) in group_pixels for row in x)]
        assert len(holding) == 1, (seed, holding)


def _group_pixels(root, dataset):
    from cnnkit.images import decode_image

    shape = dataset.input_shape
    names = ["0.jpg", *[f"copy_{n}.{'png' if n == 'png' else 'jpg'}" for n in
                        ("resized", "reencoded", "png", "rotated_exif", "cropped")]]
    return [decode_image(root / "sky" / n, size=shape[:2], color_mode="rgb") for n in names]


def test_the_groups_and_the_split_do_not_depend_on_the_recipes_size_or_colour(photo_folder, monkeypatch, tmp_path):
    """Two recipes on one folder and seed must see the same split, or their comparison is not a fair one."""
    monkeypatch.setenv("CNNKIT_HOME", str(tmp_path / "home"))
    loads = [load_folder(photo_folder, image_size=size, color_mode=mode, seed=3, test_fraction=0.3)
             for size, mode in ((64, "rgb"), (128, "rgb"), (96, "grayscale"))]
    assert len(loads[0].profile.groups) == 1
    for other in loads[1:]:
        assert other.profile.groups == loads[0].profile.groups
        for part in ("y_train", "y_val", "y_test"):
            assert np.array_equal(getattr(other, part), getattr(loads[0], part))
        split = [line for line in other.report.splitlines() if line.startswith("Split: ")]
        assert split == [line for line in loads[0].report.splitlines() if line.startswith("Split: ")]


def test_distinct_photos_are_not_grouped():
    pixels = np.stack([np.asarray(_scene(seed).resize((64, 64))) for seed in range(40)])
    assert near_duplicate_groups(perceptual_hashes(pixels), list(range(40))) == []


def test_drop_keeps_one_image_of_each_group(photo_folder):
    kept = load_folder(photo_folder, image_size=64, near_duplicates="drop")
    grouped = load_folder(photo_folder, image_size=64, near_duplicates="group")
    off = load_folder(photo_folder, image_size=64, near_duplicates="off")

    def total(ds):
        splits = [getattr(ds, f"y_{p}") for p in ("train", "val", "test")]
        return sum(len(y) for y in splits if y is not None)

    assert total(grouped) == total(off) == 24 + 5 and total(kept) == 24
    assert off.profile.groups == [] and "Near-duplicates" not in off.report


def test_hashes_live_in_the_pixel_cache(photo_folder, monkeypatch):
    from cnnkit.datasets import duplicates

    load_folder(photo_folder, image_size=64)
    calls = []
    monkeypatch.setattr(duplicates, "perceptual_hashes", lambda pixels: calls.append(len(pixels)))
    again = load_folder(photo_folder, image_size=64)  # same files, same decode: the cached hashes
    assert calls == [] and len(again.profile.groups) == 1


def test_tiny_images_are_not_hashed(tmp_path):
    from photo_factory import write_clean

    write_clean(tmp_path / "tiny", per_class=6, size=(28, 28))
    assert load_folder(tmp_path / "tiny", image_size=28).profile.groups == []


def test_verify_lists_the_groups(photo_folder, capsys):
    code, out, _ = run_cli(capsys, "verify", photo_folder)
    assert "Near-duplicates: 1 group of look-alike images" in out and "copy_cropped.jpg" in out
    assert "Native sizes (min / median / max):" in out and "Class balance: largest / smallest class" in out


def test_bad_mode_is_refused():
    with pytest.raises(ConfigError, match=r"Expected one of \('group', 'drop', 'off'\)\. Received: near_duplicates="):
        load_folder("x", near_duplicates="merge")
