"""Dataset validation, stratified splits and subsets, .npz loading, the registry, the fixture."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import cnnkit.datasets as datasets
from cnnkit.datasets import BUILTIN, Dataset, load, load_npz, stratified_sample, stratified_split
from cnnkit.errors import ConfigError, DataError

from helpers import check_dataset

FIXTURE = Path(__file__).parent / "fixtures" / "mnist_subset.npz"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _parts(n_train=12, n_test=6, shape=(4, 4, 1), classes=3):
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": np.arange(n_train) % classes,
        "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": np.arange(n_test) % classes,
    }


def _dataset(**overrides) -> Dataset:
    fields = {"name": "toy", **_parts(), "class_names": ["a", "b", "c"], "color_mode": "grayscale", **overrides}
    return Dataset(**fields)


# --- Dataset -------------------------------------------------------------------------------


def test_dataset_properties_and_label_dtype():
    ds = _dataset(y_train=(np.arange(12) % 3).astype(np.uint8))
    assert ds.input_shape == (4, 4, 1) and ds.num_classes == 3
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert repr(ds) == (
        "Dataset(name='toy', train=12, test=6, input_shape=(4, 4, 1), num_classes=3, source='')"
    )


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"x_train": np.zeros((12, 4, 4, 1), np.float32)},
         r"Expected x_train to hold uint8 pixels 0-255\. Received: dtype float32\..*astype\('uint8'\)"),
        ({"x_test": np.zeros((6, 4, 4), np.uint8)},
         r"Expected x_test with 4 dimensions \(N, H, W, C\)\. Received: shape=\(6, 4, 4\).*x\[\.\.\., None\]"),
        ({"x_train": [[0]]}, r"Expected x_train to be a NumPy array\. Received: list"),
        ({"color_mode": "rgb"}, r"Expected x_train with 3 channel\(s\) for color_mode='rgb'"),
        ({"color_mode": "RGB"}, r"Expected color_mode 'grayscale' or 'rgb'\. Received: color_mode='RGB'"),
        ({"y_train": np.arange(12) % 4}, r"Expected y_train values in \[0, 3\) for 3 classes\. Received: min=0, max=3"),
        ({"y_test": np.array([0, -1, 0, 0, 0, 0])}, r"y_test values in \[0, 3\).*min=-1"),
        ({"y_train": np.zeros(11, int)},
         r"Expected one label per image in y_train\. Received: 11 labels for 12 images"),
        ({"y_train": np.zeros(12, np.float32)}, r"y_train to be a 1-D array of integer.*dtype=float32"),
        ({"y_train": np.eye(3)[np.arange(12) % 3].astype(int)}, r"shape=\(12, 3\).*argmax\(axis=1\)"),
        ({"class_names": ["a", "a", "b"]}, r"distinct class names"),
        ({"class_names": []}, r"non-empty list of distinct class names"),
        ({"x_test": np.zeros((6, 5, 4, 1), np.uint8)},
         r"same size.*x_train.shape=\(12, 4, 4, 1\), x_test.shape=\(6, 5, 4, 1\)"),
    ],
    ids=["float-pixels", "3d", "list", "channels", "color-mode", "label-high", "label-negative",
         "length", "float-labels", "one-hot", "duplicate-names", "no-names", "size-mismatch"],
)
def test_dataset_validation(overrides, match):
    with pytest.raises(DataError, match=match):
        _dataset(**overrides)


def test_subset_is_stratified_seeded_and_keeps_order():
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    ds = _dataset(x_train=np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1), y_train=y,
                  x_test=np.zeros((2, 1, 1, 1), np.uint8), y_test=np.array([0, 1]), class_names=list("abcd"))
    small = ds.subset(train=10, seed=3)
    assert np.bincount(small.y_train).tolist() == [1, 2, 3, 4]
    assert np.all(np.diff(small.x_train.ravel().astype(int)) > 0)  # original order kept
    np.testing.assert_array_equal(small.y_train, y[small.x_train.ravel()])  # rows and labels stay paired
    assert small.x_test.shape[0] == 2 and small.source.endswith("subset train=10 seed=3")
    np.testing.assert_array_equal(ds.subset(train=10, seed=3).x_train, small.x_train)
    assert not np.array_equal(ds.subset(train=10, seed=4).x_train, small.x_train)


@pytest.mark.parametrize("n", [0, -1, 13, 2.5, True])
def test_subset_rejects_impossible_sizes(n):
    match = rf"Cannot take a train subset of toy: Expected a sample size between 1 and 12.*Received: n={n!r}"
    with pytest.raises(ConfigError, match=match):
        _dataset().subset(train=n)


# --- splits ----------------------------------------------------------------------------------

UNBALANCED = np.repeat(np.arange(6), [1, 2, 3, 10, 57, 200])


@pytest.mark.parametrize("seed", [0, 1, 1234])
@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.25, 0.5, 0.9, 0.99])
def test_stratified_split_properties(seed, fraction):
    train_idx, val_idx = stratified_split(UNBALANCED, fraction, seed)
    assert np.all(np.diff(train_idx) > 0) and np.all(np.diff(val_idx) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(len(UNBALANCED)))
    counts = np.bincount(UNBALANCED)
    val_counts = np.bincount(UNBALANCED[val_idx], minlength=len(counts))
    for n, n_val in zip(counts, val_counts):
        expected = 0 if n < 2 else min(max(math.floor(fraction * n + 0.5), 1), n - 1)
        assert n_val == expected
    again = stratified_split(UNBALANCED, fraction, seed)
    np.testing.assert_array_equal(again[1], val_idx)


def test_stratified_split_seed_changes_the_choice():
    a = stratified_split(UNBALANCED, 0.2, seed=0)[1]
    b = stratified_split(UNBALANCED, 0.2, seed=1)[1]
    assert len(a) == len(b) and not np.array_equal(a, b)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, True, "0.1", float("nan")])
def test_stratified_split_rejects_fractions(fraction):
    with pytest.raises(ConfigError, match=r"Expected val_fraction strictly between 0 and 1\. Received: val_fraction="):
        stratified_split(UNBALANCED, fraction, seed=0)


@pytest.mark.parametrize("y", [np.zeros((3, 2), int), np.array([0.0, 1.0]), np.array([], int)])
def test_splits_reject_bad_labels(y):
    with pytest.raises(DataError, match=r"Expected y to be a non-empty 1-D array of integer class labels"):
        stratified_split(y, 0.5, seed=0)


@pytest.mark.parametrize("n", [1, 7, 100, 272, 273])
def test_stratified_sample_exact_size_and_proportions(n):
    idx = stratified_sample(UNBALANCED, n, seed=0)
    assert len(idx) == n == len(np.unique(idx))
    quotas = np.bincount(UNBALANCED) * n / len(UNBALANCED)
    assert np.all(np.abs(np.bincount(UNBALANCED[idx], minlength=6) - quotas) < 1)


# --- .npz --------------------------------------------------------------------------------------


def test_npz_grey_without_channel_axis_and_default_names(tmp_path):
    parts = _parts()
    path = tmp_path / "toy.npz"
    np.savez(path, **{**parts, "x_train": parts["x_train"][..., 0], "x_test": parts["x_test"][..., 0]})
    ds = load_npz(path)
    assert ds.name == "toy" and ds.color_mode == "grayscale" and ds.input_shape == (4, 4, 1)
    assert ds.class_names == ["0", "1", "2"] and ds.source == f"file {path}"
    np.testing.assert_array_equal(ds.x_train, parts["x_train"])


def test_npz_rgb_with_class_names(tmp_path):
    path = tmp_path / "pets.npz"
    np.savez(path, **_parts(shape=(5, 6, 3)), class_names=np.array(["cat", "dog", "emu"]))
    ds = load(str(path))
    assert ds.color_mode == "rgb" and ds.input_shape == (5, 6, 3) and ds.class_names == ["cat", "dog", "emu"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"x_train": np.zeros((12, 4, 4), np.float32)},
         r"toy\.npz: Expected x_train to hold uint8 pixels 0-255\. Received: dtype float32.*\(x \* 255\)"),
        ({"y_test": None}, r"toy\.npz lacks the key\(s\) y_test\. Received keys: x_train, y_train, x_test"),
        ({"x_train": np.zeros((12, 4, 4, 4), np.uint8)}, r"toy\.npz: expected x_train with 1 \(grey\) or 3.*alpha"),
        ({"class_names": np.array([1, 2, 3])}, r"toy\.npz: expected class_names as a 1-D array of strings"),
        ({"class_names": np.array(["a", "b"])}, r"toy\.npz: Expected y_train values in \[0, 2\)"),
        ({"y_train": np.array([{"a": 1}] * 12, dtype=object)}, r"Cannot read dataset file .*toy\.npz as \.npz"),
    ],
    ids=["float-pixels", "missing-key", "four-channels", "numeric-names", "too-few-names", "pickled"],
)
def test_npz_errors_name_the_file(tmp_path, change, match):
    parts = {**_parts(), **change}
    path = tmp_path / "toy.npz"
    np.savez(path, **{k: v for k, v in parts.items() if v is not None})
    with pytest.raises(DataError, match=match):
        load_npz(path)


def test_npz_missing_or_not_npz(tmp_path):
    with pytest.raises(DataError, match=r"Dataset file .*absent\.npz does not exist"):
        load_npz(tmp_path / "absent.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataError, match=r"Cannot read dataset file .*text\.npz as \.npz"):
        load_npz(tmp_path / "text.npz")


# --- every kind of dataset through one check ------------------------------------------------------


def _idx(tmp_path: Path) -> Dataset:
    """MNIST from the user's own IDX files (`--from`): the subset's digits written as IDX."""
    from cnnkit.datasets.idx import write_idx

    small = load(str(FIXTURE))
    import hashlib

    from cnnkit.datasets.mnist import load_mnist

    folder, checksums = tmp_path / "idx", {}
    folder.mkdir()
    for name, array in [("train-images-idx3-ubyte", small.x_train[..., 0]), ("train-labels-idx1-ubyte", small.y_train),
                        ("t10k-images-idx3-ubyte", small.x_test[..., 0]), ("t10k-labels-idx1-ubyte", small.y_test)]:
        data = write_idx(array.astype(np.uint8))
        (folder / name).write_bytes(data)
        checksums[name] = hashlib.sha256(data).hexdigest()
    return load_mnist(source=folder, home=tmp_path, checksums=checksums)


def _folder(layout: str):
    def build(tmp_path: Path) -> Dataset:
        from photo_factory import write_clean

        root = tmp_path / "photos"
        if layout == "filenames":
            write_clean(root, per_class=8)
        elif layout == "subfolders":
            for label in ("cloudy", "rain", "shine"):
                write_clean(root / label, per_class=8, classes=(label,))
        elif layout == "presplit":
            for split, n in (("train", 8), ("test", 4)):
                for label in ("cloudy", "rain"):
                    write_clean(root / split / label, per_class=n, classes=(label,))
                    for path in (root / split / label).iterdir():  # distinct pixels per split
                        path.rename(path.with_name(f"{split}-{path.name}"))
        else:  # a CSV manifest listing the files
            files = write_clean(root, per_class=8)
            (root / "labels.csv").write_text("path,label\n" + "".join(f"{p.name},{p.name.rstrip('0123456789.jpng')}\n"
                                                                       for p in files))
            return load(str(root / "labels.csv"), image_size=24, home=tmp_path)
        return load(str(root), image_size=24, home=tmp_path)
    return build


DATASET_KINDS = {"npz": lambda tmp_path: load(str(FIXTURE)), "mnist-idx": _idx,
                 "folder-filenames": _folder("filenames"), "folder-subfolders": _folder("subfolders"),
                 "folder-presplit": _folder("presplit"), "manifest": _folder("manifest")}


@pytest.mark.parametrize("kind", sorted(DATASET_KINDS))
def test_dataset_kind(kind, tmp_path):
    """The shared check (helpers.check_dataset) over every way cnnkit reads a dataset."""
    check_dataset(DATASET_KINDS[kind](tmp_path))


# --- registry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_builtin_has_a_description_a_loader_and_honours_from(name, tmp_path):
    assert BUILTIN[name] and name in datasets._LOADERS
    with pytest.raises(DataError, match=r"Could not load MNIST from .*nowhere: no such file or folder"):
        load(name, source=tmp_path / "nowhere", home=tmp_path)


def test_builtins_and_loaders_agree():
    assert set(BUILTIN) == set(datasets._LOADERS)


@pytest.mark.parametrize("name", ["cifar10", "MNIST", "data/", "images.zip"])
def test_unknown_dataset(name):
    with pytest.raises(ConfigError, match=rf"Unknown dataset '{name}'\. Expected one of: mnist, "
                       r"a path to an \.npz file, a folder of images, or a \.csv manifest"):
        load(name)


def test_npz_with_from_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"A source applies to built-in datasets only"):
        load(str(tmp_path / "x.npz"), source=tmp_path)


# --- the committed fixture ---------------------------------------------------------------------


def test_committed_mnist_subset_fixture():
    assert FIXTURE.stat().st_size < 1_000_000
    ds = load(str(FIXTURE))
    assert ds.x_train.shape == (3000, 28, 28, 1) and ds.x_test.shape == (600, 28, 28, 1)
    assert ds.class_names == [str(d) for d in range(10)] and ds.color_mode == "grayscale"
    assert np.bincount(ds.y_train).tolist() == [296, 337, 298, 307, 292, 271, 296, 313, 293, 297]
    assert np.bincount(ds.y_test).tolist() == [59, 68, 62, 61, 59, 53, 57, 62, 58, 61]
    assert 30 < ds.x_train.mean() < 40  # MNIST's mean pixel is about 33


@pytest.mark.slow
def test_real_mnist_default_chain():
    """Real MNIST through the default chain (cache, else network); rebuilds the fixture from it."""
    ds = load("mnist")
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(ds.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(ds.y_test).tolist() == MNIST_TEST_COUNTS
    small, fixture = ds.subset(train=3000, test=600, seed=0), load(str(FIXTURE))
    for part in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(small, part), getattr(fixture, part))
