"""Open a report.html in headless Chromium and measure what a reader sees: the checks of
tests/test_report_browser.py and benchmarks/check_report_browser.py, in one place.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
JSON messages ended by a NUL byte on file descriptors 3 and 4), so no websocket client
and no network are needed. ``check_page`` loads the page in a window of the given size,
waits until plotly has drawn every figure (or the time is up) and returns a PageCheck;
``PageCheck.problems`` lists what a reader would miss:

- the bottom line and the claims table must lie on the first screen;
- the page must not scroll sideways (the document's scrollWidth <= the viewport's width);
- every plotly figure must draw (its div holds an svg);
- no page errors (uncaught exceptions, console errors).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

MEASURE = """(() => {
  const box = (el) => el ? el.getBoundingClientRect().toJSON() : null;
  const figures = [...document.querySelectorAll('div.plotly-graph-div')];
  return {
    scroll_width: document.documentElement.scrollWidth,
    viewport_width: window.innerWidth,
    viewport_height: window.innerHeight,
    figures: figures.length,
    drawn: figures.filter((f) => f.querySelector('svg.main-svg')).length,
    bottom_line: box(document.querySelector('#bottom-line p')),
    claims: box(document.querySelector('table.claims')),
    too_wide: [...document.body.querySelectorAll('*')]
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
      .slice(0, 5).map((el) => el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className),
  };
})()"""


def find_chromium() -> str | None:
    """The Chromium (or Chrome) on PATH, or /usr/bin/chromium; None if there is none."""
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@dataclass
class PageCheck:
    """What the page showed in a window ``width`` x ``height`` px."""

    width: int
    height: int
    figures: int = 0  # plotly figure divs in the page
    drawn: int = 0  # of them, those plotly drew (an svg inside)
    scroll_width: int = 0  # the document's
    viewport_width: int = 0
    bottom_line: dict | None = None  # the bottom-line paragraph's box (top, bottom, ... in px)
    claims: dict | None = None  # the claims table's box
    too_wide: list[str] = field(default_factory=list)  # elements past the right edge (the first five)
    errors: list[str] = field(default_factory=list)  # uncaught exceptions and console errors
    load_s: float = 0.0  # from navigation to every figure drawn (or the timeout)

    def problems(self) -> list[str]:
        """What a reader would miss, one sentence each; empty when the page passes."""
        out = []
        for name, box in (("bottom line", self.bottom_line), ("claims table", self.claims)):
            if box is None:
                out.append(f"no {name} on the page")
            elif box["bottom"] > self.height:
                out.append(f"the {name} ends at {box['bottom']:.0f} px, below the first screen ({self.height} px)")
        if self.scroll_width > self.viewport_width:
            out.append(
                f"the page scrolls sideways: {self.scroll_width} px wide in a {self.viewport_width} px window "
                f"(too wide: {', '.join(self.too_wide) or 'unknown'})"
            )
        if self.drawn < self.figures:
            out.append(f"{self.figures - self.drawn} of {self.figures} figures not drawn")
        out += [f"page error: {e}" for e in self.errors]
        return out


class _Pipe:
    """The DevTools protocol over Chromium's pipe: send a command, read until its answer."""

    def __init__(self, process: subprocess.Popen, to_browser: int, from_browser: int) -> None:
        self.process, self.to_browser, self.from_browser = process, to_browser, from_browser
        self.buffer, self.events, self.next_id = b"", [], 0

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.from_browser], [], [], left)
            if ready:
                chunk = os.read(self.from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed its pipe (exit status {self.process.poll()})")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error'].get('message')}")
                return answer.get("result", {})
            self.events.append(answer)

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive within ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read(deadline))
        except TimeoutError:
            pass


def _page_errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif event.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif event.get("method") == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(params["entry"].get("text", "error"))
    return errors


def check_page(
    page: str | Path, chromium: str | None = None, width: int = 1400, height: int = 900, timeout_s: float = 120
) -> PageCheck:
    """Load ``page`` in headless Chromium at ``width`` x ``height`` px and measure it
    (see the module docstring). FileNotFoundError without Chromium or without the page."""
    page = Path(page).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"{page}: no such report")
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found (Debian: apt-get install chromium; or pass its path)")
    to_read, to_browser = os.pipe()  # the browser reads commands on its fd 3 ...
    from_browser, to_write = os.pipe()  # ... and writes answers on its fd 4

    def pipes_at_3_and_4() -> None:  # in the child, before exec: move both clear of 3 and 4 first
        read, write = fcntl.fcntl(to_read, fcntl.F_DUPFD, 10), fcntl.fcntl(to_write, fcntl.F_DUPFD, 10)
        os.dup2(read, 3)
        os.dup2(write, 4)

    with tempfile.TemporaryDirectory(prefix="fno-report-browser-") as profile:
        command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe",
                   f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"]  # fmt: skip
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pipes_at_3_and_4, pass_fds=(3, 4)
        )
        os.close(to_read)
        os.close(to_write)
        pipe = _Pipe(process, to_browser, from_browser)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for method in ("Runtime.enable", "Log.enable", "Page.enable"):
                pipe.call(method, session=session)
            metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
            pipe.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
            started = time.monotonic()
            pipe.call("Page.navigate", {"url": page.as_uri()}, session=session)
            check = PageCheck(width, height)
            measured: dict = {}
            while time.monotonic() - started < timeout_s:
                pipe.drain(0.5)
                answer = pipe.call(
                    "Runtime.evaluate", {"expression": MEASURE, "returnByValue": True}, session=session, timeout=60
                )
                measured = answer.get("result", {}).get("value") or {}
                loaded = any(e.get("method") == "Page.loadEventFired" for e in pipe.events)
                if loaded and measured.get("drawn", 0) >= measured.get("figures", 0):
                    break
            check.load_s = time.monotonic() - started
            pipe.drain(1.0)  # errors thrown by the last draws
            for name in ("figures", "drawn", "scroll_width", "viewport_width", "bottom_line", "claims", "too_wide"):
                if name in measured:
                    setattr(check, name, measured[name])
            check.errors = _page_errors(pipe.events)
            with contextlib.suppress(RuntimeError, TimeoutError):  # it may close its pipe before it answers
                pipe.call("Browser.close", timeout=10)
        finally:
            os.close(to_browser)
            os.close(from_browser)
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return check
