"""fno-report: read ``<sweep>/results`` (and ``evaluations``), write report.html, summary.md
and details.md beside them. It refuses, writing nothing, a folder that holds no results
table and a results (or evaluations) folder itself."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fno.storage import Location, location
from fno_analysis.evaluations import read_evaluations_table
from fno_analysis.fit import add_fit_arguments
from fno_analysis.points import read_table

from .build import build_report
from .markdown import write_summary
from .page import write_html
from .rounds import read_rounds

TABLE_FOLDERS = {"results": "results table", "evaluations": "evaluations table"}


class SweepFolderError(ValueError):
    """fno-report was given something other than a sweep folder with a results table."""


def check_sweep_folder(sweep_dir: Location) -> None:
    """Raise SweepFolderError unless ``sweep_dir`` is a sweep folder that holds a results table."""
    if sweep_dir.is_file() or sweep_dir.name.endswith(".parquet"):
        raise SweepFolderError(
            f"{sweep_dir}: this is a file of a table; run fno-report on its sweep folder (the folder that holds "
            "results/)"
        )
    what = None if (sweep_dir / "results").is_dir() else TABLE_FOLDERS.get(sweep_dir.name)
    if what is None and sweep_dir.files(".parquet"):
        what = "table"
    if what is not None:
        raise SweepFolderError(f"{sweep_dir}: this is a {what}; run fno-report on its sweep folder: {sweep_dir.parent}")
    if not sweep_dir.exists():
        raise SweepFolderError(
            f"no results at {sweep_dir}: no such folder; run fno-report on a sweep folder <out>/<sweep>"
        )
    if not (sweep_dir / "results").files(".parquet"):
        raise SweepFolderError(
            f"no results table in {sweep_dir} (no {sweep_dir / 'results'} with rows): run fno-report on a sweep "
            "folder <out>/<sweep> once a trial has finished"
        )


def write_report(
    sweep_dir: str | Path | Location, target_error: float | None = None, n_boot: int = 200
) -> tuple[Location, Location]:
    """Read ``<sweep_dir>/results``, write ``report.html``, ``summary.md`` and ``details.md``
    beside it (``sweep_dir``: a folder or an object-store URI); SweepFolderError (a
    ValueError) where it is not a sweep folder with a results table, nothing written."""
    sweep_dir = location(sweep_dir)
    check_sweep_folder(sweep_dir)
    df = read_table(sweep_dir)
    if df.empty:
        raise SweepFolderError(f"the results table in {sweep_dir} has no rows: nothing to report")
    evaluations = read_evaluations_table(sweep_dir)
    report = build_report(df, target_error=target_error, n_boot=n_boot, evaluations=evaluations,
                          adaptive_rounds=read_rounds(sweep_dir))  # fmt: skip
    title = f"Sweep '{sweep_dir.name}': {len(df)} trials"
    html_path, md_path = sweep_dir / "report.html", sweep_dir / "summary.md"
    write_html(report, html_path, title)
    write_summary(report, md_path, title)
    return html_path, md_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fno-report", description="Write report.html, summary.md and details.md for a sweep."
    )
    parser.add_argument("sweep_dir", help="the sweep's folder, <out>/<sweep> (holds results/), or its URI")
    add_fit_arguments(parser)
    args = parser.parse_args(argv)
    try:
        html_path, md_path = write_report(args.sweep_dir, args.target_error, args.n_boot)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: {html_path}\nsummary: {md_path} (every table: {md_path.parent / 'details.md'})")
    return 0
