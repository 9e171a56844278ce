"""What an audit writes: ``suspects.csv`` (one row per finding, a ``decision`` column to fill in), ``audit.json``,
``oof.npz`` (the out-of-fold probabilities) and ``audit.html`` (thumbnails of every finding, one file)."""

from __future__ import annotations

import csv
import io

import numpy as np

from cnnkit.audits.result import COLUMNS, PAGE, PROBS, SUMMARY, SUSPECTS, AuditResult, summary_lines
from cnnkit.fileio import atomic_path, write_json, write_text
from cnnkit.report import html

SHOWN = 60  # thumbnails per finding on the page (the CSV has them all)


def write_outputs(result: AuditResult) -> None:
    """Write every output into ``result.out`` (each file atomically)."""
    result.out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.suspects())
    write_text(result.out / SUSPECTS, buffer.getvalue())
    labelled, found = result.labelled, result.findings
    with atomic_path(result.out / PROBS) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, probs=result.probs, labels=labelled.y, folds=result.folds,
                            names=np.array(labelled.names), class_names=np.array(labelled.class_names))
    write_json(result.out / SUMMARY, {
        "data": result.data, "label_regex": result.label_regex, "source": labelled.source,
        "images": len(labelled), "classes": labelled.class_names,
        "folds": int(result.folds.max()) + 1, "recipe": result.recipe, "epochs": result.epochs,
        "seconds": round(result.seconds, 1), "label_issues": len(found.issues), "strays": len(found.strays),
        "conflicts": len(labelled.conflicts),
        "noise_share": {name: round(float(s), 4) for name, s in zip(labelled.class_names, found.noise_share())},
        "confused_pairs": [{"given": labelled.class_names[i], "looks_like": labelled.class_names[j], "count": c}
                           for i, j, c in found.confused_pairs()],
        "out_of_fold_accuracy": round(float((result.probs.argmax(axis=1) == labelled.y).mean()), 4),
    })
    write_text(result.out / PAGE, page(result))


def page(result: AuditResult) -> str:
    """``audit.html``: the summary, then a gallery per finding, most suspect first."""
    labelled, found, names = result.labelled, result.findings, result.labelled.class_names

    def thumb(i: int, caption: str) -> str:
        return html.thumbnail(labelled.x[i], labelled.names[i], caption)

    issues = [thumb(i, f"{labelled.names[i]}: {names[labelled.y[i]]} -> {names[found.suggested[i]]} "
                       f"({result.probs[i, found.suggested[i]]:.0%})") for i in found.issues[:SHOWN]]
    conflicts = [html.thumbnails([thumb(r, f"{labelled.names[r]}: {names[labelled.y[r]]}") for r in c.rows])
                 + html.pre("\n".join(f"{name}: {label}" for name, label in zip(c.names, c.labels)))
                 for c in labelled.conflicts[:SHOWN]]
    strays = [thumb(i, f"{labelled.names[i]}: {names[labelled.y[i]]} (at most {result.probs[i].max():.0%})")
              for i in found.strays[:SHOWN]]
    share = found.noise_share()
    per_class = html.table(["class", "images", "estimated wrong labels", "likely errors found"], [
        (name, int((labelled.y == c).sum()), f"{share[c]:.1%}", int((labelled.y[found.issues] == c).sum()))
        for c, name in enumerate(names)])
    pairs = html.table(["given", "looks like", "images"],
                       [(names[i], names[j], c) for i, j, c in found.confused_pairs()[:20]])

    def more(total: int) -> str:
        return f'<p class="note">{SHOWN} of {total:,} shown; {SUSPECTS} lists them all.</p>' if total > SHOWN else ""

    sections = [
        html.Section("summary", "Summary", html.cards([
            ("images", f"{len(labelled):,}"), ("likely label errors", f"{len(found.issues):,}"),
            ("strays", f"{len(found.strays):,}"), ("conflicting copies", f"{len(labelled.conflicts):,}"),
            ("out-of-fold accuracy", f"{(result.probs.argmax(axis=1) == labelled.y).mean():.2%}")])
            + html.pre("\n".join(summary_lines(result))) + per_class),
        html.Section("labels", f"Likely label errors ({len(found.issues):,})",
                     '<p class="note">Given label -> the class the out-of-fold model believes, with its '
                     "probability; most suspect first (normalised margin).</p>"
                     + html.thumbnails(issues) + more(len(found.issues))),
        html.Section("conflicts", f"Copies with different labels ({len(labelled.conflicts):,})",
                     "".join(conflicts) or '<p class="note">None found.</p>'),
        html.Section("strays", f"Strays ({len(found.strays):,})",
                     '<p class="note">Images no class claims with its usual confidence.</p>'
                     + html.thumbnails(strays) + more(len(found.strays))),
        html.Section("confused", "Classes confused", pairs),
    ]
    return html.page(f"cnnkit audit: {labelled.source}", f"{result.recipe}, {int(result.folds.max()) + 1} folds",
                     sections)
