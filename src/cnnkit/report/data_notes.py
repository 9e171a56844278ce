"""The report's Data section shows what loading a folder found, rather than listing it: near-duplicate groups and
byte-identical copies as rows of thumbnails, files skipped and images left out as tables, each block collapsed
to a heading with its count, and the loader's text report behind one more."""

from __future__ import annotations

from pathlib import Path

from cnnkit.datasets.notes import FolderNotes
from cnnkit.report import html as h

THUMB_SIDE = 96  # pixels: decoded from the file itself, letterboxed, so the whole photo shows
SHOWN = 40  # groups (or copies) with thumbnails; the text report lists every one


def _thumb(root: Path, name: str, caption: str) -> str:
    from cnnkit.errors import DataError
    from cnnkit.images import decode_image

    try:
        pixels = decode_image(root / name, size=(THUMB_SIDE, THUMB_SIDE), color_mode="rgb", resize="pad")
    except (DataError, OSError):  # gone or broken since loading: its name still says which one
        return f"<figure><figcaption>{h.esc(caption)} (cannot be shown)</figcaption></figure>"
    return h.thumbnail(pixels, name, caption)


def _more(total: int) -> str:
    return f'<p class="note">{SHOWN} of {total:,} shown; the text report below lists them all.</p>' \
        if total > SHOWN else ""


def notes_html(notes: FolderNotes | None, report_text: str) -> str:
    """The collapsed blocks of the Data section (empty ones left out), then the text report, collapsed too."""
    blocks = []
    if notes is not None:
        if notes.groups:
            clashing = sum(len({label for _, label in g}) > 1 for g in notes.groups)
            rows = [h.thumbnails([_thumb(notes.root, name, f"{name} ({label})") for name, label in group])
                    for group in notes.groups[:SHOWN]]
            title = (f"Near-duplicate groups ({len(notes.groups):,}; {notes.group_action}"
                     + (f"; {clashing} with different labels" if clashing else "") + ")")
            blocks.append(h.collapsed(title, "".join(rows) + _more(len(notes.groups))))
        if notes.copies:
            clashing = sum(own != kept for _, _, own, kept in notes.copies)
            figures = [_thumb(notes.root, kept, f"{dropped} ({own}) = {kept} ({kept_label}), kept")
                       for dropped, kept, own, kept_label in notes.copies[:SHOWN]]
            title = (f"Byte-identical copies ({len(notes.copies):,}, one of each kept"
                     + (f"; {clashing} with different labels" if clashing else "") + ")")
            blocks.append(h.collapsed(title, h.thumbnails(figures) + _more(len(notes.copies))))
        if notes.skipped:
            blocks.append(h.collapsed(f"Files skipped ({len(notes.skipped):,})",
                                      h.table(("file", "why"), notes.skipped)))
        if notes.excluded:
            blocks.append(h.collapsed(f"Images left out (exclude: {len(notes.excluded):,})",
                                      h.table(("file", "finding"), notes.excluded)))
    if report_text:
        blocks.append(h.collapsed("The loader's report, as text", h.pre(report_text)))
    return "".join(blocks)
