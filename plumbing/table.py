"""The one terminal table of povwatch: plain-text columns, two spaces apart, a dashed rule under the header.

    render_table(header, body, right_from=None, rules_before=(), indent="")

Widths count a CJK or full-width character as two columns (`text_width`), so Chinese names line up. Columns from
`right_from` on (numbers) are aligned right, the others left; trailing spaces are cut. `rules_before` draws the
dashed rule again before those body rows (a total line); `indent` starts every line. Without a header (None) the
rows are only aligned (no rule): labelled lines such as `povwatch status`'s; the last cell of each row then runs
on unaligned, so rows may have fewer cells than others.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Collection, Sequence

__all__ = ["render_table", "text_width"]


def text_width(text: str) -> int:
    """Columns `text` takes on a terminal: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def render_table(header: Sequence[str] | None, body: Sequence[Sequence[str]], *, right_from: int | None = None,
                 rules_before: Collection[int] = (), indent: str = "") -> str:
    """`header` and `body` (rows of cells, as many as the header) as lines of text (see the module docstring)."""
    rows = ([tuple(header)] if header is not None else []) + [tuple(row) for row in body]
    columns = max((len(row) for row in rows), default=0)
    widths = [max((text_width(row[i]) for row in rows if i < len(row) - (header is None)), default=0)
              for i in range(columns)]
    right = columns if right_from is None else right_from

    def line(row: Sequence[str]) -> str:
        cells = [cell + " " * (widths[i] - text_width(cell)) if i < right
                 else " " * (widths[i] - text_width(cell)) + cell for i, cell in enumerate(row)]
        return (indent + "  ".join(cells)).rstrip()

    rule = indent + "  ".join("-" * w for w in widths)
    lines = [line(rows[0]), rule] if header is not None else []
    for n, row in enumerate(rows[1:] if header is not None else rows):
        if n in rules_before:
            lines.append(rule)
        lines.append(line(row))
    return "\n".join(lines)
