"""The one text-table formatter: every table the CLI prints and the report's Markdown.

    text_table(["name", "params"], [["vgg", "1.2k"]], right={1})
    text_table(header, rows, right={2, 3}, markdown=True)   # | a | b | with a rule

Columns are padded to their widest cell so a Markdown table also reads in a terminal;
``right`` holds the indices of right-aligned (numeric) columns.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                 right: Collection[int] = (), markdown: bool = False) -> str:
    """Plain: columns separated by two spaces, no trailing blanks. Markdown: pipes and a
    rule whose ``:`` marks the right-aligned columns."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(header)]

    def cells(row: Sequence[str]) -> list[str]:
        return [str(c).rjust(w) if i in right else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(row, widths))]

    if not markdown:
        return "\n".join("  ".join(cells(r)).rstrip() for r in [header, *rows])
    rule = "|" + "|".join("-" * (w + 1) + ":" if i in right else "-" * (w + 2)
                          for i, w in enumerate(widths)) + "|"
    lines = ["| " + " | ".join(cells(r)) + " |" for r in [header, *rows]]
    return "\n".join([lines[0], rule, *lines[1:]])
