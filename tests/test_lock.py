"""One writer per run folder: a second training run on the same folder is refused, naming the first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from cnnkit.training.lock import lock_path, run_folder_lock

from helpers import MNIST_SUBSET, assert_clean_error, run_cli


def test_a_held_folder_is_refused_with_the_holders_name(tmp_path, capsys):
    run = tmp_path / "run"
    with run_folder_lock(run):
        code, _, err = run_cli(capsys, "train", MNIST_SUBSET, "--recipe", "article-001", "--epochs", "1",
                               "--train-limit", "300", "--test-limit", "100", "--out", run, "--overwrite")
    assert_clean_error(code, err, f"The run folder {run} is in use by another training run: process {os.getpid()} on ",
                       "Hint: Wait for that run to finish (or stop it), or choose another --out.")
    assert not run.exists()  # --overwrite touched nothing
    with run_folder_lock(run):  # released when its holder is done
        pass


@pytest.mark.heavy
def test_a_second_process_cannot_overwrite_a_run_in_progress(tmp_path, capsys):
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "cnnkit.cli", "train", str(MNIST_SUBSET), "--recipe",
                              "article-004", "--epochs", "3", "--out", str(run)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (run / "history.json").is_file():  # the first run has finished an epoch: it is well under way
        assert first.poll() is None, first.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    owner = json.loads(lock_path(run).read_text())
    code, _, err = run_cli(capsys, "train", MNIST_SUBSET, "--recipe", "article-001", "--epochs", "1",
                           "--out", run, "--overwrite")
    assert_clean_error(code, err, f"is in use by another training run: process {first.pid} on {owner['host']}")
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert (run / "model.keras").is_file() and len(json.loads((run / "history.json").read_text())["loss"]) == 3
