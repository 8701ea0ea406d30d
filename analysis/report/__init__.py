"""A sweep's report: one self-contained HTML page of plotly figures, summary.md and details.md.

    fno-report <out>/<sweep> [--target-error E] [--n-boot B]

writes, beside the sweep's results table, ``report.html`` (plotly.js inline: opens
offline), ``summary.md`` (the bottom line, the claims, the flags) and ``details.md``
(every table). The page opens with a paragraph that answers the study's question for
this run and the paper's four claims (verdict, one number with its interval, why not
decided), then the figures that carry the answers, "Can these numbers be trusted?",
and the tables, behind a table of contents.

One module per section, each ``section(report) -> list[Section]`` (``build.SECTIONS``
holds their order): ``claims`` (bottom line, claims, evidence), ``curves``, ``gains``,
``shifts``, ``strategies``, ``resolutions``, ``laws``, ``trust`` (flags),
``validation`` (every trial's validation curve), ``health``; ``page`` assembles the
HTML, ``markdown`` the two Markdown files, ``tables`` renders tables, ``cli`` is the
command. Every trace carries ``meta`` (family, shift, mode, sizes, what it draws) so
tests and users can find a figure's data; ``build_report`` returns figures and tables
without writing anything.
"""

from .base import Report, Section, Table, size_label
from .build import SECTIONS, build_report, text_sections
from .cli import SweepFolderError, check_sweep_folder, main, write_report
from .markdown import write_summary
from .page import write_html

__all__ = [
    "SECTIONS",
    "Report",
    "Section",
    "SweepFolderError",
    "Table",
    "build_report",
    "check_sweep_folder",
    "main",
    "size_label",
    "text_sections",
    "write_html",
    "write_report",
    "write_summary",
]
