"""Data-parallel training on one CPU: the same accuracy as one device, and how a lost process ends a run.

Run from the repository root (JAX backend, two host devices made of the CPU):

    .venv/bin/python benchmarks/distributed.py                  # seeds 0 1 2, then the failure check
    .venv/bin/python benchmarks/distributed.py --seeds 0 --no-failure

Part 1, accuracy: the settings of tests/test_distributed.py (the `fast` recipe, 2 epochs, global batch
32, 1,500 training and 300 test digits of tests/fixtures/mnist_subset.npz), trained three ways per seed:
one device; two devices in one process; two processes of one device each (on loopback). Every layout
trains on the same global batches, so only the order of floating-point sums differs.

Part 2, failure: a two-process run of the full recipe; once both processes are training, process 1 is
killed (SIGKILL). The time until process 0 exits, its exit status and its last line are recorded.

Results go to benchmarks/out/distributed.json; a Markdown table is printed for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, save  # benchmarks/common.py

SUBSET = ROOT / "tests" / "fixtures" / "mnist_subset.npz"
ARGS = [str(SUBSET), "--recipe", "fast", "--epochs", "2", "--batch-size", "32", "--train-limit", "1500",
        "--test-limit", "300", "--distribute", "data-parallel"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], home: Path, devices: int = 1) -> subprocess.Popen:
    env = {**os.environ, "KERAS_BACKEND": "jax", "CNNKIT_HOME": str(home),
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} --xla_cpu_multi_thread_eigen=false"}
    return subprocess.Popen([sys.executable, "-m", "cnnkit.cli", "train", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _accuracy(output: str) -> float:
    match = re.search(r"Test accuracy: ([\d.]+)%", output)
    if not match:
        raise SystemExit(f"No test accuracy in:\n{output[-3000:]}")
    return float(match.group(1)) / 100


def accuracy_row(seed: int, root: Path) -> dict:
    """Test accuracy of one seed in the three layouts (the two processes print the same figure)."""
    home, seeded = root / "home", [*ARGS, "--seed", str(seed)]
    group = ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2"]
    one = _start([*seeded, "--out", str(root / f"one{seed}")], home)
    one_out = one.communicate()[0]
    devices = _start([*seeded, "--out", str(root / f"devices{seed}")], home, devices=2)
    devices_out = devices.communicate()[0]
    processes = [_start([*seeded, *group, "--process-id", str(i), "--out", str(root / f"processes{seed}-{i}")], home)
                 for i in (0, 1)]
    process_out = [p.communicate()[0] for p in processes]
    row = {"seed": seed, "one_device": _accuracy(one_out), "two_devices": _accuracy(devices_out),
           "two_processes": _accuracy(process_out[0]), "process_1": _accuracy(process_out[1])}
    print(json.dumps(row), flush=True)
    return row


def failure_row(root: Path) -> dict:
    """Kill process 1 of a two-process run mid-training; how long process 0 takes to stop, and how."""
    group = ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2"]
    args = [str(SUBSET), "--recipe", "fast", "--epochs", "30", "--batch-size", "32", "--distribute", "data-parallel"]
    processes = [_start([*args, *group, "--process-id", str(i), "--out", str(root / f"failure-{i}")], root / "home")
                 for i in (0, 1)]
    deadline = time.monotonic() + 300
    while not (root / "failure-0" / "history.json").is_file():  # process 0 finished an epoch: both are training
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise SystemExit("The two-process run did not start training.")
        time.sleep(0.1)
    processes[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    try:
        out = processes[0].communicate(timeout=600)[0]
    except subprocess.TimeoutExpired:
        processes[0].kill()
        out = processes[0].communicate()[0]
    seconds = time.monotonic() - killed
    lines = [line for line in out.strip().splitlines() if line.strip()]
    # The first line that says why: cnnkit's "Error:", a Python exception, or an absl E/F log line.
    why = next((line for line in lines if re.match(r"(Error: |\w+Error: |[EF]\d{4} )", line.strip())), "")
    row = {"seconds_to_stop": round(seconds, 1), "exit_code": processes[0].returncode, "first_error": why,
           "last_lines": lines[-3:]}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="none: part 2 alone")
    parser.add_argument("--no-failure", action="store_true", help="skip part 2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnnkit-distributed-") as tmp:
        rows = [accuracy_row(seed, Path(tmp)) for seed in args.seeds]
        failure = None if args.no_failure else failure_row(Path(tmp))
    save("distributed", rows=rows, failure=failure)
    print("| seed | one device | 2 devices, 1 process | 2 processes (process 0 / process 1) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['one_device']:.2%} | {r['two_devices']:.2%} | "
              f"{r['two_processes']:.2%} / {r['process_1']:.2%} |")
    if failure:
        print(f"\nProcess 1 killed: process 0 stopped after {failure['seconds_to_stop']} s with exit status "
              f"{failure['exit_code']}; why: {failure['first_error'] or '(no error line)'}")


if __name__ == "__main__":
    main()
