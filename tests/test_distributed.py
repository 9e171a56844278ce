"""Data-parallel training (cnnkit.training.distributed): the options, the data layout, and real runs.

The real runs train the `fast` recipe on the committed MNIST subset with the JAX backend, in
subprocesses so that XLA_FLAGS and the process group take effect before JAX starts: one device,
2 simulated CPU devices in one process, and 2 processes of 1 device each joined over loopback.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.errors import ConfigError
from cnnkit.training import distributed
from cnnkit.training.config import TrainConfig
from cnnkit.training.inputs import GlobalBatches
from cnnkit.training.launch import parse_coordinator, relaunch

from helpers import MNIST_SUBSET, RUN_FILES

DP = {"distribute": "data-parallel"}
GROUP = {**DP, "coordinator": "127.0.0.1:1234", "num_processes": 2}


@pytest.mark.parametrize("options, match", [
    ({"distribute": "model-parallel"}, r"Expected one of \('data-parallel',\)\. Received: distribute='model-parallel'"),
    ({"num_processes": 2}, r"Expected distribute='data-parallel' with .*Received: distribute=None"),
    ({**DP, "num_processes": 0}, r"Expected num_processes ≥ 1\. Received: num_processes=0"),
    ({**DP, "num_processes": 2, "process_id": 0}, r"Expected a coordinator \(HOST:PORT\) .*Received: coordinator=None"),
    ({**GROUP, "coordinator": "10.0.0.1"}, r"Expected coordinator as HOST:PORT .*Received: coordinator='10.0.0.1'"),
    ({**GROUP, "coordinator": "10.0.0.1:99999"}, r"port in 1-65535\. Received: coordinator='10.0.0.1:99999'"),
    ({**GROUP, "coordinator": ":1234"}, r"Received: coordinator=':1234'"),
    ({**DP, "coordinator": "127.0.0.1:1234", "process_id": 0}, r"Expected num_processes with a coordinator"),
    (GROUP, r"Expected process_id in \[0, 2\) with num_processes=2\. Received: process_id=None"),
    ({**GROUP, "process_id": 2}, r"Expected process_id in \[0, 2\)\. Received: process_id=2"),
    ({**GROUP, "process_id": -1}, r"Received: process_id=-1"),
    ({**GROUP, "process_id": 1, "max_minutes": 5}, r"Expected no max_minutes in a multi-process run"),
])
def test_option_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(data=str(MNIST_SUBSET), **options).resolve()


def test_valid_options_resolve():
    config = TrainConfig(data=str(MNIST_SUBSET), **GROUP, process_id=1).resolve()
    assert (config.distribute, config.coordinator, config.num_processes, config.process_id) == (
        "data-parallel", "127.0.0.1:1234", 2, 1)
    assert parse_coordinator("[::1]:8476") == ("[::1]", 8476)


def test_cli_reports_option_errors(capsys, tmp_path):
    code = main(["train", str(MNIST_SUBSET), "--distribute", "data-parallel", "--coordinator", "127.0.0.1:1234",
                 "--num-processes", "2", "--process-id", "2", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert "Error: Expected process_id in [0, 2). Received: process_id=2." in err
    assert "Hint: Process ids run from 0 to --num-processes − 1 (1)" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="checks the error on other backends")
def test_other_backends_are_refused():
    with pytest.raises(ConfigError, match=r"Expected the JAX backend .*Received: backend='tensorflow'") as info:
        distributed.setup(TrainConfig(data=str(MNIST_SUBSET), **DP).resolve())
    assert "KERAS_BACKEND=jax" in info.value.hint
    assert keras.distribution.distribution() is None


def _batches(n, batch, *, process, processes, devices, seed=None, epoch=0):
    return GlobalBatches(np.arange(n)[:, None], np.arange(n), batch, devices=devices, process=process,
                                     processes=processes, seed=seed, epoch=epoch)


@pytest.mark.parametrize("seed", [None, 3])
def test_processes_share_each_global_batch(seed):
    # 45 images, global batch 8 on 4 devices in 2 processes: 5 full batches, then 5 left -> 4.
    one = _batches(45, 8, process=0, processes=1, devices=4, seed=seed, epoch=1)
    two = [_batches(45, 8, process=p, processes=2, devices=4, seed=seed, epoch=1) for p in (0, 1)]
    assert len(one) == len(two[0]) == len(two[1]) == 6
    seen = []
    for i in range(len(one)):
        x, y = one[i]
        parts = [two[p][i] for p in (0, 1)]
        assert len(parts[0][1]) == len(parts[1][1]) == len(y) // 2  # equal shares
        assert sorted(np.concatenate([parts[0][1], parts[1][1]])) == sorted(y)  # same global batch
        assert (x[:, 0] == y).all()
        seen += list(y)
    assert len(seen) == len(set(seen)) == 44  # every image at most once; one left out (45 % 4)
    if seed is None:
        assert seen == list(range(44))  # validation: in order


def test_shuffle_depends_on_seed_and_epoch_only():
    def order(**kw):
        batches = _batches(50, 10, process=0, processes=1, devices=1, **kw)
        return np.concatenate([batches[i][1] for i in range(len(batches))])

    assert (order(seed=1, epoch=2) == order(seed=1, epoch=2)).all()  # a resumed run sees the same batches
    assert not (order(seed=1, epoch=2) == order(seed=1, epoch=3)).all()
    assert not (order(seed=1, epoch=2) == order(seed=2, epoch=2)).all()


def test_resume_takes_this_launchs_process_options():
    saved = TrainConfig(epochs=3, **GROUP, process_id=0)
    launch = TrainConfig(coordinator="127.0.0.1:999", process_id=1)
    merged = relaunch(saved, launch)
    assert (merged.epochs, merged.distribute, merged.num_processes) == (3, "data-parallel", 2)
    assert (merged.coordinator, merged.process_id) == ("127.0.0.1:999", 1)


def test_global_batch_must_split_evenly_over_devices():
    distributed.check_devices(128, devices=4, local_devices=2, processes=2)
    with pytest.raises(ConfigError, match=r"Expected batch_size divisible by the 4 devices \(it is the global "
                       r"batch, split evenly across them\)\. Received: batch_size=127\.") as info:
        distributed.check_devices(127, devices=4, local_devices=2, processes=2)
    assert info.value.hint == "Use a multiple of 4, e.g. batch_size 124." and info.value.params == ("batch_size",)
    with pytest.raises(ConfigError, match=r"Expected the same number of devices in every process\. "
                       r"Received: 3 devices in 2 processes, 2 in this one\."):
        distributed.check_devices(128, devices=3, local_devices=2, processes=2)


def test_outside_a_process_group_every_process_writes():
    assert distributed.is_chief()


# --- Real runs ------------------------------------------------------------------------------------

# The fast recipe, 2 epochs of global batches of 32 (43 an epoch) on 1,500 of the subset's training
# digits (1,348 after the validation split), tested on 300. Every layout trains on the same global
# batches, so only the order of floating-point sums differs. benchmarks/distributed.py measures the
# three layouts on seeds 0, 1, 2 (benchmarks/RESULTS.md, 2026-11-30): at most 1.7 points (5 digits)
# apart, so 2 points (6 digits) of tolerance.
# The first epoch's mean training loss differed by at most 3.9e-4 (relative; 1e-7 with seed 0), while
# the single-device run without --distribute, whose batches come in another order, differs from
# one device's by 1.8e-3 to 5.8e-2 (5.8e-2 with seed 0): 1e-3 tells "the same batches" from "other
# batches" (a data layout bug), which accuracy alone cannot.
ACCURACY_TOLERANCE = 0.02
LOSS_TOLERANCE = 1e-3
ARGS = [str(MNIST_SUBSET), "--recipe", "fast", "--epochs", "2", "--batch-size", "32", "--train-limit", "1500",
        "--test-limit", "300", "--seed", "0", "--distribute", "data-parallel"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], home: Path, devices: int = 1) -> subprocess.Popen:
    env = {**os.environ, "KERAS_BACKEND": "jax", "CNNKIT_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2",
           # One thread per process: four processes share the CPU cores (and threads would fight over them).
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} --xla_cpu_multi_thread_eigen=false"}
    return subprocess.Popen([sys.executable, "-m", "cnnkit.cli", "train", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    try:
        out, _ = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return process.returncode, out


def _accuracy(output: str) -> float:
    match = re.search(r"Test accuracy: ([\d.]+)%", output)
    assert match, output[-3000:]
    return float(match.group(1)) / 100


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """All runs at once (two processes must run together anyway): {name: (exit code, output)}."""
    root = tmp_path_factory.mktemp("distributed")
    home = root / "home"
    group = ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2"]
    started = {
        "one": _start([*ARGS, "--out", str(root / "one")], home),
        "devices": _start([*ARGS, "--out", str(root / "devices")], home, devices=2),
        "process0": _start([*ARGS, *group, "--process-id", "0", "--out", str(root / "processes")], home),
        # Its own --out, as on another host: it must stay unwritten.
        "process1": _start([*ARGS, *group, "--process-id", "1", "--out", str(root / "process1")], home),
    }
    results = {name: _finish(process) for name, process in started.items()}
    return root, results


@pytest.mark.heavy
@pytest.mark.parametrize("layout", ["devices", "processes"])
def test_same_result_as_one_device(runs, layout):
    root, results = runs
    for name in ("one", "devices", "process0", "process1"):
        assert results[name][0] == 0, results[name][1][-3000:]
    accuracy = {name: _accuracy(results[name][1]) for name in ("one", "devices", "process0")}
    first_loss = {name: json.loads((root / name / "history.json").read_text())["loss"][0]
                  for name in ("one", layout)}
    print(f"test accuracy {accuracy}, first-epoch loss {first_loss}")
    assert abs(accuracy["process0" if layout == "processes" else layout] - accuracy["one"]) <= ACCURACY_TOLERANCE
    assert first_loss[layout] == pytest.approx(first_loss["one"], rel=LOSS_TOLERANCE)


@pytest.mark.heavy
def test_processes_get_the_same_metrics_and_only_process_0_writes(runs):
    root, results = runs
    assert "Data-parallel: 2 device(s) in 2 process(es); global batch 32 = 16 per device." in results["process0"][1]
    assert _accuracy(results["process0"][1]) == _accuracy(results["process1"][1])  # evaluated by each
    assert sorted(p.name for p in (root / "processes").iterdir()) == RUN_FILES
    assert not (root / "process1").exists()
    metrics = json.loads((root / "processes" / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(_accuracy(results["process1"][1]), abs=1e-4)
    saved = json.loads((root / "processes" / "config.json").read_text())["train"]
    assert (saved["distribute"], saved["num_processes"], saved["process_id"]) == ("data-parallel", 2, 0)
