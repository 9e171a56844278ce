"""An audit's result: the labelled set, its out-of-fold probabilities and what confident learning found, with the
rows of ``suspects.csv`` and the summary lines made from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.audits.confident import Findings
from cnnkit.audits.labelled import LabelledSet

SUSPECTS, SUMMARY, PROBS, PAGE = "suspects.csv", "audit.json", "oof.npz", "audit.html"
COLUMNS = ("path", "finding", "given", "suggested", "score", "rank", "decision")


@dataclass
class AuditResult:
    """An audit's outputs: the labelled set, its out-of-fold probabilities, what confident learning found."""

    out: Path
    data: str  # as given (a folder or manifest: absolute), for relabel
    label_regex: str | None
    labelled: LabelledSet
    probs: np.ndarray
    folds: np.ndarray
    findings: Findings
    recipe: str
    epochs: int
    seconds: float

    def suspects(self) -> list[dict[str, Any]]:
        """The rows of ``suspects.csv``: every finding, ranked within its kind."""
        return suspect_rows(self)

    def summary(self) -> str:
        """The lines the command prints: counts per finding and the estimated share of wrong labels per class."""
        return "\n".join(summary_lines(self))


def suspect_rows(result: AuditResult) -> list[dict[str, Any]]:
    """Every finding as a row of :data:`COLUMNS`, ranked within its kind (1 is the most suspect)."""
    labelled, found, names = result.labelled, result.findings, result.labelled.class_names
    rows: list[dict[str, Any]] = []
    for rank, i in enumerate(found.issues, 1):
        rows.append({"path": labelled.names[i], "finding": "label", "given": names[labelled.y[i]],
                     "suggested": names[found.suggested[i]], "score": round(float(found.margin[i]), 4),
                     "rank": rank, "decision": ""})
    for rank, conflict in enumerate(labelled.conflicts, 1):
        favoured = names[int(result.probs[conflict.rows].mean(axis=0).argmax())] if conflict.rows else ""
        for name, label in zip(conflict.names, conflict.labels):
            rows.append({"path": name, "finding": f"conflict ({conflict.kind})", "given": label,
                         "suggested": favoured, "score": 1.0, "rank": rank, "decision": ""})
    for rank, i in enumerate(found.strays, 1):
        rows.append({"path": labelled.names[i], "finding": "stray", "given": names[labelled.y[i]],
                     "suggested": names[int(result.probs[i].argmax())],
                     "score": round(float(result.probs[i].max()), 4), "rank": rank, "decision": ""})
    return rows


def summary_lines(result: AuditResult) -> list[str]:
    """The console summary: what was trained, how many of each finding, the wrong-label share per class."""
    labelled, found = result.labelled, result.findings
    n, k = len(labelled), int(result.folds.max()) + 1
    share = found.noise_share()
    lines = [f"Audit: {n:,} images scored by {k} models of recipe {result.recipe} ({result.epochs} epochs each), "
             f"none by a model that saw it ({result.seconds:.0f} s).",
             f"Likely label errors: {len(found.issues):,} ({len(found.issues) / max(n, 1):.1%}); strays no class "
             f"claims: {len(found.strays):,}; copies with different labels: {len(labelled.conflicts):,}.",
             "Estimated wrong labels per class: " + ", ".join(
                 f"{name} {s:.1%}" for name, s in zip(labelled.class_names, share)) + "."]
    pairs = found.confused_pairs()[:5]
    if pairs:
        lines.append("Most confused (given -> looks like): " + ", ".join(
            f"{labelled.class_names[i]} -> {labelled.class_names[j]} ({c})" for i, j, c in pairs) + ".")
    lines.append(f"Suspects: {result.out / SUSPECTS}; page: {result.out / PAGE}.")
    return lines
