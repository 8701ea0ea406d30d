"""Tables as HTML and Markdown, and the page's last part: every long table, each section's
under its heading, folded where it is long (the same tables go to details.md)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import pandas as pd

from .base import LONG_TABLE, Section, Table


def cell_text(value) -> str:
    """A cell as text: 4 significant digits for floats, nothing for NaN or None."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def html_table(df: pd.DataFrame) -> str:
    """A table that scrolls inside its own box, never the page."""
    body = df.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)
    return f"<div class='table-wrap'>{body}</div>"


def markdown_table(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    columns = list(df.columns) if columns is None else list(columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| " + " | ".join(cell_text(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |"
        for row in df[columns].itertuples(index=False)
    ]
    return "\n".join(lines)


def table_html(table: Table, anchor: str) -> str:
    """A table with its title and note; one longer than LONG_TABLE rows folded."""
    note = f"<p class='note'>{html.escape(table.note)}</p>" if table.note else ""
    rows = len(table.frame)
    title = f"<h4 id='{anchor}'>{html.escape(table.title)}</h4>{note}"
    if rows <= LONG_TABLE:
        return title + html_table(table.frame)
    return f"{title}<details><summary>{rows} rows</summary>{html_table(table.frame)}</details>"


def table_sections(sections: list[Section]) -> list[Section]:
    """The sections whose tables end the page, the claims' evidence first."""
    evidence = [s for s in sections if s.group == "tables" and not s.empty]
    others = [s for s in sections if s.group != "tables" and s.tables]
    return evidence + others


def tables_anchor(section: Section) -> str:
    return section.key if section.group == "tables" else f"{section.key}-tables"
