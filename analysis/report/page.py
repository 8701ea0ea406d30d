"""report.html: the bottom line and the claims first, a table of contents, the figures,
"Can these numbers be trusted?", then the tables. One self-contained file (plotly.js
inline), written whole."""

from __future__ import annotations

import html
from pathlib import Path

from fno.storage import Location, location

from .base import GROUPS, Report, Section
from .tables import table_html, table_sections, tables_anchor

STYLE = (
    "body{font-family:sans-serif;max-width:1300px;margin:auto;padding:0 16px;line-height:1.35}"
    "p.bottom-line{font-size:105%;max-width:1150px}.caption,.note{color:#444;max-width:1000px}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%;vertical-align:top}"
    ".table-wrap{overflow-x:auto;max-width:100%}table.claims{width:100%}table.claims td{font-size:92%}"
    "td.verdict{font-weight:bold}nav>div{display:flex;gap:28px;font-size:90%}nav>div>div{flex:1}"
    "nav>div>div.wide{flex:2}nav>div>div.wide>ul{columns:2;column-gap:20px}nav ul{margin:4px 0;padding-left:18px}"
    "nav li{break-inside:avoid}nav li.part{list-style:none;margin-left:-18px;margin-top:4px}"
    "ul.notes{color:#444;font-size:90%}details summary{cursor:pointer;color:#1f4e9a}"
    ".plotly-graph-div{max-width:100%}"
)


def _figure_anchor(number: int) -> str:
    return f"figure-{number}"


def _contents(report: Report, numbers: dict[int, int]) -> str:
    """The table of contents: each figure, each check, each table."""
    items = []
    for group, heading in GROUPS.items():
        if group == "answer":
            continue
        if group == "tables":
            entries = [(tables_anchor(s), s.heading) for s in table_sections(report.sections)]
        else:
            entries = []
            for s in report.sections:
                if s.group != group or not s.in_place:
                    continue
                entries.append((s.key, s.heading))
                entries += [(_figure_anchor(numbers[id(f)]), f"Figure {numbers[id(f)]}. {f[0]}") for f in s.figures]
        if entries:
            links = "".join(
                f"<li{'' if a.startswith('figure-') or group == 'tables' else ' class=part'}>"
                f"<a href='#{a}'>{html.escape(t)}</a></li>"
                for a, t in entries
            )
            wide = " class='wide'" if group == "figures" else ""
            items.append(f"<div{wide}><a href='#{group}'><b>{html.escape(heading)}</b></a><ul>{links}</ul></div>")
    return f"<nav id='contents'><h2>Contents</h2><div>{''.join(items)}</div></nav>"


def _section_html(section: Section, numbers: dict[int, int], first_figure: list[bool]) -> str:
    import plotly.io as pio

    parts = [f"<h3 id='{section.key}'>{html.escape(section.heading)}</h3>"]
    parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
    parts += section.html
    for figure in section.figures:
        title, caption, fig = figure
        number = numbers[id(figure)]
        body = pio.to_html(fig, full_html=False, include_plotlyjs=first_figure[0], config={"responsive": True})
        first_figure[0] = False  # plotly.js once, inline
        parts.append(
            f"<h4 id='{_figure_anchor(number)}'>Figure {number}. {html.escape(title)}</h4>"
            f"<p class='caption'>{html.escape(caption)}</p>{body}"
        )
    parts += [table_html(t, f"{section.key}-shown-{i}") for i, t in enumerate(section.shown)]
    return "\n".join(parts)


def page(report: Report, title: str) -> str:
    """The whole page as text."""
    numbers = {}
    for s in report.sections:
        for f in s.figures:
            numbers[id(f)] = len(numbers) + 1
    first_figure = [True]
    body = [f"<h1>{html.escape(title)}</h1>"]
    for s in report.sections:
        if s.group == "answer":
            body.append(f"<section id='{s.key}'>")
            body += [f"<p class='bottom-line'>{html.escape(p)}</p>" for p in s.paragraphs]
            body += s.html
            body.append("</section>")
    if report.notes:
        body.append("<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in report.notes) + "</ul>")
    body.append(_contents(report, numbers))
    for group, heading in GROUPS.items():
        if group in ("answer", "tables"):
            continue
        shown = [s for s in report.sections if s.group == group and s.in_place]
        if shown:
            body.append(f"<h2 id='{group}'>{html.escape(heading)}</h2>")
            body += [_section_html(s, numbers, first_figure) for s in shown]
    last = table_sections(report.sections)
    if last:
        body.append(f"<h2 id='tables'>{html.escape(GROUPS['tables'])}</h2>")
        for s in last:
            body.append(f"<h3 id='{tables_anchor(s)}'>{html.escape(s.heading)}</h3>")
            if s.group == "tables":
                body += [f"<p>{html.escape(p)}</p>" for p in s.paragraphs]
            body += [table_html(t, f"{s.key}-table-{i}") for i, t in enumerate(s.tables)]
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>"
    )


def write_html(report: Report, path: str | Path | Location, title: str) -> None:
    """Write the page to ``path`` whole (a reload mid-sweep sees a complete page)."""
    location(path).write_bytes(page(report, title).encode("utf-8"))
