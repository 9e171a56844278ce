"""Image-folder indexing and splitting, on tiny folders generated in tmp_path."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.datasets.folder import DEFAULT_LABEL_REGEX, FolderIndex, index_folder
from cnnkit.datasets.folder_splits import split_index
from cnnkit.errors import ConfigError, DataError


def _png(path: Path, color: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG") -> Path:
    """A real 4x4 image; ``color`` makes its bytes distinct."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buf, format=fmt)
    path.write_bytes(buf.getvalue())
    return path


def _fake(path: Path, data: bytes | None = None) -> Path:
    """Placeholder bytes where the content does not matter (unique per path unless given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(str(path).encode() if data is None else data)
    return path


def _labels_by_name(index: FolderIndex) -> dict[str, str]:
    return {p.name: index.class_names[y] for p, y in zip(index.paths, index.labels)}


def _flat(root: Path, counts: dict[str, int]) -> Path:
    for name, n in counts.items():
        for i in range(n):
            _fake(root / f"{name}{i}.jpg")
    return root


# --- label modes -------------------------------------------------------------------------------


def test_filename_mode_default_regex(tmp_path):
    _png(tmp_path / "rain12.jpg", (0, 0, 255), "JPEG")
    _png(tmp_path / "ankle_boot3.png", (1, 2, 3))
    _png(tmp_path / "cloudy1.jpg", (90, 90, 90), "JPEG")
    _fake(tmp_path / "sunrise7.jpg")
    _fake(tmp_path / "shine140.jpg")
    _fake(tmp_path / "ankle_boot_4.PNG")  # suffix case and the optional underscore
    index = index_folder(tmp_path)
    assert index.label_mode == "filename"
    assert index.class_names == ["ankle_boot", "cloudy", "rain", "shine", "sunrise"]
    assert _labels_by_name(index) == {
        "ankle_boot3.png": "ankle_boot", "ankle_boot_4.PNG": "ankle_boot", "cloudy1.jpg": "cloudy",
        "rain12.jpg": "rain", "shine140.jpg": "shine", "sunrise7.jpg": "sunrise",
    }
    assert index.paths == sorted(index.paths) and all(p.is_absolute() for p in index.paths)
    assert index.labels.dtype == np.int64 and index.presplit == [None] * 6
    assert all(len(h) == 64 for h in index.sha256)


def test_filename_substring_trap(tmp_path):
    # The article tested 'sun' in name: sunrise and sunrain would both become 'sun'.
    for name in ("sun1.jpg", "sun2.jpg", "sunrise1.jpg", "sunrain5.jpg"):
        _fake(tmp_path / name)
    assert _labels_by_name(index_folder(tmp_path)) == {
        "sun1.jpg": "sun", "sun2.jpg": "sun", "sunrise1.jpg": "sunrise", "sunrain5.jpg": "sunrain"
    }


def test_filename_no_label_is_skipped_with_reason(tmp_path):
    _flat(tmp_path, {"rain": 1, "cloudy": 1})
    _fake(tmp_path / "IMG.jpg")
    index = index_folder(tmp_path)
    assert index.skipped == [
        (tmp_path / "IMG.jpg", f"no label: name 'IMG.jpg' does not match the label regex {DEFAULT_LABEL_REGEX!r}")
    ]
    assert "IMG.jpg: no label" in index.report()


def test_custom_label_regex(tmp_path):
    for name in ("IMG_0001_rain.jpg", "IMG_0002_rain.jpg", "IMG_0003_cloudy.jpg"):
        _fake(tmp_path / name)
    index = index_folder(tmp_path, label_regex=r"_([a-z]+)$")
    assert index.class_counts() == {"cloudy": 1, "rain": 2}


@pytest.mark.parametrize(
    ("regex", "match"),
    [("([a-z", r"label_regex is not a valid regular expression .*Received: label_regex='\(\[a-z'"),
     (r"^[a-z]+\d", r"label_regex needs a capture group .*Received: label_regex=")],
)
def test_bad_label_regex(tmp_path, regex, match):
    _flat(tmp_path, {"rain": 1, "cloudy": 1})
    with pytest.raises(ConfigError, match=match):
        index_folder(tmp_path, label_regex=regex)


def test_subfolders_mode_nested_hidden_and_stray_files(tmp_path):
    _png(tmp_path / "cat" / "a.png", (1, 1, 1))
    _png(tmp_path / "cat" / "deeper" / "more" / "b.png", (2, 2, 2))
    _png(tmp_path / "dog" / "c.jpg", (3, 3, 3), "JPEG")
    _fake(tmp_path / "dog" / ".DS_Store")
    _fake(tmp_path / ".thumbnails" / "x.jpg")
    _fake(tmp_path / "dog" / "Thumbs.db")
    _fake(tmp_path / "notes.txt")
    _fake(tmp_path / "loose.jpg")
    index = index_folder(tmp_path)
    assert index.label_mode == "subfolders"
    assert _labels_by_name(index) == {"a.png": "cat", "b.png": "cat", "c.jpg": "dog"}
    assert index.skipped == [
        (tmp_path / "loose.jpg", "not in a class sub-folder (the other images are in class sub-folders)"),
        (tmp_path / "notes.txt", "not an image suffix"),
    ]
    with pytest.raises(ConfigError, match="label_regex applies to files labelled by name.*'subfolders'"):
        index_folder(tmp_path, label_regex=r"(\w+)")


def test_manifest_mode_with_missing_file(tmp_path):
    _fake(tmp_path / "img" / "a.jpg")
    _fake(tmp_path / "img" / "b.jpg")
    _fake(tmp_path / "elsewhere.png")
    manifest = tmp_path / "labels.csv"
    absolute = tmp_path / "elsewhere.png"
    rows = ["path,label", "img/a.jpg,rain", "img/b.jpg, cloudy", f"{absolute},rain", "img/gone.jpg,rain"]
    manifest.write_text("\n".join(rows) + "\n")
    index = index_folder(tmp_path, manifest=manifest)
    assert index.label_mode == "manifest"
    assert _labels_by_name(index) == {"a.jpg": "rain", "b.jpg": "cloudy", "elsewhere.png": "rain"}
    assert index.skipped == [(tmp_path / "img" / "gone.jpg", "missing: listed in labels.csv line 5 but not found")]


def test_manifest_columns_as_other_tools_name_them(tmp_path):
    _fake(tmp_path / "img" / "a.jpg")
    _fake(tmp_path / "img" / "b.jpg")
    manifest = tmp_path / "labels.csv"
    manifest.write_text("id,Filename,Class\n1,img/a.jpg,rain\n2,img/b.jpg,sun\n")
    index = index_folder(tmp_path, manifest=manifest)
    assert _labels_by_name(index) == {"a.jpg": "rain", "b.jpg": "sun"}


def test_manifest_bad_header(tmp_path):
    manifest = tmp_path / "labels.csv"
    manifest.write_text("name,kind\na.jpg,rain\n")
    with pytest.raises(DataError, match=r"labels\.csv to start with the header 'path,label'\. Received: 'name,kind'"):
        index_folder(tmp_path, manifest=manifest)
    with pytest.raises(ConfigError, match="cannot be combined"):
        index_folder(tmp_path, manifest=manifest, label_regex="(a)")


def test_presplit_folders(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for cls in ("cat", "dog"):
            for i in range(n):
                _fake(tmp_path / split / cls / f"{i}.jpg")
    _fake(tmp_path / "extra" / "cat" / "0.jpg")
    index = index_folder(tmp_path)
    assert index.label_mode == "subfolders"
    assert index.class_counts() == {"cat": 11, "dog": 11}
    assert index.skipped == [(tmp_path / "extra" / "cat" / "0.jpg", "outside the train/val/test folders")]
    assert "(label mode: subfolders, pre-split: train 12, val 4, test 6)" in index.report()
    splits = split_index(index)
    for name, n in (("train", 12), ("val", 4), ("test", 6)):
        part = getattr(splits, name)
        assert len(part) == n and {index.presplit[i] for i in part} == {name}
    assert splits.notes == []
    with pytest.raises(ConfigError, match="train_per_class re-splits the whole folder"):
        split_index(index, train_per_class=2)


@pytest.mark.parametrize("names", [("train", "valid", "test"), ("Training", "Validation", "Testing")])
def test_presplit_folders_as_other_tools_spell_them(tmp_path, names):
    """Roboflow's export (train/valid/test) and Kaggle-style capitalised names are the same three splits."""
    for folder, n in zip(names, (6, 2, 3)):
        for cls in ("cat", "dog"):
            for i in range(n):
                _fake(tmp_path / folder / cls / f"{i}.jpg")
    index = index_folder(tmp_path)
    assert index.skipped == []
    assert "(label mode: subfolders, pre-split: train 12, val 4, test 6)" in index.report()
    assert index.class_names == ["cat", "dog"]


