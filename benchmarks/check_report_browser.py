"""Open a report.html in headless Chromium and report its page errors and rendered figures.

    python benchmarks/check_report_browser.py out/cpu/report.html [--chromium /usr/bin/chromium]

Loads the page with its scripts (plotly.js is inline, so no network), lets it run for
a few seconds of virtual time, and prints every console error ("Uncaught ...") and the
number of figures plotly drew (its figure divs, counted in the rendered DOM) against
the number the page holds. Exit status 1 on any page error or figure not drawn.
Needs Chromium (Debian: apt-get install chromium); not part of the test suite.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    if not args.chromium:
        print("error: no chromium found (apt-get install chromium, or --chromium PATH)", file=sys.stderr)
        return 2
    page = args.report.resolve()
    if not page.is_file():
        print(f"error: {page} not found", file=sys.stderr)
        return 2
    command = [args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
               "--virtual-time-budget=20000", "--dump-dom", page.as_uri()]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    errors = [line for line in run.stderr.splitlines() if "CONSOLE" in line and re.search(r"Uncaught|Error", line)]
    expected = page.read_text(encoding="utf-8").count("Plotly.newPlot(")
    drawn = len(re.findall(r'class="[^"]*\bjs-plotly-plot\b', run.stdout))  # the class plotly sets once drawn
    print(f"{page}: {len(errors)} page errors, {drawn} of {expected} figures drawn")
    for line in errors:
        print("  " + line)
    return 1 if errors or drawn < expected else 0


if __name__ == "__main__":
    sys.exit(main())
