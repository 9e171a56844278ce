"""``cnnkit relabel DECISIONS.csv``: apply what a person decided about an audit's suspects, and undo it.

A decisions file is an audit's ``suspects.csv`` with its ``decision`` column filled in (or any CSV with
``path`` and ``decision`` columns, and optionally ``label``): ``relabel`` gives the file the ``label``
column's class (or, where that is empty, the ``suggested`` one), ``remove`` takes it out of the data,
``keep`` (or nothing) leaves it. Nothing is deleted:

- class folders: a relabelled file moves to its new class's folder (beside its own, so a ``train/``
  or ``test/`` file stays in its split); a removed one moves to the quarantine folder;
- a manifest: its label cell is rewritten, or its row dropped; the files stay where they are.

Every decision is checked before anything moves (a missing file, an unknown class or decision, a
name taken in the target folder refuse the whole file), the plan is printed, and only ``apply=True``
carries it out, after writing an undo file that :func:`undo` follows back, byte for byte.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnkit.errors import DataError
from cnnkit.fileio import write_bytes, write_json, write_text

DECISIONS = ("relabel", "remove", "keep", "")
KNOWN_COLUMNS = {"path", "finding", "given", "suggested", "score", "rank", "decision", "label"}
QUARANTINE = "quarantine"
UNDO_PREFIX = "undo-relabel-"


@dataclass
class Plan:
    """What applying a decisions file does: moves of files, a manifest's new text, and where the undo file goes."""

    moves: list[tuple[Path, Path]] = field(default_factory=list)
    manifest: Path | None = None
    manifest_text: str | None = None  # the manifest as it will be
    lines: list[str] = field(default_factory=list)  # one per decision, for the dry run
    undo_file: Path | None = None

    def __str__(self) -> str:
        return "\n".join(self.lines) if self.lines else "No decisions to apply (every decision is keep or empty)."


def _fail(message: str, hint: str, params: str | tuple[str, ...] = ()) -> DataError:
    return DataError(message, hint, params=params)