def test_presplit_flat_files_and_carved_val(tmp_path):
    _flat(tmp_path / "train", {"rain": 10, "sun": 10})
    _flat(tmp_path / "test", {"rain": 2, "sun": 2})
    index = index_folder(tmp_path)
    assert index.label_mode == "filename"
    splits = split_index(index, val_fraction=0.2, seed=3)
    assert len(splits.test) == 4 and len(splits.val) == 4 and len(splits.train) == 16
    assert {index.presplit[i] for i in np.concatenate([splits.train, splits.val])} == {"train"}
    assert splits.notes == ["No val/ folder: carved 20% of each class in train/ as val."]


# --- skipped files and errors --------------------------------------------------------------------


def test_empty_unreadable_and_non_image_files_are_reported(tmp_path):
    _flat(tmp_path, {"rain": 2, "sun": 2})
    _fake(tmp_path / "rain9.jpg", b"")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "sun9.jpg")  # unreadable even as root
    _fake(tmp_path / "readme.md")
    index = index_folder(tmp_path)
    reasons = dict(index.skipped)
    assert reasons[tmp_path / "rain9.jpg"] == "empty file (0 bytes)"
    assert reasons[tmp_path / "sun9.jpg"].startswith("unreadable: FileNotFoundError")
    assert reasons[tmp_path / "readme.md"] == "not an image suffix"
    report = index.report()
    assert "rain9.jpg: empty file (0 bytes)" in report and "readme.md: not an image suffix" in report
    assert "Skipped 3 files:" in report


