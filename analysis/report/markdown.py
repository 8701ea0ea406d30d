"""summary.md (the bottom line, the claims, the flags: short) and details.md beside it
(every table in full, the claims' whole evidence first)."""

from __future__ import annotations

from pathlib import Path

from fno.storage import Location, location

from .base import GROUPS, Report
from .claims import full_claims
from .tables import markdown_table, table_sections

SUMMARY_HEADINGS = {"answer": "Bottom line", "figures": "Beyond the paper's claims"}


def summary_text(report: Report, title: str) -> str:
    blocks = [f"# {title}", *(f"- {n}" for n in report.notes)]
    for group, heading in GROUPS.items():
        sections = [s for s in report.sections if s.group == group and s.summary]
        if not sections:
            continue
        blocks.append(f"## {SUMMARY_HEADINGS.get(group, heading)}")
        for s in sections:
            if group not in ("answer", "trust"):
                blocks.append(f"### {s.heading}")
            blocks += s.summary
    blocks.append(
        "Every table in full, and the whole evidence for each claim: [details.md](details.md); the figures: "
        "report.html beside it."
    )
    return "\n\n".join(blocks) + "\n"


def details_text(report: Report, title: str) -> str:
    blocks = [f"# {title}: details", "The bottom line, the claims and the flags: [summary.md](summary.md)."]
    if not report.findings.claims.empty:
        blocks += ["## The paper's claims, with their whole evidence", markdown_table(full_claims(report))]
    for s in table_sections(report.sections):
        heading = f"## {s.heading}"
        blocks.append(f'<a id="{s.key}"></a>\n\n{heading}' if s.group == "tables" else heading)
        if s.group == "tables":
            blocks += s.paragraphs
        for table in s.tables:
            blocks.append(f"### {table.title}")
            if table.note:
                blocks.append(table.note)
            blocks.append(markdown_table(table.frame))
    return "\n\n".join(blocks) + "\n"


def write_summary(report: Report, path: str | Path | Location, title: str) -> None:
    """summary.md at ``path``, and details.md beside it."""
    path = location(path)
    path.write_bytes(summary_text(report, title).encode("utf-8"))
    (path.parent / "details.md").write_bytes(details_text(report, title).encode("utf-8"))
