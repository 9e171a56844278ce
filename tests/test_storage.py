"""A full disk: one Error line naming the file, nothing half-written, and --resume works once space is freed.

The run folder lives on a real, tiny file system: a 1 MB tmpfs mounted in a private mount
namespace (``unshare -m``, which needs root, as the machines this suite runs on have), then grown
to 64 MB ("space freed") for the resume.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from helpers import MNIST_SUBSET

SCRIPT = """
set -u
mount -t tmpfs -o size=1m tmpfs "$DISK" || exit 90
"$PY" -m cnnkit.cli train "$DATA" --recipe article-001 --epochs 3 --train-limit 600 --test-limit 100 \
  --out "$DISK/run" > "$LOGS/first.out" 2> "$LOGS/first.err"; echo $? > "$LOGS/first.rc"
find "$DISK" -type f | sort > "$LOGS/files.txt"
mount -o remount,size=64m "$DISK"
"$PY" -m cnnkit.cli train --out "$DISK/run" --resume > "$LOGS/second.out" 2> "$LOGS/second.err"; \
echo $? > "$LOGS/second.rc"
find "$DISK" -type f | sort > "$LOGS/after.txt"
"""


@pytest.mark.heavy
def test_a_full_disk_is_one_error_and_resume_finishes_the_run(tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        pytest.skip("needs `unshare -m` (root) to mount a tiny file system")
    disk, logs = tmp_path / "disk", tmp_path / "logs"
    disk.mkdir()
    logs.mkdir()
    env = {"DISK": str(disk), "LOGS": str(logs), "PY": sys.executable, "DATA": str(MNIST_SUBSET),
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "CNNKIT_HOME": str(tmp_path / "home"),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(["unshare", "-m", "sh", "-c", SCRIPT], env=env, timeout=900, capture_output=True, text=True)
    assert done.returncode != 90, f"could not mount a tmpfs: {done.stderr}"
    err = (logs / "first.err").read_text()
    lines = err.strip().splitlines()
    assert (logs / "first.rc").read_text().strip() == "1", err
    assert lines[0].startswith(f"Error: No space left on the device while writing {disk}/run/"), err
    assert lines[1].startswith("Hint: Free some space there, then run the command again") and "--resume" in lines[1]
    assert len(lines) == 2 and "Traceback" not in err
    files = (logs / "files.txt").read_text().splitlines()
    assert not [f for f in files if ".cnnkit-tmp" in f], files  # no half-written file is left
    assert (logs / "second.rc").read_text().strip() == "0", (logs / "second.err").read_text()
    after = (logs / "after.txt").read_text()
    assert f"{disk}/run/model.keras" in after and f"{disk}/run/report.html" in after
    assert "Test accuracy:" in (logs / "second.out").read_text()