def test_report_collapses_many_non_image_files(tmp_path):
    _flat(tmp_path, {"rain": 1, "sun": 3})
    for i in range(25):
        _fake(tmp_path / f"meta{i}.json")
    report = index_folder(tmp_path).report()
    assert "... and 25 files without an image suffix" in report and "meta3.json" not in report
    assert "rain  1  (a single image" in report


def test_no_images_error(tmp_path):
    _fake(tmp_path / "notes.txt")
    _fake(tmp_path / "IMG.jpg")
    with pytest.raises(DataError, match=r"No images found in .*expected one sub-folder per class .*rain12\.jpg\. "
                                        r"Received: 2 skipped files\. First: IMG\.jpg: no label"):
        index_folder(tmp_path)
    with pytest.raises(DataError, match="Expected a folder of images. Received: root="):
        index_folder(tmp_path / "missing")


def test_single_class_error(tmp_path):
    _flat(tmp_path, {"rain": 3})
    with pytest.raises(DataError, match="Expected at least 2 classes .*Received: 1 class 'rain' with 3 images"):
        index_folder(tmp_path)


# --- duplicates ----------------------------------------------------------------------------------


def test_duplicates_across_classes_are_dropped_and_conflicts_reported(tmp_path):
    _png(tmp_path / "cat" / "a.png", (9, 9, 9))
    _png(tmp_path / "cat" / "b.png", (8, 8, 8))
    _png(tmp_path / "dog" / "copy_of_a.png", (9, 9, 9))
    _png(tmp_path / "cat" / "z_same_class.png", (8, 8, 8))
    _png(tmp_path / "dog" / "d.png", (7, 7, 7))
    index = index_folder(tmp_path)
    assert index.duplicates == [
        (tmp_path / "cat" / "z_same_class.png", tmp_path / "cat" / "b.png"),
        (tmp_path / "dog" / "copy_of_a.png", tmp_path / "cat" / "a.png"),
    ]
    assert index.conflicting_labels == {tmp_path / "dog" / "copy_of_a.png": "dog"}
    assert index.class_counts() == {"cat": 2, "dog": 1}
    assert len(set(index.sha256)) == len(index.paths)
    report = index.report()
    assert "Duplicates: 2 byte-identical copies dropped" in report
    assert "dog/copy_of_a.png -> cat/a.png  conflicting labels: 'dog' vs kept 'cat'" in report