def read_decisions(path: Path) -> list[dict[str, str]]:
    """The rows of a decisions file; an unknown column or decision is refused, naming it and its line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise _fail(f"Cannot read the decisions file. Received: {path} ({err.strerror or err}).",
                    "Pass the suspects.csv of an audit, with its decision column filled in.") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    unknown = [c for c in columns if c not in KNOWN_COLUMNS]
    if unknown or "path" not in columns or "decision" not in columns:
        raise _fail(f"Expected a decisions file with columns path and decision (and optionally "
                    f"{', '.join(sorted(KNOWN_COLUMNS - {'path', 'decision'}))}). Received: columns "
                    f"{', '.join(columns) or 'none'} in {path}" + (f" (unknown: {', '.join(unknown)})." if unknown
                                                                   else "."),
                    "Fill in the decision column of an audit's suspects.csv; keep its header as it is.")
    rows = []
    for line, row in enumerate(reader, start=2):
        clean = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        clean["decision"] = clean.get("decision", "").lower()
        if clean["decision"] not in DECISIONS:
            raise _fail(f"Expected each decision to be relabel, remove or keep. Received: "
                        f"{clean['decision']!r} on line {line} of {path}.",
                        "Write relabel, remove or keep (or leave the cell empty to keep the file).")
        clean["line"] = str(line)
        rows.append(clean)
    return rows


def plan(decisions: str | os.PathLike[str], data: str | os.PathLike[str] | None = None) -> Plan:
    """Check every decision of ``decisions`` against the data (by default the audit's, from ``audit.json`` beside
    it) and return what applying them would do."""
    from cnnkit.datasets.folder import index_folder

    decisions = Path(decisions)
    record = _audit_record(decisions)
    if data is None and not record.get("data"):
        raise _fail(f"Expected the audited data: no audit.json beside the decisions file to name it. Received: "
                    f"{decisions}.", "Pass data (the folder or .csv manifest the audit looked at).", params="data")
    data = Path(data) if data is not None else Path(record["data"])
    manifest = data if data.suffix.lower() == ".csv" else None
    root = (manifest.parent if manifest else data).resolve()
    if not root.is_dir():
        raise _fail(f"Expected the audited folder or manifest. Received: data={os.fspath(data)!r}, which is not "
                    "there.", "Pass data (the folder or .csv the audit looked at).", params="data")
    index = index_folder(root, manifest=manifest, label_regex=record.get("label_regex"))
    if index.label_mode == "filename":
        raise _fail(f"Files labelled by their names cannot be relabelled by moving them. Received: {root} "
                    "(label mode 'filename').", "Rename those files by hand, or move the folder to one "
                    "sub-folder per class, or to a manifest, first.")
    classes = set(index.class_names)
    out = Plan(manifest=manifest)
    quarantine = decisions.parent / QUARANTINE
    changes: dict[Path, str | None] = {}  # manifest: file -> new label, or None to drop its row
    targets: set[Path] = set()
    decided: dict[Path, tuple[str, str, str]] = {}  # a file listed under two findings: one decision, or refused
    for row in read_decisions(decisions):
        if row["decision"] in ("keep", ""):
            continue
        where = f"line {row['line']} of {decisions.name}"
        source = (root / row["path"]).resolve()
        if not source.is_file():
            raise _fail(f"Expected the file a decision names. Received: {row['path']!r} on {where}, not found "
                        f"in {root}.", "Check the path (relative to the audited folder), or the data option.")
        label = row.get("label") or row.get("suggested", "")
        label = label if row["decision"] == "relabel" else ""
        if source in decided:
            first = decided[source]
            if first[:2] != (row["decision"], label):
                raise _fail(f"Expected one decision for each file. Received: {row['path']!r} with "
                            f"{' '.join(filter(None, first[:2]))} on {first[2]} and "
                            f"{' '.join(filter(None, (row['decision'], label)))} on {where}.",
                            "Keep one of the two decisions.")
            continue
        decided[source] = (row["decision"], label, where)
        if row["decision"] == "relabel" and label not in classes:
            raise _fail(f"Expected a class of the data to relabel to. Received: {label!r} on {where}; classes: "
                        f"{', '.join(sorted(classes))}.", "Write one of those classes in the label column.")
        what = f"relabel {label}" if row["decision"] == "relabel" else "remove"
        if manifest is not None:
            changes[source] = label if row["decision"] == "relabel" else None
            out.lines.append(f"{row['path']}: {what} (manifest {manifest.name})")
            continue
        rel = source.relative_to(root)
        if source.parent.name not in classes:  # a class folder's file sits right in it (train/rain/12.jpg too)
            raise _fail(f"Expected each file in its class's folder. Received: {row['path']!r} on {where}, in a "
                        f"folder named {source.parent.name!r}.", "Move it by hand, or audit a manifest instead.")
        if row["decision"] == "relabel":
            if source.parent.name == label:
                continue
            target = source.parent.parent / label / source.name
        else:
            target = quarantine / rel
        if target.exists() or target in targets:
            raise _fail(f"Expected a free name to move {row['path']!r} to. Received: {target} is taken ({where}).",
                        "Rename one of the two files first.")
        targets.add(target)
        out.moves.append((source, target))
        out.lines.append(f"{row['path']} -> {target.relative_to(root) if target.is_relative_to(root) else target}"
                         f" ({what})")
    if manifest is not None and changes:
        out.manifest_text = _rewritten(manifest, changes)
    out.undo_file = decisions.parent / f"{UNDO_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}.json"
    return out


def apply(decisions: str | os.PathLike[str], data: str | os.PathLike[str] | None = None) -> Plan:
    """Carry out :func:`plan`'s moves and rewrite, after writing the undo file that reverses them."""
    done = plan(decisions, data)
    if not done.moves and done.manifest_text is None:
        return done
    undo_file = done.undo_file or Path(decisions).parent / f"{UNDO_PREFIX}.json"
    undo_record: dict[str, Any] = {"moves": [[str(a), str(b)] for a, b in done.moves]}
    if done.manifest is not None and done.manifest_text is not None:  # its bytes as they were, BOM and line ends
        undo_record.update(manifest=str(done.manifest),
                           manifest_bytes=base64.b64encode(done.manifest.read_bytes()).decode("ascii"))
    write_json(undo_file, undo_record)
    for source, target in done.moves:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)
    if done.manifest is not None and done.manifest_text is not None:
        write_text(done.manifest, done.manifest_text)
    return done


def undo(undo_file: str | os.PathLike[str]) -> list[str]:
    """Reverse an applied decisions file from its undo file; the lines say what went back."""
    record = json.loads(Path(undo_file).read_text())
    lines = []
    for source, target in reversed(record.get("moves", [])):
        if Path(target).is_file() and not Path(source).exists():
            Path(source).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(target, source)
            lines.append(f"{target} -> {source}")
    if record.get("manifest"):
        write_bytes(record["manifest"], base64.b64decode(record["manifest_bytes"]))
        lines.append(f"{record['manifest']}: restored")
    return lines


def _audit_record(decisions: Path) -> dict[str, Any]:
    path = decisions.parent / "audit.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _rewritten(manifest: Path, changes: dict[Path, str | None]) -> str:
    """The manifest's text with the label cells of ``changes`` rewritten and its removed rows left out."""
    from cnnkit.datasets.manifest import LABEL_COLUMNS, PATH_COLUMNS, find_column

    rows = list(csv.reader(io.StringIO(manifest.read_text(encoding="utf-8-sig"))))
    header = [h.strip().lower() for h in rows[0]]
    # The index read this manifest just before (plan): both columns are there.
    col_path, col_label = find_column(header, PATH_COLUMNS) or 0, find_column(header, LABEL_COLUMNS) or 0
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(rows[0])
    for row in rows[1:]:
        path = (manifest.parent / row[col_path].strip()).resolve() if len(row) > col_path else None
        if path in changes:
            if changes[path] is None:
                continue
            row = list(row)
            row[col_label] = str(changes[path])
        writer.writerow(row)
    return buffer.getvalue()
