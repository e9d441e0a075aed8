"""A one-page HTML report: the summary table and the figures (linked PNGs beside it)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

from cnnlab.utils.io import atomic_write_text

__all__ = ["render_html", "write_html"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.92em; margin: 1em 0; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #ddd; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.stuck td { background: #fbeaea; }
figure { margin: 2em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
.meta { color: #555; }
"""


def render_html(title: str, header: Sequence[str], rows: Sequence[Sequence[str]],
                n_axes: int, figures: Mapping[str, str], notes: Sequence[str] = (),
                stuck_rows: Sequence[bool] = ()) -> str:
    """The page as a string. ``figures`` maps a caption to an image path relative to the
    page; ``stuck_rows`` flags table rows to tint (cells with stuck runs)."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = []
    for k, row in enumerate(rows):
        cls = ' class="stuck"' if k < len(stuck_rows) and stuck_rows[k] else ""
        tds = "".join(f"<td>{e(v)}</td>" if i < n_axes else f'<td class="num">{e(v)}</td>'
                      for i, v in enumerate(row))
        body.append(f"<tr{cls}>{tds}</tr>")
    figs = "".join(
        f'<figure><img src="{e(src)}" alt="{e(cap)}"><figcaption>{e(cap)}</figcaption></figure>'
        for cap, src in figures.items())
    note_html = "".join(f'<p class="meta">{e(n)}</p>' for n in notes)
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n<h1>{e(title)}</h1>\n{note_html}\n"
            f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) +
            f"\n</tbody></table>\n{figs}\n</body></html>\n")


def write_html(path: str | Path, page: str) -> Path:
    """Write ``page`` to ``path`` atomically."""
    return atomic_write_text(path, page)