def test_duplicates_across_splits_keep_the_train_copy(tmp_path):
    _flat(tmp_path / "train", {"rain": 3, "sun": 3})
    _flat(tmp_path / "test", {"rain": 1, "sun": 1})
    same = b"identical bytes"
    _fake(tmp_path / "test" / "rain5.jpg", same)
    _fake(tmp_path / "train" / "rain7.jpg", same)
    _fake(tmp_path / "val" / "rain8.jpg", same)
    index = index_folder(tmp_path)
    kept = tmp_path / "train" / "rain7.jpg"
    assert index.duplicates == [(tmp_path / "test" / "rain5.jpg", kept), (tmp_path / "val" / "rain8.jpg", kept)]
    splits = split_index(index)
    where = [name for name in ("train", "val", "test") if index.paths.index(kept) in getattr(splits, name)]
    assert where == ["train"]


# --- splitting -----------------------------------------------------------------------------------


def test_split_counts_are_exact_per_class_and_seeded(tmp_path):
    index = index_folder(_flat(tmp_path, {"a": 50, "b": 30, "c": 20}))
    splits = split_index(index, val_fraction=0.1, test_fraction=0.2, seed=0)
    per_class = {name: np.bincount(index.labels[getattr(splits, name)], minlength=3).tolist()
                 for name in ("train", "val", "test")}
    # test: 20% of each class; val: 10% of the whole, i.e. 12.5% of what test left.
    assert per_class == {"train": [35, 21, 14], "val": [5, 3, 2], "test": [10, 6, 4]}
    everything = np.concatenate([splits.train, splits.val, splits.test])
    assert np.array_equal(np.sort(everything), np.arange(100))
    for part in (splits.train, splits.val, splits.test):
        assert np.array_equal(part, np.sort(part))
    again = split_index(index, val_fraction=0.1, test_fraction=0.2, seed=0)
    other = split_index(index, val_fraction=0.1, test_fraction=0.2, seed=1)
    assert np.array_equal(again.test, splits.test) and np.array_equal(again.val, splits.val)
    assert not np.array_equal(other.test, splits.test)


def test_train_per_class_protocol(tmp_path):
    index = index_folder(_flat(tmp_path, {"a": 12, "b": 8, "c": 20}))
    splits = split_index(index, train_per_class=5, val_fraction=0.25, seed=7)
    assert np.bincount(index.labels[splits.train]).tolist() == [5, 5, 5]
    assert np.bincount(index.labels[splits.val]).tolist() == [2, 1, 4]  # 25% of each class's rest (7, 3, 15)
    assert not set(splits.train) & set(splits.test) and not set(splits.train) & set(splits.val)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 40
    assert np.array_equal(split_index(index, train_per_class=5, val_fraction=0.25, seed=7).train, splits.train)
    with pytest.raises(DataError, match=r"more than 8 images in every class .*Received: 'b' has 8\."):
        split_index(index, train_per_class=8)
    with pytest.raises(ConfigError, match="train_per_class to be a positive integer. Received: train_per_class=0"):
        split_index(index, train_per_class=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"val_fraction": 1.0}, r"val_fraction in \[0, 1\)\. Received: val_fraction=1\.0"),
     ({"test_fraction": -0.1}, r"test_fraction in \[0, 1\)\. Received: test_fraction=-0\.1"),
     ({"val_fraction": "0.1"}, r"val_fraction in \[0, 1\)\. Received: val_fraction='0\.1'"),
     ({"val_fraction": 0.5, "test_fraction": 0.5}, r"val_fraction \+ test_fraction below 1")],
)
def test_bad_fractions(tmp_path, kwargs, match):
    index = index_folder(_flat(tmp_path, {"a": 4, "b": 4}))
    with pytest.raises(ConfigError, match=match):
        split_index(index, **kwargs)


# --- real data -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_weather_folder(real_weather):
    start = time.perf_counter()
    index = index_folder(real_weather)
    seconds = time.perf_counter() - start
    assert index.label_mode == "filename" and index.skipped == []
    files = {"cloudy": 300, "rain": 214, "shine": 253, "sunrise": 354}
    dropped = {name: 0 for name in files}
    for path, _ in index.duplicates:
        dropped[re.match("[a-z]+", path.name).group()] += 1
    assert {name: n + dropped[name] for name, n in index.class_counts().items()} == files
    # The photos hold 25 byte-identical copies, all within one class.
    assert index.class_counts() == {"cloudy": 291, "rain": 205, "shine": 250, "sunrise": 350}
    assert index.conflicting_labels == {}
    print(f"\nindexed {len(index.paths)} weather photos in {seconds:.2f}s\n{index.report()}")
