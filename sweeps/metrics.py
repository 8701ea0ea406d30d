"""A running sweep's state as Ray custom metrics, for the dashboard's Metrics page and any
Prometheus that scrapes the cluster.

Gauges (Prometheus names carry Ray's ``ray_`` prefix), each tagged with the sweep:
- ``fno_sweep_trials{status}``: trials of this run finished, by status (ok, failed, ...);
- ``fno_sweep_trials_running``, ``fno_sweep_trials_pending``, ``fno_sweep_trials_planned``;
- ``fno_sweep_eta_seconds``: the estimated time left (as the progress line prints it);
- ``fno_sweep_best_val_rel_l2{curve}``: the lowest validation error among a curve's
  finished trials (curve: family/shift/size/mode, with the pre-training set and
  strategy of fine-tune curves).

The driver sets them (it is a Ray worker: its node's metrics agent exports them,
``http://NODE:PORT/metrics``, PORT from ``--metrics-port`` or Ray's choice, printed at
the start); Ray exports every few seconds, so a scrape lags the sweep by that much.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any


def curve_label(trial) -> str:
    """family/shift/wW-mM/mode of a PlannedTrial, plus (pre-training set, strategy) for
    fine-tuning; pre-training: family/wW-mM/pretrain (family: the pre-training set)."""
    c = trial.config
    if c.mode == "pretrain":
        return f"{c.family}/w{c.width}-m{c.modes}/pretrain"
    label = f"{c.family}/{trial.shift}/w{c.width}-m{c.modes}/{c.mode}"
    if c.mode == "finetune":
        label += f"({trial.pretrain_family},{c.finetune_strategy})"
    elif c.mode == "zeroshot":
        label += f"({trial.pretrain_family})"
    return label


class SweepMetrics:
    """The gauges of one run of ``sweep`` with ``planned`` trials to run."""

    def __init__(self, sweep: str, planned: int) -> None:
        from ray.util.metrics import Gauge

        tags = {"sweep": sweep}

        def gauge(name: str, description: str, *keys: str):
            return Gauge(name, description=description, tag_keys=("sweep", *keys)).set_default_tags(tags)

        self.finished = gauge("fno_sweep_trials", "trials of this run finished, by status", "status")
        self.running = gauge("fno_sweep_trials_running", "trials running now")
        self.pending = gauge("fno_sweep_trials_pending", "trials not started yet")
        self.planned_gauge = gauge("fno_sweep_trials_planned", "trials this run set out to run")
        self.eta = gauge("fno_sweep_eta_seconds", "estimated seconds left")
        self.best = gauge("fno_sweep_best_val_rel_l2", "lowest validation error among a curve's trials", "curve")
        self.planned, self.counts, self.running_keys = planned, Counter(), set()
        self.best_by_curve: dict[str, float] = {}
        self.broken = False
        self.planned_gauge.set(planned)
        self._publish(eta_s=None)

    def trial_started(self, key: str) -> None:
        self._guarded(self._started, key)

    def trial_finished(self, trial, row: dict[str, Any], eta_s: float | None) -> None:
        """After a PlannedTrial's row (also for one recorded without running: its pre-training failed)."""
        self._guarded(self._finished, trial, row, eta_s)

    def _guarded(self, update, *args) -> None:
        """Metrics are for watching: a failure here must never fail a trial or the sweep
        (it would run inside Tune's callbacks), so it is reported once and metrics stop."""
        if self.broken:
            return
        try:
            update(*args)
        except Exception as err:  # any failure: warn, keep the sweep going
            self.broken = True
            print(f"warning: sweep metrics stopped ({type(err).__name__}: {err})", file=sys.stderr)

    def _started(self, key: str) -> None:
        self.running_keys.add(key)
        self._publish(eta_s=None)

    def _finished(self, trial, row: dict[str, Any], eta_s: float | None) -> None:
        self.running_keys.discard(trial.key)
        self.counts[row["status"]] += 1
        value = row.get("val_rel_l2")
        if row["status"] == "ok" and value is not None and value == value:
            curve = curve_label(trial)
            self.best_by_curve[curve] = min(self.best_by_curve.get(curve, float("inf")), float(value))
            self.best.set(self.best_by_curve[curve], tags={"curve": curve})
        self._publish(eta_s)

    def _publish(self, eta_s: float | None) -> None:
        done, running = sum(self.counts.values()), len(self.running_keys)
        for status, count in self.counts.items():
            self.finished.set(count, tags={"status": status})
        self.running.set(running)
        self.pending.set(max(0, self.planned - done - running))
        if eta_s is not None:
            self.eta.set(eta_s)
