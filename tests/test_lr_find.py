"""The learning-rate range test: fastai's suggestions on curves whose answer is known, then the real thing on tiny
data (a generated photo folder, the MNIST subset), from Python and from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cnnkit.errors import ConfigError, DataError
from cnnkit.plots import plot_lr_find
from cnnkit.training.config import TrainConfig
from cnnkit.training.lr_find import Sweep, lr_find, smooth, steepest, suggest, valley

from helpers import MNIST_SUBSET, assert_clean_error, run_cli
from photo_factory import write_clean

LRS = np.geomspace(1e-6, 1.0, 60)  # an even step in log(lr), as a range test's


def _valley_curve() -> np.ndarray:
    """Flat to index 10, falling to index 40 (faster from 30 to 31), rising after."""
    curve = np.concatenate([np.full(10, 2.0), np.linspace(2.0, 0.5, 31), np.linspace(0.6, 3.0, 19)])
    curve[31:41] -= 0.3  # one big drop between 30 and 31; still falling all the way to 40
    return curve


def test_valley_is_fastais_point_in_the_longest_fall():
    # The run of ever-lower losses is indices 10..40 (31 points); fastai's index is 40 - 31 + int(31/3) + int(31/6).
    assert valley(LRS, _valley_curve()) == pytest.approx(LRS[24])
    assert valley(LRS, np.linspace(1.0, 2.0, 60)) == LRS[0]  # never falls: the first rate, not fastai's last
    # A bump does not cut the fall in two: the run is 0..39 less the bump (39 points), so 39 - 39 + 13 + 6.
    curve = np.concatenate([np.linspace(2.0, 0.5, 40), np.linspace(0.6, 2.0, 20)])
    curve[20] += 0.5
    assert valley(LRS, curve) == pytest.approx(LRS[19])


def test_steepest_is_the_fastest_fall_against_log_lr():
    assert steepest(LRS, _valley_curve()) == pytest.approx(LRS[30])
    assert steepest(LRS[:1], [1.0]) == LRS[0]


def test_smoothing_is_fastais_bias_corrected_average():
    assert smooth([3.0, 3.0, 3.0]).tolist() == pytest.approx([3.0, 3.0, 3.0])  # no pull towards 0 at the start
    assert smooth([0.0, 1.0]).tolist() == pytest.approx([0.0, 0.02 / (1 - 0.98**2)])


def test_suggestions_leave_out_the_start_the_divergence_and_what_is_not_a_number():
    curve = np.concatenate([_valley_curve(), [50.0, np.nan, np.nan]])
    lrs = np.geomspace(1e-6, 10.0, len(curve))
    low, fast = suggest(lrs, curve, steps=len(curve))
    assert lrs[6] <= low <= lrs[40] and fast == pytest.approx(lrs[30])
    with pytest.raises(DataError, match="not a number from the first step"):
        suggest(lrs[:3], [np.nan] * 3, steps=3)


def test_a_sweep_rises_exponentially_and_stops_at_four_times_its_best():
    sweep = Sweep(1e-4, 1.0, 5)
    assert np.allclose(sweep.planned, [1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert sweep.lr() == pytest.approx(1e-4)
    assert not sweep.record(1.0) and sweep.lr() == pytest.approx(1e-3)
    assert sweep.record(1e6) and sweep.diverged  # the smoothed loss past 4x its minimum
    assert Sweep(1e-4, 1.0, 5).record(float("nan"))


@pytest.mark.parametrize(("arguments", "param"), [
    ({"start_lr": 0.0}, "start_lr"),
    ({"start_lr": 1e-3, "end_lr": 1e-4}, "end_lr"),
    ({"end_lr": float("inf")}, "end_lr"),
    ({"steps": 5}, "steps"),
])
def test_bad_arguments_name_the_parameter_before_any_data_is_read(arguments, param):
    with pytest.raises(ConfigError, match=rf"Expected {param}.*Received: {param}=") as caught:
        lr_find(TrainConfig(data="no/such/folder"), **arguments)
    assert caught.value.params == (param,) and param in caught.value.hint


def test_a_backbone_recipe_is_refused():
    config = TrainConfig(data=str(MNIST_SUBSET), backbone="mobilenet_v3_small", weights="none", train_limit=100)
    with pytest.raises(ConfigError, match="without a pretrained backbone") as caught:
        lr_find(config, verbose=0)
    assert set(caught.value.params) == {"recipe", "backbone"}


def test_the_plot_refuses_what_it_cannot_draw(tmp_path):
    with pytest.raises(DataError, match="of one length"):
        plot_lr_find([1e-3, 1e-2], [1.0], [1.0], {}, tmp_path / "x.png")
    with pytest.raises(DataError, match="learning rates > 0"):
        plot_lr_find([0.0, 1e-2], [1.0, 1.0], [1.0, 1.0], {}, tmp_path / "x.png")


def _inside(result, start_lr: float, end_lr: float) -> None:
    for lr in (result.valley, result.steepest):
        assert start_lr <= lr <= end_lr
        assert lr in result.lrs.tolist()  # one of the rates actually tried
    assert result.suggestion == result.valley


@pytest.mark.backends
def test_lr_find_on_a_tiny_folder_writes_the_figure_and_the_record(tmp_path, capsys):
    write_clean(tmp_path / "photos", per_class=12)  # 36 photos, 40x30: recipe auto chooses small
    config = TrainConfig(data=str(tmp_path / "photos"), batch_size=8)
    result = lr_find(config, tmp_path / "lr", start_lr=1e-5, end_lr=1.0, steps=40, verbose=0)
    assert capsys.readouterr().out == ""  # verbose=0: nothing printed
    assert result.recipe == "small" and "small" in repr(result)
    assert len(result.losses) == len(result.smoothed) == len(result.lrs) >= 2  # one loss per step run
    assert len(result.lrs) == 40 or result.diverged
    assert result.lrs[0] == pytest.approx(1e-5)
    assert np.allclose(np.diff(np.log(result.lrs)), np.log(1e5) / 39)  # exponential, one rate per batch
    _inside(result, 1e-5, 1.0)
    with Image.open(tmp_path / "lr" / "lr_find.png") as image:
        assert image.format == "PNG" and image.size[0] > 400
    record = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    assert record["recipe"] == "small" and record["steps"] == 40 and record["steps_run"] == len(result.lrs)
    assert record["suggestion"] == result.valley and record["steepest"] == result.steepest
    assert len(record["losses"]) == len(record["lrs"]) == len(record["smoothed"])
    assert sorted(p.name for p in (tmp_path / "lr").iterdir()) == ["lr_find.json", "lr_find.png"]  # no temporaries


@pytest.mark.backends
def test_a_range_that_must_diverge_stops_early(capsys):
    config = TrainConfig(recipe="fast", data=str(MNIST_SUBSET), train_limit=600, batch_size=32)
    result = lr_find(config, start_lr=1e-4, end_lr=1e4, steps=80, verbose=1)
    assert result.diverged and len(result.losses) < 80
    assert "Stopped after" in capsys.readouterr().out
    _inside(result, 1e-4, 1e4)
    assert result.valley < result.lrs[-1]  # read before the divergence, not at it


def test_the_command_prints_the_suggestion_and_writes_the_figure(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "lr-find", MNIST_SUBSET, "--recipe", "fast", "--train-limit", "600",
                             "--batch-size", "32", "--steps", "30", "--seed", "1")
    assert code == 0, err
    figure = tmp_path / "runs" / "lr-find-mnist_subset.npz" / "lr_find.png"
    assert figure.is_file() and f"Figure: {figure.relative_to(tmp_path)}" in out
    suggested = json.loads(figure.with_name("lr_find.json").read_text())["suggestion"]
    assert f"Suggested learning rate: {suggested:.2e} (valley" in out and "Recipe fast." in out


def test_the_command_is_listed_and_speaks_of_its_flags(capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "--help")
    assert "lr-find" in capsys.readouterr().out
    code, _, err = run_cli(capsys, "lr-find", MNIST_SUBSET, "--steps", "3")
    assert_clean_error(code, err, "steps=3", "--steps")
