"""The report while a sweep runs: ``report.html`` and ``summary.md`` rewritten every few minutes.

A child process (``python -m fno_analysis.report``, at the lowest CPU priority) writes
them from the rows so far, at most once per ``every_s`` seconds and never two at once,
so that the driver never waits for the fits and a failing report cannot stop the
sweep. The files are replaced atomically: a browser reload shows the last complete
report. The final report, at the end of the sweep, is written as before.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from fno.storage import Location, location

DEFAULT_EVERY_S = 300.0


class LiveReport:
    """Refreshes the report of ``sweep_dir`` from ``maybe_refresh`` calls (one per finished
    trial); ``close`` ends a refresh still running."""

    def __init__(self, sweep_dir: Path | Location, every_s: float = DEFAULT_EVERY_S) -> None:
        if every_s < 0:
            raise ValueError(f"--report-every must be >= 0 seconds (0: only at the end), got {every_s:g}")
        self.sweep_dir, self.every_s = location(sweep_dir), every_s
        self.last = time.monotonic()  # the first refresh comes every_s after the start
        self.process: subprocess.Popen | None = None
        self.refreshes = 0

    def maybe_refresh(self) -> bool:
        """Start a refresh if one is due and none is running; True if started."""
        if self.every_s <= 0 or (self.process is not None and self.process.poll() is None):
            return False
        if time.monotonic() - self.last < self.every_s:
            return False
        self.last = time.monotonic()
        nice = ["nice", "-n", "19"] if shutil.which("nice") else []  # trials first
        self.process = subprocess.Popen(
            [*nice, sys.executable, "-m", "fno_analysis.report", str(self.sweep_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.refreshes += 1
        return True

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait()
