"""HTML pieces for the run report: escaped text, tables, embedded images, one self-contained page.

No template engine and no external resources: every image is a ``data:`` URI and the style
sheet is inline, so ``report.html`` can be mailed, archived or opened offline as one file.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d232a;
       background: #f6f7f9; }
header { background: #1d3557; color: #fff; padding: 1.2rem 2rem; }
header h1 { margin: 0 0 .3rem; font-size: 1.5rem; }
header p { margin: 0; opacity: .85; }
nav { padding: .6rem 2rem; background: #e9edf2; font-size: .9rem; }
nav a { margin-right: 1rem; color: #1d3557; }
main { padding: 1rem 2rem 3rem; max-width: 1200px; }
section { background: #fff; border: 1px solid #dde2e8; border-radius: 6px; padding: 1rem 1.4rem; margin: 1rem 0; }
h2 { margin-top: 0; font-size: 1.2rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { border: 1px solid #dde2e8; padding: .25rem .5rem; text-align: right; vertical-align: top; }
th { background: #f0f3f6; }
td:first-child, th:first-child { text-align: left; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; }
.card { border: 1px solid #dde2e8; border-radius: 6px; padding: .5rem .9rem; min-width: 8rem; }
.card b { display: block; font-size: 1.3rem; }
figure { margin: .6rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; }
pre { background: #f0f3f6; padding: .6rem; overflow-x: auto; font-size: .8rem; white-space: pre-wrap;
      overflow-wrap: anywhere; }
td { overflow-wrap: anywhere; }
.note { color: #555; font-size: .9rem; }
.explain td { white-space: nowrap; }
table.explain { display: block; max-width: 100%; overflow-x: auto; }  /* wide layer tables scroll in place */
.thumbs { display: flex; flex-wrap: wrap; gap: .5rem; }
.thumbs figure { margin: 0; width: 7.5rem; font-size: .75rem; overflow-wrap: anywhere; }
.thumbs img { width: 7.5rem; height: 7.5rem; object-fit: contain; image-rendering: pixelated; background: #eee; }
details > summary { cursor: pointer; font-weight: 600; margin: .4rem 0; }
"""


def esc(value: Any) -> str:
    """Escape any value for HTML text or attributes."""
    return html.escape(str(value), quote=True)


def image(path: str | Path, alt: str, caption: str = "") -> str:
    """A ``<figure>`` with the PNG at ``path`` embedded as a data URI."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">{cap}</figure>'


def thumbnail(pixels: Any, alt: str, caption: str = "") -> str:
    """A small ``<figure>`` of raw ``uint8`` pixels (a PNG data URI; the page scales it, pixels kept sharp)."""
    from cnnkit.images import encode_png

    data = base64.b64encode(encode_png(pixels)).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}" title="{esc(alt)}">{cap}</figure>'


def thumbnails(figures: Sequence[str]) -> str:
    """Figures from :func:`thumbnail` in rows that wrap."""
    return f'<div class="thumbs">{"".join(figures)}</div>'


def collapsed(summary: str, body: str, open_: bool = False) -> str:
    """A ``<details>`` block: ``summary`` (escaped) as its heading, ``body`` (safe HTML) shown on a click."""
    return f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{body}</details>"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], css_class: str = "") -> str:
    """An HTML table; every cell escaped. Floats are shown as given: format them first."""
    cls = f' class="{esc(css_class)}"' if css_class else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def cards(items: Sequence[tuple[str, str]]) -> str:
    """Headline numbers as small cards: (label, value) pairs."""
    inner = "".join(f'<div class="card"><b>{esc(value)}</b>{esc(label)}</div>' for label, value in items)
    return f'<div class="cards">{inner}</div>'


def pre(text: str) -> str:
    """Preformatted text (logs, reports), escaped."""
    return f"<pre>{esc(text)}</pre>"


@dataclass
class Section:
    """One titled part of the report; ``body`` is already-safe HTML built with the helpers above."""

    anchor: str
    title: str
    body: str


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole report as one HTML document."""
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    parts = "".join(f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><nav>{nav}</nav>"
        f"<main>{parts}</main></body></html>\n"
    )
