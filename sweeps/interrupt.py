"""Stopping a sweep on request: Ctrl-C (SIGINT), or SIGTERM from ``kill``, ``ray job stop``
or a batch scheduler.

The first signal asks the run to stop: Tune stops the running trials and starts no
new ones, the rows of finished trials stay, trials cut short get no row (so the same
command runs them again), and the driver exits with 128 + the signal's number (130 for
Ctrl-C, 143 for SIGTERM). A second signal exits at once (KeyboardInterrupt).

Tune installs its own Ctrl-C handler in ``Tuner.fit``, which stops the run too but
then reports a finished fit and recommends ``Tuner.restore``, which this tool never
uses (it resumes by key); TUNE_DISABLE_SIGINT_HANDLER keeps Tune's handler out while
``Interrupt`` is active, and Tune learns of the request through ``tune_stopper``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupt:
    """A context in which SIGINT and SIGTERM request a graceful stop; see the module docstring."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self._tune_env: str | None = None

    def __getstate__(self) -> dict:
        # Tune pickles the stopper, which holds this, with the experiment's state: the
        # saved handlers stay out (Ray's own SIGTERM handler is a closure over a lock).
        return {**self.__dict__, "_previous": {}}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process ended by it."""
        return 128 + (self.signum or signal.SIGINT)

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        self._tune_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if self._tune_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._tune_env

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping the sweep; running trials end without a row and run again "
            "next time, finished rows are kept (signal again to exit at once)",
            file=sys.stderr,
            flush=True,
        )


def tune_stopper(interrupt: Interrupt):
    """A Tune Stopper that ends the whole run once ``interrupt`` is requested (built
    lazily so that this module imports without Ray)."""
    from ray.tune import Stopper

    class InterruptStopper(Stopper):
        def __call__(self, trial_id: str, result: dict) -> bool:
            return interrupt.requested

        def stop_all(self) -> bool:
            return interrupt.requested

    return InterruptStopper()
