"""The Python API as a notebook uses it: train and evaluate take what the learner holds (issue 30).

`cnnkit.train` takes a name, a Dataset, arrays or a model and returns a Run (model, history, metrics,
run folder, shown inline); `cnnkit.evaluate` takes a run, a model or a predictor and data, and returns
the confusion matrix with the metrics. Re-running a cell returns the same run; errors speak Python.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import MNIST_SUBSET


@pytest.fixture(scope="module")
def digits():
    """A small MNIST subset as arrays: 800 training and 200 test digits."""
    from cnnkit.datasets import load

    return load(str(MNIST_SUBSET)).subset(train=800, test=200, seed=0)


@pytest.fixture(scope="module")
def held(digits, tmp_path_factory):
    """``cnnkit.train`` given the Dataset in hand, two epochs: the run, its folder and what it printed."""
    import contextlib
    import io

    import cnnkit

    out, printed = tmp_path_factory.mktemp("api") / "fast-digits", io.StringIO()
    with contextlib.redirect_stdout(printed):
        run = cnnkit.train(digits, out, recipe="fast", epochs=2, verbose=2)
    return run, printed.getvalue()


def test_train_takes_a_dataset_and_returns_the_run_with_its_model_history_and_metrics(digits, held):
    import cnnkit

    run, printed = held
    assert f"Test accuracy: {run.test_accuracy:.2%}" in printed  # as the CLI prints it
    assert isinstance(run, cnnkit.Run) and run.metrics["test_samples"] == 200 and run.metrics["epochs"] == 2
    assert len(run.history["loss"]) == 2 and len(run.history["val_accuracy"]) == 2
    probs = run.model.predict(digits.x_test[:8], verbose=0)  # the trained Keras model, raw uint8 pixels in
    assert probs.shape == (8, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert repr(run).startswith(f"Run({str(run.run_dir)!r}): test accuracy ") and len(repr(run)) < 200
    html = run._repr_html_()
    assert html.count("data:image/png;base64,") == 2 and "<style" not in html  # curves and confusion matrix
    report = run.report()._repr_html_()
    assert report.startswith("<iframe srcdoc=") and "&lt;style&gt;" in report  # its styles stay in the frame
    config = json.loads((run.run_dir / "config.json").read_text())
    assert config["train"]["data"] == digits.name and len(config["request"]["data"]) == 24  # the data's digest
    # The run trained on data in memory: evaluating it again needs the data, and says so.
    with pytest.raises(cnnkit.errors.ConfigError, match=r"trained on data held in memory .* evaluate\(run, data\)"):
        cnnkit.evaluate(run)
    again = cnnkit.evaluate(run, digits)
    assert again.accuracy == pytest.approx(run.test_accuracy)


def test_train_takes_arrays_as_keras_gives_them(digits, tmp_path):
    import cnnkit
    from cnnkit.datasets import stratified_split
    from cnnkit.datasets.given import as_dataset

    pairs = ((digits.x_train[..., 0], digits.y_train), (digits.x_test[..., 0], digits.y_test))  # (N, 28, 28)
    names = [f"digit {i}" for i in range(10)]
    run = cnnkit.train(pairs, tmp_path / "pairs", recipe="fast", epochs=1, class_names=names, verbose=0)
    assert run.metrics["test_samples"] == 200 and run.predictor().class_names == names
    # (x, y): a stratified test_fraction is held out, the same split for the same seed.
    x, y = digits.x_train, digits.y_train
    carved = as_dataset((x, y), test_fraction=0.25, seed=3)
    held_out = stratified_split(y, 0.25, 3)[1]
    assert len(carved.y_test) == len(held_out) > 190 and np.array_equal(carved.x_test, x[held_out])
    assert carved.input_shape == (28, 28, 1) and carved.class_names == [str(i) for i in range(10)]


def test_train_takes_a_built_model_and_trains_it_in_place(digits, tmp_path):
    import keras

    import cnnkit

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10, activation="softmax")])
    before = [w.copy() for w in model.get_weights()]
    run = cnnkit.train(digits, tmp_path / "mine", recipe="fast", model=model, epochs=1, verbose=0)
    assert run.model is model and any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert run.predictor().model.count_params() == model.count_params()  # the saved model is this one
    assert run.metrics["epochs"] == 1


@pytest.mark.parametrize(("layers", "match"), [
    ([("Input", (32, 32, 1)), ("Dense", 10, "softmax")], r"input takes the data's images, .*\(None, 28, 28, 1\)"),
    ([("Input", (28, 28, 1)), ("Flatten",), ("Dense", 3, "softmax")], r"one output per class \(10: 0, 1, 2"),
    ([("Input", (28, 28, 1)), ("Flatten",), ("Dense", 10, None)], "ends in a softmax"),
])
def test_a_model_that_does_not_fit_the_data_is_refused_before_the_folder(digits, tmp_path, layers, match):
    import keras

    import cnnkit

    made = []
    for kind, *args in layers:
        if kind == "Input":
            made.append(keras.Input(args[0]))
        elif kind == "Flatten":
            made.append(keras.layers.Flatten())
        else:
            made.append(keras.layers.Dense(args[0], activation=args[1]))
    with pytest.raises(cnnkit.errors.ConfigError, match=match):
        cnnkit.train(digits, tmp_path / "bad", recipe="fast", model=keras.Sequential(made), epochs=1, verbose=0)
    assert not (tmp_path / "bad").exists()


def test_evaluate_takes_a_model_and_arrays_and_returns_the_confusion_matrix(digits, trained_run, tmp_path):
    import cnnkit

    model = trained_run.model
    x, y = digits.x_test, digits.y_test
    result = cnnkit.evaluate(model, (x, y))
    predicted = model.predict(x, verbose=0).argmax(axis=1)
    assert result.accuracy == pytest.approx(float((predicted == y).mean()))
    assert result.confusion.shape == (10, 10) and int(result.confusion.sum()) == len(y)
    assert np.array_equal(np.diag(result.confusion), np.bincount(y[predicted == y], minlength=10))
    assert repr(result).startswith("Evaluation(accuracy ") and "data:image/png;base64," in result._repr_html_()
    # A run folder, a Run and a Predictor give the same numbers; nothing is written unless asked.
    before = {p.name: p.stat().st_mtime_ns for p in trained_run.run_dir.iterdir()}
    for target in (trained_run.run_dir, trained_run, cnnkit.load(trained_run.run_dir)):
        assert cnnkit.evaluate(target, (x, y)).accuracy == pytest.approx(result.accuracy, abs=1e-6)
    assert cnnkit.evaluate(trained_run).accuracy == pytest.approx(trained_run.test_accuracy)
    assert {p.name: p.stat().st_mtime_ns for p in trained_run.run_dir.iterdir()} == before


def test_running_the_cell_again_returns_the_run_and_a_changed_cell_asks_for_overwrite(digits, held, capsys):
    import cnnkit

    run, _ = held
    stamp = (run.run_dir / "model.keras").stat().st_mtime_ns
    again = cnnkit.train(digits.subset(), run.run_dir, recipe="fast", epochs=2, verbose=2)  # Restart & Run All
    assert "already holds this run (same settings, same data): returning it" in capsys.readouterr().out
    assert again.metrics == run.metrics and (run.run_dir / "model.keras").stat().st_mtime_ns == stamp
    with pytest.raises(cnnkit.errors.ConfigError, match=r"other settings: epochs 2 -> 3\. .*overwrite=True"):
        cnnkit.train(digits, run.run_dir, recipe="fast", epochs=3, verbose=0)
    with pytest.raises(cnnkit.errors.ConfigError, match="other settings: another data"):
        cnnkit.train(digits.subset(train=400, seed=1), run.run_dir, recipe="fast", epochs=2, verbose=0)
    assert (run.run_dir / "model.keras").stat().st_mtime_ns == stamp


def test_python_errors_speak_python(digits, held):
    """Did-you-mean for recipes, settings, datasets and run folders; shapes as given; a Dataset where a name goes."""
    import cnnkit
    from cnnkit.errors import CnnkitError

    def error(call):
        with pytest.raises(CnnkitError) as caught:
            call()
        return f"{caught.value.message} {caught.value.hint}"

    text = error(lambda: cnnkit.train("mnist", recipe="fsat"))
    assert "Did you mean 'fast'?" in text and "cnnkit.PRESETS" in text and "`cnnkit" not in text
    assert "Did you mean 'epochs'?" in error(lambda: cnnkit.train("mnist", epoch=3))
    assert "Did you mean 'mnist'?" in error(lambda: cnnkit.train("mnsit", recipe="fast"))
    run, _ = held
    text = error(lambda: cnnkit.load(run.run_dir.parent / "fast-digit"))
    assert f"Did you mean {str(run.run_dir)!r}?" in text and "cnnkit.train()" in text and "`cnnkit" not in text
    text = error(lambda: run.predictor().predict(np.zeros((32, 32, 3), np.uint8)))
    assert "Received: shape=(32, 32, 3)." in text and "(1, 32, 32, 3)" not in text
    text = error(lambda: cnnkit.TrainConfig(data=digits))
    assert "Expected data as a dataset name or path. Received: data=Dataset." in text
    assert "cnnkit.train(data, ...)" in text


def test_the_command_line_keeps_its_own_hints(tmp_path):
    """The same errors from the CLI name commands and flags, not Python calls."""
    out = subprocess.run([sys.executable, "-m", "cnnkit.cli", "evaluate", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "Hint: Pass a run folder made by `cnnkit train` or a .keras file." in out.stderr


def test_import_cnnkit_exposes_every_public_name_without_keras():
    code = ("import sys, cnnkit\n"
            "names = sorted(cnnkit.__all__)\n"
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'imported at import'\n"
            "assert {'train', 'evaluate', 'Run', 'Evaluation', 'load', 'build_model'} <= set(names), names\n"
            "print(' '.join(names))\n"
            "for name in names:\n"
            "    getattr(cnnkit, name)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_pictures_show_inline_and_save(trained_run, digits, tmp_path):
    import cnnkit
    from cnnkit.images import encode_png

    samples = cnnkit.show_samples(str(MNIST_SUBSET), count=4)
    assert samples._repr_png_().startswith(b"\x89PNG\r\n\x1a\n") and "4 train samples of mnist_subset" in repr(samples)
    assert samples.save(tmp_path / "samples.png").read_bytes() == samples.png
    curves = cnnkit.plot_history(trained_run.run_dir)
    assert curves.size[0] > curves.size[1] and "3 epochs" in repr(curves)  # two panels side by side
    assert "3 epochs" in repr(trained_run.plot_history())
    shown = cnnkit.plot_predictions(trained_run, digits, count=6)
    wrong = int((trained_run.model.predict(digits.x_test, verbose=0).argmax(1) != digits.y_test).sum())
    assert f"6 predictions ({wrong} of 200 test images wrong)" in repr(shown)
    files = []
    for i in range(2):
        files.append(tmp_path / f"digit{i}.png")
        files[-1].write_bytes(encode_png(digits.x_test[i]))
    assert "Grad-CAM of 2 images" in repr(cnnkit.plot_gradcam(trained_run.run_dir, files))
    explanation = cnnkit.explain.explain_model(trained_run.model)
    assert repr(explanation) == explanation.to_text()
    assert explanation._repr_html_().startswith('<table class="explain">')


def test_a_folder_that_changed_is_other_data(tmp_path):
    """A cell run again after photos were added or replaced trains again (asks for overwrite), not the old run."""
    from cnnkit.datasets.given import source_fingerprint

    (tmp_path / "photos" / "cat").mkdir(parents=True)
    (tmp_path / "photos" / "cat" / "1.png").write_bytes(b"one")
    first = source_fingerprint(str(tmp_path / "photos"))
    assert source_fingerprint(str(tmp_path / "photos")) == first and first.startswith(str(tmp_path / "photos"))
    (tmp_path / "photos" / "cat" / "2.png").write_bytes(b"two")
    second = source_fingerprint(str(tmp_path / "photos"))
    (tmp_path / "photos" / "cat" / "2.png").write_bytes(b"2")  # the same name, other bytes
    assert len({first, second, source_fingerprint(str(tmp_path / "photos"))}) == 3
    assert source_fingerprint("mnist") == "mnist"
