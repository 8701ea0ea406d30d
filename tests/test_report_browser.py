"""The report as a reader sees it, in headless Chromium at 1,400 x 900 px: the bottom line and
the claims table on the first screen, no sideways scrolling, every figure drawn, no page
errors. On a tiny sweep's report (the sweep writes it) and on the report of the committed
study (docs/study/). Skipped where no Chromium is found (Debian: apt-get install chromium)."""

import shutil
from pathlib import Path

import pytest
from tiny_sweep import TINY

from fno_analysis.report import main as report_main
from fno_analysis.report.browser import check_page, find_chromium

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (apt-get install chromium)")


def _checked(page: Path) -> None:
    check = check_page(page, CHROMIUM, width=1400, height=900)
    assert check.problems() == [], check
    assert check.figures == page.read_text(encoding="utf-8").count("Plotly.newPlot(") > 0
    assert check.bottom_line["top"] < check.claims["top"] < check.claims["bottom"] <= 900


def test_a_tiny_sweeps_report_reads_in_the_browser(tmp_path):
    from fno_sweeps import scaling

    assert scaling.main(["--out", str(tmp_path), "--no-dashboard", "--concurrency", "1", *TINY]) == 0
    _checked(tmp_path / "cpu" / "report.html")


def test_the_committed_studys_report_reads_in_the_browser(tmp_path):
    sweep = tmp_path / "study"
    shutil.copytree(ROOT / "docs" / "study" / "results", sweep / "results")
    assert report_main([str(sweep)]) == 0
    _checked(sweep / "report.html")
