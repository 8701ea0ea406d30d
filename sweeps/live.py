"""What a running sweep shows: its start-up phases, its running trials, and its report.

``Stopwatch`` prints each start-up phase with the seconds since the driver started
(``[ 21.0 s] Ray started ...``). ``TrialBoard`` shows the running trials (name, step
of total, latest validation error, time) on a terminal, redrawn in place at most every
BOARD_REFRESH_S seconds below the lines of finished trials; elsewhere (a log file, a
batch job's output) it prints only those lines.

``LiveReport``: ``report.html`` and ``summary.md`` rewritten every few minutes. A child
process (``python -m fno_analysis.report``, at the lowest CPU priority) writes
them from the rows so far, at most once per ``every_s`` seconds and never two at once,
so that the driver never waits for the fits and a failing report cannot stop the
sweep. The files are replaced atomically: a browser reload shows the last complete
report. The final report, at the end of the sweep, is written as before.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

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


class Stopwatch:
    """Seconds since the driver started, printed before each start-up phase."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.started = time.monotonic()
        self.stream = stream

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, message: str) -> None:
        """``[ 21.0 s] message`` on stdout (or the given stream)."""
        print(f"[{self.elapsed():5.1f} s] {message}", file=self.stream or sys.stdout, flush=True)


BOARD_REFRESH_S = 2.0  # the live view of running trials is redrawn at most this often
BOARD_ROWS = 12  # running trials listed at most (the rest are counted)


@dataclass
class RunningTrial:
    """One running trial as the board shows it."""

    name: str
    total_steps: int  # 0: a zero-shot trial (evaluation only)
    started: float  # time.monotonic() when it started
    step: int = 0
    val_rel_l2: float = math.nan


class TrialBoard:
    """The running trials, and a line per finished trial.

    On a terminal (``live``, default: the stream is a TTY) the running trials are a block
    at the bottom, redrawn in place (ANSI cursor-up and erase-line) at most every
    ``every_s`` seconds; finished-trial lines are printed above it and stay. Elsewhere
    only the finished-trial lines are printed."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None, every_s: float = BOARD_REFRESH_S):
        self._stream = stream  # None: sys.stdout as it is when printing
        self.live = _is_terminal(self.stream) if live is None else live
        self.every_s = every_s
        self.running: dict[str, RunningTrial] = {}  # by key
        self.drawn = 0  # lines of the block now on screen
        self.last_draw = -math.inf

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stream": None}  # (Tune pickles what holds this; a stream does not pickle)

    def started(self, key: str, name: str, total_steps: int) -> None:
        self.running[key] = RunningTrial(name, total_steps, time.monotonic())

    def reported(self, key: str, step: int | None, val_rel_l2: float | None) -> None:
        trial = self.running.get(key)
        if trial is None:
            return
        if step is not None:
            trial.step = int(step)
        if val_rel_l2 is not None:
            trial.val_rel_l2 = float(val_rel_l2)

    def ended(self, key: str) -> RunningTrial | None:
        return self.running.pop(key, None)

    def line(self, text: str, header: str = "") -> None:
        """A line that stays (a finished trial); the block is redrawn below it."""
        self._clear()
        print(text, file=self.stream, flush=not self.live)
        if self.live:
            self._draw(header)

    def tick(self, header: str = "") -> None:
        """Redraw the block if BOARD_REFRESH_S has passed (on a terminal)."""
        if self.live and time.monotonic() - self.last_draw >= self.every_s:
            self._clear()
            self._draw(header)

    def close(self) -> None:
        """Remove the block (the lines that stay remain)."""
        self._clear()
        self.stream.flush()

    def rows(self, width: int = 120) -> list[str]:
        """The block's lines: one per running trial (longest running first), cut to ``width``."""
        now = time.monotonic()
        trials = sorted(self.running.values(), key=lambda t: t.started)
        shown = trials[:BOARD_ROWS]
        name_width = min(max((len(t.name) for t in shown), default=0), max(20, width - 50))
        lines = []
        for t in shown:
            where = f"step {t.step:>{len(str(t.total_steps))}}/{t.total_steps}" if t.total_steps else "evaluating"
            val = "val -" if math.isnan(t.val_rel_l2) else f"val {t.val_rel_l2:.4f}"
            lines.append(f"  {t.name[:name_width]:<{name_width}}  {where}  {val}  {_clock(now - t.started)}"[:width])
        if len(trials) > len(shown):
            lines.append(f"  ... and {len(trials) - len(shown)} more running")
        return lines

    def _draw(self, header: str) -> None:
        width = max(40, shutil.get_terminal_size((120, 24)).columns - 1)  # never wrap: the count must hold
        lines = ([header[:width]] if header else []) + self.rows(width)
        if lines:
            self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self.drawn, self.last_draw = len(lines), time.monotonic()

    def _clear(self) -> None:
        if self.live and self.drawn:
            self.stream.write("\x1b[1A\x1b[2K" * self.drawn)  # up one line and erase it, per line drawn
        self.drawn = 0


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _clock(seconds: float) -> str:
    """``1:05`` (minutes:seconds) or ``1:02:05`` for a running trial's time."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def duration_text(seconds: float) -> str:
    """A time left as people read it: ``45 s``, ``2.1 min``, ``3.4 h`` (never 0: at least 1 s)."""
    seconds = max(1.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
