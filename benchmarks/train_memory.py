"""Peak memory of `cnnkit train FOLDER --budget B`: a baseline revision and the working tree, in one run.

Each version trains in its own process with an empty CNNKIT_HOME (so the folder is decoded, as on a
user's first run) and its own run folder. The baseline is checked out with `git worktree add` into a
temporary folder and run with this interpreter and PYTHONPATH=<worktree>/src; the working tree with
PYTHONPATH=<repo>/src. Before training, each version prints where `import cnnkit` came from, and a
version that would import other code is refused.

Measured per run:
- peak resident memory of the whole process tree (the training process and its decoding workers):
  RSS summed over the tree, sampled every --interval seconds (psutil when installed, else /proc);
- the training process's own high-water mark (VmHWM, and ru_maxrss from wait4: the largest single
  process of the tree);
- the phase the peak fell in: the last line the run had printed by then, and how many decoding
  workers were alive;
- training seconds, epochs, recipe, side and test accuracy from the run's folder.

    .venv/bin/python benchmarks/train_memory.py [FOLDER] [--budget 3] [--seeds 0] [--before 4fe75f8]
    .venv/bin/python benchmarks/train_memory.py --seeds 0 1 --env CNNKIT_OFFLINE=1  # no weights fetched

The order of the two versions alternates with the seed, so neither always runs on a cold or warm disk.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import ROOT, checkout, cnnkit_command, given_path, read_run, save  # benchmarks/common.py

try:
    import psutil
except ImportError:  # /proc needs nothing installed
    psutil = None

def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, over every process (this kernel may lack /proc/PID/task/*/children)."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command name may hold spaces and parentheses
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _tree(pid: int) -> list[int]:
    if psutil is not None:
        try:
            root = psutil.Process(pid)
            return [pid, *(p.pid for p in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []
    tree, found, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += tree.get(p, [])
    return found


def _is_worker(pid: int) -> bool:
    """A decoding worker of the pixel cache: its own (``_serve``) or, in older versions, a multiprocessing one
    (not multiprocessing's resource tracker)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"spawn_main" in command or b"pixelcache import _serve" in command


def _status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile (kB) of one process; empty once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0])
    return out


