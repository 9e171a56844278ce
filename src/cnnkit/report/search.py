"""The report's section on recipe auto's search: the leaderboard, the rule that chose, and what it cost."""

from __future__ import annotations

from typing import Any

from cnnkit.report import html as h
from cnnkit.report.html import Section


def search_section(config: dict[str, Any]) -> Section | None:
    """The leaderboard of ``config.json``'s ``search`` section, best validation accuracy first; ``None`` without one."""
    found = config.get("search") or {}
    if not found.get("done"):
        return None
    rows = sorted(found["leaderboard"], key=lambda r: (r["val_accuracy"] is None, -(r["val_accuracy"] or 0.0)))
    table = h.table(
        ("#", "validation accuracy", "± standard error", "epochs", "seconds", "parameters", "state", "settings"),
        [[f"{'★ ' if r['number'] == found['winner'] else ''}{r['number']}",
          f"{r['val_accuracy']:.2%}" if r["val_accuracy"] is not None else "–",
          f"{r['standard_error']:.2%}" if r["standard_error"] is not None else "–",
          r["epochs"], f"{r['seconds']:.1f}", f"{r['params']:,}", r["state"],
          ", ".join(f"{k} {v}" for k, v in r["values"].items())] for r in rows])
    note = (f"<p>Every candidate trained {found['trial_epochs']} epochs on the training split and was scored on the "
            f"{found['validation_images']:,} validation images (the test set played no part); a trial behind the "
            f"others two thirds of the way through was pruned. The search took {found['seconds']:.0f} s of the "
            "budget. Rule: "
            f"{h.esc(found['rule'])}. Chosen: {h.esc(found['reason'])} (★), then trained for the rest of the "
            "budget.</p>")
    return Section("search", "Recipe auto's search", note + table)
