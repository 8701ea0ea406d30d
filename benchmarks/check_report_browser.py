"""Open report.html files in headless Chromium and say what a reader would miss.

    python benchmarks/check_report_browser.py out/cpu/report.html [...] [--chromium PATH] [--width 1400] [--height 900]

Each page is loaded with its scripts (plotly.js is inline, so no network) in a window of
the given size, and checked as tests/test_report_browser.py checks it (one implementation:
``fno_analysis.report.browser``): the bottom line and the claims table on the first
screen, no sideways scrolling, every plotly figure drawn, no page errors (uncaught
exceptions, console errors). Prints one line per page, then its problems; exit status 1
if a page has one, 2 without Chromium or without the page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fno_analysis.report.browser import check_page, find_chromium


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", type=Path, nargs="+")
    parser.add_argument("--chromium", default=find_chromium(), help="the browser (default: chromium on PATH)")
    parser.add_argument("--width", type=int, default=1400, help="window width in px (default 1400)")
    parser.add_argument("--height", type=int, default=900, help="window height, the first screen, in px (default 900)")
    args = parser.parse_args()
    if not args.chromium:
        print("error: no chromium found (apt-get install chromium, or --chromium PATH)", file=sys.stderr)
        return 2
    failed = False
    for page in args.reports:
        try:
            check = check_page(page, args.chromium, width=args.width, height=args.height)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        problems = check.problems()
        print(
            f"{page}: {check.drawn} of {check.figures} figures drawn in {check.load_s:.1f} s, {len(check.errors)} "
            f"page errors, {check.scroll_width} px wide in a {check.viewport_width} px window, claims table ends at "
            f"{check.claims['bottom']:.0f} px"
            if check.claims
            else f"{page}: no claims table"
        )
        for problem in problems:
            print(f"  {problem}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
