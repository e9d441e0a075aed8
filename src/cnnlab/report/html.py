"""A one-page HTML report: the summary table and the figures, embedded in the page as
``data:image/png;base64,...`` URIs, so that ``report.html`` is one self-contained file that
can be mailed or moved as it is (the PNGs beside it are the same figures)."""

from __future__ import annotations

import base64
import html
import mimetypes
from collections.abc import Mapping, Sequence
from pathlib import Path

from cnnlab.utils.io import atomic_write_text

__all__ = ["data_uri", "render_html", "write_html"]

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
.verdict { font-size: 1.1em; background: #f4f8ff; padding: 0.6em 0.9em;
           border-left: 4px solid #3b6fd1; }
"""


def data_uri(path: str | Path) -> str:
    """The file at ``path`` as a ``data:`` URI (``data:image/png;base64,...``)."""
    mime = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def render_html(title: str, header: Sequence[str], rows: Sequence[Sequence[str]],
                n_axes: int, figures: Mapping[str, str | Path], notes: Sequence[str] = (),
                stuck_rows: Sequence[bool] = (), verdict: str = "",
                finding_tables: Sequence[tuple[Sequence[str], Sequence[Sequence[str]]]] = (),
                ) -> str:
    """The page as a string. ``figures`` maps a caption to an image: a :class:`~pathlib.Path`
    is read and embedded (a ``data:`` URI; its file name kept in ``data-file``), a string is
    used as the ``src`` as it is; ``stuck_rows`` flags table rows to tint (cells with stuck
    runs); ``verdict`` and ``finding_tables`` (header, rows pairs) are a phenomenon
    analysis's, shown first."""
    e = html.escape

    def img(cap: str, src: str | Path) -> str:
        if isinstance(src, Path):
            return (f'<img src="{data_uri(src)}" alt="{e(cap)}" '
                    f'data-file="{e(src.name)}">')
        return f'<img src="{e(src)}" alt="{e(cap)}">'

    figs = "".join(
        f'<figure>{img(cap, src)}<figcaption>{e(cap)}</figcaption></figure>'
        for cap, src in figures.items())
    note_html = "".join(_table(fh, frows, len(fh)) for fh, frows in finding_tables)
    note_html += "".join(f'<p class="meta">{e(n)}</p>' for n in notes)
    if verdict:
        note_html = f'<p class="verdict"><strong>Verdict:</strong> {e(verdict)}</p>\n' + note_html
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n<h1>{e(title)}</h1>\n{note_html}\n"
            f"{_table(header, rows, n_axes, stuck_rows)}{figs}\n</body></html>\n")


def _table(header: Sequence[str], rows: Sequence[Sequence], text_cols: int,
           stuck_rows: Sequence[bool] = ()) -> str:
    """An HTML table: the first ``text_cols`` columns as text, the rest right-aligned
    numbers; rows flagged in ``stuck_rows`` tinted."""
    e = html.escape
    head = "".join(f"<th>{e(str(h))}</th>" for h in header)
    body = []
    for k, row in enumerate(rows):
        cls = ' class="stuck"' if k < len(stuck_rows) and stuck_rows[k] else ""
        tds = "".join(f"<td>{e(str(v))}</td>" if i < text_cols
                      else f'<td class="num">{e(str(v))}</td>' for i, v in enumerate(row))
        body.append(f"<tr{cls}>{tds}</tr>")
    return (f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body)
            + "\n</tbody></table>\n")


def write_html(path: str | Path, page: str) -> Path:
    """Write ``page`` to ``path`` atomically."""
    return atomic_write_text(path, page)