@dataclass
class Sampler:
    """RSS of a process tree every ``interval`` seconds, and the printed lines with their times."""

    pid: int
    interval: float
    start: float = field(default_factory=time.perf_counter)
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)  # (t, tree kB, main kB, processes)
    workers: dict[float, int] = field(default_factory=dict)  # t -> decoding workers alive (samples with any)
    main: dict[str, int] = field(default_factory=dict)  # the main process's last status, VmHWM included
    main_at_peak: dict[str, int] = field(default_factory=dict)
    peak_kb: int = 0
    lines: list[tuple[float, str]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.done.is_set():
            t = time.perf_counter() - self.start
            statuses = {p: _status(p) for p in _tree(self.pid)}
            main = statuses.get(self.pid) or {}
            if main:
                self.main = main
            total = sum(s.get("VmRSS", 0) for s in statuses.values())
            if total:
                self.samples.append((t, total, main.get("VmRSS", 0), sum(1 for s in statuses.values() if s)))
                workers = sum(_is_worker(p) for p, s in statuses.items() if s and p != self.pid)
                if workers:
                    self.workers[t] = workers
                if total > self.peak_kb:
                    self.peak_kb, self.main_at_peak = total, dict(main)
            self.done.wait(self.interval)

    def read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append((time.perf_counter() - self.start, line.rstrip("\n")))
            print("   |", line.rstrip("\n")[:160], flush=True)

    def phase_at(self, t: float) -> str:
        """The last line printed before ``t`` (shortened), or the start."""
        before = [line for when, line in self.lines if when <= t and line.strip()]
        return before[-1][:100] if before else "(before the first printed line)"


def train_once(label: str, src: Path, folder: Path, budget: float, seed: int, interval: float,
               extra_env: dict[str, str]) -> dict[str, Any]:
    """One `cnnkit train` in a fresh process with a fresh CNNKIT_HOME; its memory, time and accuracy."""
    with tempfile.TemporaryDirectory(prefix=f"cnnkit-mem-{label}-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(src), "CNNKIT_HOME": str(Path(tmp) / "home"),
               "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **extra_env}
        out = Path(tmp) / "run"
        cmd = [*cnnkit_command(src, env), "train", str(folder), "--budget", f"{budget:g}", "--seed", str(seed),
               "--out", str(out)]
        print(f"\n== {label} (seed {seed}): cnnkit from {src / 'cnnkit'}", flush=True)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sampler = Sampler(proc.pid, interval)
        threads = [threading.Thread(target=sampler.run, daemon=True),
                   threading.Thread(target=sampler.read, args=(proc.stdout,), daemon=True)]
        for thread in threads:
            thread.start()
        _, status, usage = os.wait4(proc.pid, 0)  # wait4, not wait: it also gives the child's ru_maxrss
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - sampler.start
        sampler.done.set()
        for thread in threads:
            thread.join()
        if proc.returncode != 0:
            tail = "\n".join(line for _, line in sampler.lines[-30:])
            raise SystemExit(f"{label} failed ({proc.returncode}):\n{tail}")
        metrics, config = read_run(out)
    peak_t = next(t for t, total, _, _ in sampler.samples if total == sampler.peak_kb)
    workers_at_peak = sampler.workers.get(peak_t, 0)
    # A coarse timeline for the report: the tree's RSS at each printed line.
    timeline = []
    for when, line in sampler.lines:
        upto = [s for s in sampler.samples if s[0] <= when]
        if upto and line.strip():
            timeline.append({"t": round(when, 1), "tree_mb": round(max(s[1] for s in upto) / 1024),
                             "line": line[:100]})
    train = config.get("train", {})
    return {
        "label": label, "seed": seed, "cnnkit": str(src / "cnnkit"), "wall_seconds": round(wall, 1),
        "peak_tree_rss_mb": round(sampler.peak_kb / 1024, 1),
        "peak_at_seconds": round(peak_t, 1),
        "peak_phase": sampler.phase_at(peak_t),
        "decode_workers_at_peak": workers_at_peak,
        "main_at_peak_mb": {k: round(v / 1024, 1) for k, v in sampler.main_at_peak.items()},
        "main_vmhwm_mb": round(sampler.main.get("VmHWM", 0) / 1024, 1),
        "ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1),
        "train_seconds": metrics.get("train_seconds"), "epochs": metrics.get("epochs"),
        "test_accuracy": metrics.get("test_accuracy"),
        "image_size": train.get("image_size"), "recipe": train.get("recipe") or train.get("preset"),
        "samples": len(sampler.samples), "sampler": "psutil" if psutil is not None else "/proc",
        "rss_at_lines": timeline,
        "trace_mb": _per_second(sampler.samples),  # [second, largest tree RSS in it, processes]
    }


def _per_second(samples: list[tuple[float, int, int, int]]) -> list[list[int]]:
    """The samples thinned to one per second: the largest tree RSS in each (MB) and the processes then."""
    out: dict[int, list[int]] = {}
    for t, total, _, n in samples:
        row = out.setdefault(int(t), [int(t), 0, 0])
        if total / 1024 > row[1]:
            row[1], row[2] = round(total / 1024), n
    return list(out.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=given_path, default=Path("/work/shared/datasets/weather"))
    parser.add_argument("--budget", type=float, default=3.0, help="minutes (cnnkit train --budget)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--before", default="4fe75f8", help="the baseline git revision")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between RSS samples")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for both versions (repeatable)")
    parser.add_argument("--name", default="train_memory", help="benchmarks/out/<name>.json")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.before], capture_output=True, text=True,
                            check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                                capture_output=True, text=True).stdout.strip())
    rows = []
    with checkout(commit) as before:
        versions = [("before", before), ("after", ROOT / "src")]
        for i, seed in enumerate(args.seeds):
            for label, src in (versions if i % 2 == 0 else versions[::-1]):
                rows.append(train_once(label, src, args.folder, args.budget, seed, args.interval, extra))
    print(f"\n{'version':<8} {'seed':>4} {'peak tree RSS':>14} {'main HWM':>9} {'train s':>8} {'epochs':>6} "
          f"{'recipe':>8} {'side':>5} {'test acc':>9}  peak during")
    for r in rows:
        print(f"{r['label']:<8} {r['seed']:>4} {r['peak_tree_rss_mb']:>11,.0f} MB {r['main_vmhwm_mb']:>6,.0f} MB "
              f"{r['train_seconds']:>8.1f} {r['epochs']:>6} {r['recipe']!s:>8} {r['image_size']!s:>5} "
              f"{r['test_accuracy']:>9.2%}  {r['peak_phase'][:60]}")
    if len({(r["recipe"], r["image_size"]) for r in rows if r["seed"] == args.seeds[0]}) > 1:
        print("Warning: the versions trained different recipes or sides (recipe auto chose them from the data and "
              "this machine's clock), so their memory is not like for like. Fetched pretrained weights change the "
              "recipe: --env CNNKIT_OFFLINE=1 keeps both versions from downloading any.")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    save(args.name, command=" ".join(sys.argv), folder=str(args.folder), budget_minutes=args.budget, before=commit,
         after=f"working tree at {head}" + (" with uncommitted changes under src/" if dirty else ""),
         extra_env=extra, runs=rows)


if __name__ == "__main__":
    main()
