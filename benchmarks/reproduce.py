"""Reproduce the articles' MNIST recipes with `cnnkit reproduce` and tabulate them beside the articles.

Run from the repository root (MNIST is fetched and verified on first use):

    .venv/bin/python benchmarks/reproduce.py                      # 000, 001, 004, and 002 for 30 min
    .venv/bin/python benchmarks/reproduce.py article-001          # just one

Each recipe runs as its own `cnnkit reproduce` process (fresh interpreter, nothing shared); the
results (accuracy, wall time, machine, date) go to benchmarks/out/reproduce.json and a Markdown
table is printed for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import sys

from common import OUT, ROOT, save, train  # benchmarks/common.py (sys.path[0] is this script's folder)

# article-002's 50 epochs take hours on 2 cores: give it a 30-minute budget instead.
EXTRA = {"article-002": ["--max-minutes", "30"]}
DEFAULT = ["article-000", "article-001", "article-004", "article-002"]


def run(preset: str) -> dict:
    trained = train([preset, *EXTRA.get(preset, [])], OUT / f"reproduce-{preset}", command="reproduce", echo=2000)
    metrics = trained.metrics
    sys.path.insert(0, str(ROOT / "src"))
    from cnnkit.presets import get_preset

    reported = get_preset(preset).reported
    return {
        "preset": preset, "epochs": metrics["epochs"], "test_accuracy": metrics["test_accuracy"],
        "test_loss": metrics["test_loss"], "train_seconds": metrics["train_seconds"],
        "wall_seconds": trained.wall_seconds,
        "reported_metric": reported.metric if reported else None,
        "reported_value": reported.value if reported else None,
        "reported_note": reported.note if reported else "",
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| recipe | article reported | cnnkit test accuracy | epochs | training time | wall time (whole command) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['reported_value']:.2%} {r['reported_metric']} ({r['reported_note']}) | "
                     f"{r['test_accuracy']:.2%} (loss {r['test_loss']:.4f}) | {r['epochs']} | "
                     f"{r['train_seconds']:.0f} s | {r['wall_seconds']:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    presets = sys.argv[1:] or DEFAULT
    rows = [run(p) for p in presets]
    save("reproduce", rows=rows)
    print(table(rows))


if __name__ == "__main__":
    main()
