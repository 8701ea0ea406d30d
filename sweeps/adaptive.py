"""Adaptive rounds: after the planned grid, add exactly the trials that could decide what
the analysis leaves "not decided", and stop when they do (docs/analysis.md, "Adaptive rounds").

``decide`` is a pure function of the preset, the results table's analysis (``analyse``),
the round number, the ``[adaptive]`` limits and the compute already spent: the same rows
give the same round. A round adds, per claim-1 cell (family, shift, size, pre-training
set) whose verdict is not decided:

- learning rate: at a point (curve and N) whose chosen rate is the smallest or largest
  run there, the next rate outward at the same log spacing, while fewer than
  ``max_lr_steps`` rates lie beyond the preset's on that side;
- N: where the gain is censored because scratch reaches the target past its largest N,
  scratch at twice (and four times, if its fit says twice is not enough) that N, up to
  ``max_n``; where fine-tuning is below the target at its smallest N, fine-tuning at
  half (and a quarter of) it, down to ``min_n``;
- data seeds: where nothing else is left (no flag that keeps the verdict from standing)
  and the interval is only too wide, the fewest more data seeds that a projection of
  the interval's width from the current replicates says can decide it, at most
  ``max_data_seeds``; whole curves, and every trained curve of the sweep where it has
  one data seed (a curve left at one would lose the sweep's "one data seed" widening);
- nothing for cells that learned nothing, nor for those whose flags no addition can
  clear; each such cell is listed with why (``Held``).

An added trial is a grid position (``fno_sweeps.grid.SPEC_FIELDS``) built by
``fno_sweeps.grid.spec_trials`` exactly as the grid builds its own: an ordinary keyed
trial, so resume and skip work as for the grid. The manifest records each round
(``Decision.to_json``); a re-run replays the recorded rounds before deciding new ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fno_sweeps.grid import SPEC_FIELDS, AdaptiveSettings, PlannedTrial, Preset, spec_trials

AXES = ("lr", "n_train", "data_seed")
AXIS_LABEL = {"lr": "lr", "n_train": "N", "data_seed": "data seeds"}
RANGE_SLACK = 1e-9  # relative tolerance of "inside the measured N range" (fno_analysis.gains)
PER_ROUND = 2  # N values one round may add to a curve (doublings or halvings)


def _num(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class Addition:
    """Trials one round adds to one curve (or to every curve: data seeds) along one axis."""

    axis: str  # AXES
    curve: str  # "scratch poisson/none/w8-m4", "finetune[poisson] poisson/large/w8-m4", "every trained curve"
    values: tuple  # the new axis values
    reason: str
    specs: tuple[dict, ...]  # the trials, as grid positions (SPEC_FIELDS)

    def line(self) -> str:
        """``scratch poisson/none/w8-m4: N 128, 256 (gain censored at >= 16)``."""
        return f"{self.curve}: {AXIS_LABEL[self.axis]} {', '.join(_num(v) for v in self.values)} ({self.reason})"

    def to_json(self) -> dict[str, Any]:
        return {"axis": self.axis, "curve": self.curve, "values": list(self.values), "reason": self.reason,
                "trials": len(self.specs), "specs": [dict(s) for s in self.specs]}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Addition:
        return cls(data["axis"], data["curve"], tuple(data["values"]), data["reason"],
                   tuple(dict(s) for s in data["specs"]))  # fmt: skip


@dataclass(frozen=True)
class Held:
    """A cell a round adds nothing for, and why."""

    cell: str
    reason: str

    def line(self) -> str:
        return f"{self.cell}: nothing ({self.reason})"


@dataclass
class Decision:
    """One round: what it adds and why, what it holds back, its estimated cost, and
    ``stop``: why the rounds end with it ("" where the driver goes on)."""

    round: int
    additions: list[Addition] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    hours: float = 0.0  # estimated trial-hours of the additions
    stop: str = ""
    verdicts: dict[str, str] = field(default_factory=dict)  # claim-1 cell -> verdict, as the round saw them

    @property
    def specs(self) -> list[dict]:
        return [s for a in self.additions for s in a.specs]

    def lines(self) -> list[str]:
        """What the console prints for the round."""
        head = f"adaptive round {self.round}: " + (
            f"{sum(len(a.specs) for a in self.additions)} trials added, about {self.hours:.2g} trial-hours"
            if self.additions
            else "nothing added"
        )
        out = [head, *(f"  {a.line()}" for a in self.additions), *(f"  {h.line()}" for h in self.held)]
        if self.stop:
            out.append(f"  stop: {self.stop}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "additions": [a.to_json() for a in self.additions],
            "held": [{"cell": h.cell, "reason": h.reason} for h in self.held],
            "hours": self.hours,
            "stop": self.stop,
            "verdicts": dict(self.verdicts),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Decision:
        return cls(
            int(data["round"]),
            [Addition.from_json(a) for a in data.get("additions", [])],
            [Held(h["cell"], h["reason"]) for h in data.get("held", [])],
            float(data.get("hours", 0.0)),
            str(data.get("stop", "")),
            dict(data.get("verdicts", {})),
        )


@dataclass
class Analysis:
    """What the report computes before it draws, kept whole: the rounds need the gains'
    censoring and the flags, which ``Findings`` summarises."""

    df: pd.DataFrame
    points: pd.DataFrame
    flags: pd.DataFrame
    gains: pd.DataFrame
    findings: Any  # fno_analysis.findings.Findings


def analyse(df: pd.DataFrame, n_boot: int = 200, seed: int = 0, target_error: float | None = None) -> Analysis:
    """Points, fits, flags, gains and findings of a results table, as the report's
    (``fno_analysis.findings.judge_table``, without the transfer law, which decides nothing)."""
    from fno_analysis.diagnostics import diagnose, floor_artefacts
    from fno_analysis.findings import build_findings
    from fno_analysis.fit import fit_curves
    from fno_analysis.gains import data_efficiency_gain
    from fno_analysis.points import select_points, with_study_columns
    from fno_analysis.verdicts import learned_cells

    df = with_study_columns(df)
    points = select_points(df)
    fits = fit_curves(df, n_boot=n_boot, seed=seed, points=points)
    flags = diagnose(df, points, fits)
    gains = data_efficiency_gain(
        df, target_error, fits=fits, floor_artefacts=floor_artefacts(flags), learned=learned_cells(points)
    )
    if not gains.empty:  # the curves' measured N ranges, for the censoring sides
        ranges = fits[["family", "shift", "pretrain_family", "width", "modes", "layers", "mode",
                       "finetune_strategy", "n_min", "n_max"]]  # fmt: skip
        gains = gains.merge(
            ranges[ranges["mode"] == "scratch"].drop(columns=["mode", "pretrain_family", "finetune_strategy"])
            .rename(columns={"n_min": "sc_n_min", "n_max": "sc_n_max"}),
            on=["family", "shift", "width", "modes", "layers"], how="left",
        ).merge(
            ranges[ranges["mode"] == "finetune"].drop(columns="mode")
            .rename(columns={"n_min": "ft_n_min", "n_max": "ft_n_max"}),
            on=["family", "shift", "pretrain_family", "width", "modes", "layers", "finetune_strategy"], how="left",
        )  # fmt: skip
    return Analysis(df, points, flags, gains, build_findings(points, gains, flags))


# --- the curves and cells -------------------------------------------------------------------

CELL_COLUMNS = ["family", "shift", "width", "modes", "layers", "pretrain_family"]


def _size(row) -> str:
    return f"w{int(row['width'])}-m{int(row['modes'])}"


def cell_label(row) -> str:
    """``poisson/none/w8-m4 from poisson``."""
    return f"{row['family']}/{row['shift']}/{_size(row)} from {row['pretrain_family']}"


def curve_label(mode: str, row, source: str = "") -> str:
    """``scratch poisson/none/w8-m4``; ``finetune[poisson] poisson/none/w8-m4``."""
    name = f"{mode}[{source}]" if mode == "finetune" else mode
    return f"{name} {row['family']}/{row['shift']}/{_size(row)}"


def _curve_rows(frame: pd.DataFrame, cell, mode: str) -> pd.DataFrame:
    """Rows of ``frame`` (results or points) on the cell's scratch or (full) fine-tune curve."""
    here = (frame["family"] == cell["family"]) & (frame["shift"] == cell["shift"]) & (frame["mode"] == mode)
    for key in ("width", "modes", "layers"):
        here &= frame[key] == cell[key]
    if mode == "finetune":
        here &= (frame["pretrain_family"] == cell["pretrain_family"]) & (frame["finetune_strategy"] == "full")
    if "stage" in frame:
        here &= frame["stage"] != "probe"
    return frame[here]


def _spec(preset: Preset, row, mode: str, n_train: int, lr: float, seed: int, data_seed: int) -> dict:
    """A grid position on a curve: scratch takes any pre-training set of its size (its key has none)."""
    source = row["pretrain_family"] if mode != "scratch" else preset.pretrain_families[0]
    spec = {"size": _size(row), "source": source, "family": row["family"], "shift": row["shift"],
            "n_train": int(n_train), "mode": mode, "lr": float(lr), "seed": int(seed),
            "data_seed": int(data_seed), "strategy": "full"}  # fmt: skip
    if mode == "zeroshot":
        spec.update(n_train=1, lr=1e-3, seed=0)
    assert set(spec) == set(SPEC_FIELDS)
    return spec


def _round_rate(value: float) -> float:
    return float(f"{value:.6g}")


# --- the rules --------------------------------------------------------------------------


def lr_additions(preset: Preset, analysis: Analysis, cell, mode: str, limits: AdaptiveSettings,
                 held: list[str]) -> list[Addition]:  # fmt: skip
    """The learning-rate rule on one curve of ``cell``; reasons for what it cannot add go to ``held``."""
    points = _curve_rows(analysis.points, cell, mode)
    rows = _curve_rows(analysis.df, cell, mode)
    if points.empty:
        return []
    label = curve_label(mode, cell, cell["pretrain_family"])
    grid_lo, grid_hi = min(preset.lrs), max(preset.lrs)
    wanted: dict[tuple[str, float], list[int]] = {}  # (side, new rate) -> N
    phrase: dict[str, str] = {}  # side -> the addition's reason, "{}" for the N
    single: list[int] = []  # N run at one rate only
    at_limit: dict[str, list[int]] = {}  # "largest after 2 steps" -> N
    for _, p in points.sort_values("n_train").iterrows():
        if p["n_lrs"] < 2:
            single.append(int(p["n_train"]))
            continue
        if p["lr"] not in (p["lr_min"], p["lr_max"]):
            continue
        rates = np.sort(rows.loc[rows["n_train"] == p["n_train"], "lr"].unique())
        up = p["lr"] == p["lr_max"]
        beyond = int((rates > grid_hi * (1 + 1e-9)).sum() if up else (rates < grid_lo * (1 - 1e-9)).sum())
        if beyond >= limits.max_lr_steps:
            at_limit.setdefault(f"{'largest' if up else 'smallest'} after {beyond} steps", []).append(int(p["n_train"]))
            continue
        new = _round_rate(rates[-1] ** 2 / rates[-2] if up else rates[0] ** 2 / rates[1])
        side = "largest" if up else "smallest"
        phrase[side] = f"the chosen rate is the {side} run at N {{}}"
        wanted.setdefault((side, new), []).append(int(p["n_train"]))
    curve_end = points["n_train"].max() if mode == "scratch" else points["n_train"].min()  # sets the gain
    if single and curve_end in single and limits.one_rate_step > 1 and limits.max_lr_steps >= 1:
        rate = float(points.loc[points["n_train"] == curve_end, "lr"].iloc[0])
        for word, factor in (("larger", limits.one_rate_step), ("smaller", 1 / limits.one_rate_step)):
            side = f"one rate run: x{limits.one_rate_step:.3g} {word}"
            phrase[side] = f"{side} at N {{}}, the curve's end that sets the gain"
            wanted.setdefault((side, _round_rate(rate * factor)), []).append(int(curve_end))
        single.remove(curve_end)
    if single:  # one line per curve, not one per N
        held.append(f"{label}: one learning rate at N {', '.join(map(str, single))}, no spacing to step by (add a "
                    "second rate to lrs)")  # fmt: skip
    for where, ns in at_limit.items():
        held.append(f"{label}: the chosen rate at N {', '.join(map(str, ns))} is still the {where} beyond the grid "
                    "(max_lr_steps)")  # fmt: skip
    out = []
    for (side, new), ns in sorted(wanted.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        specs = []
        for n in ns:
            data_seeds = sorted(rows.loc[rows["n_train"] == n, "data_seed"].unique())
            specs += [_spec(preset, cell, mode, n, new, s, d) for s in preset.seeds for d in data_seeds]
        out.append(Addition("lr", label, (new,), phrase[side].format(", ".join(map(str, ns))), tuple(specs)))
    return out


def _n_specs(preset: Preset, analysis: Analysis, cell, mode: str, values: list[int], at_largest: bool) -> tuple:
    """Trials of ``mode``'s curve in ``cell`` at the new N ``values``: every rate run at the
    curve's end being extended (its largest N, or its smallest), x the preset's seeds x the
    curve's data seeds."""
    rows = _curve_rows(analysis.df, cell, mode)
    end = rows["n_train"].max() if at_largest else rows["n_train"].min()
    rates = sorted(rows.loc[rows["n_train"] == end, "lr"].unique())
    data_seeds = sorted(rows["data_seed"].unique())
    return tuple(_spec(preset, cell, mode, v, r, s, d) for v in values for r in rates for s in preset.seeds
                 for d in data_seeds)  # fmt: skip


def n_additions(preset: Preset, analysis: Analysis, cell, gain, limits: AdaptiveSettings,
                held: list[str]) -> list[Addition]:  # fmt: skip
    """The N rule on a cell's gain row ``gain``; reasons for what it cannot add go to ``held``."""
    out = []
    kind, target = gain["verdict"], gain["target_error"]
    if kind == "not measurable with this budget":
        held.append("scratch levels off above the target and its floor is likely the training budget's: more N "
                    "cannot clear it (raise downstream.epochs)")  # fmt: skip
        return out
    if kind in ("no fit",) or not np.isfinite(target):
        held.append(f"no gain to censor ({gain.get('note', kind)})")
        return out
    sc_above = np.isfinite(gain["sc_n_max"]) and not gain["n_scratch"] <= gain["sc_n_max"] * (1 + RANGE_SLACK)
    ft_below = np.isfinite(gain["ft_n_min"]) and gain["n_finetune"] < gain["ft_n_min"] * (1 - RANGE_SLACK)
    bound = gain["bound"] if np.isfinite(gain["bound"]) else gain["gain"]
    censored = (
        f"gain censored at {'>=' if kind == 'lower bound' else '<='} {bound:.3g}"
        if kind.endswith("bound")
        else f"gain {kind}"
    )
    if sc_above:
        cap = limits.largest_n(preset.n_train)
        n_max, need = int(gain["sc_n_max"]), float(gain["n_scratch"])
        values = []
        n = n_max
        while len(values) < PER_ROUND and 2 * n <= cap:
            n *= 2
            values.append(n)
            if n >= need:  # the fit says scratch gets there by this N
                break
        label = curve_label("scratch", cell)
        if not values:
            held.append(f"{label}: censored at its largest N {n_max}, and 2 x {n_max} > max_n {cap}")
        else:
            specs = _n_specs(preset, analysis, cell, "scratch", values, at_largest=True)
            where = "never, by its fit" if math.isinf(need) else f"N ~ {need:.3g} by its fit"
            out.append(Addition("n_train", label, tuple(values), f"{censored}; scratch reaches {target:.3g} past N "
                                f"{n_max}: {where}", specs))  # fmt: skip
    if ft_below:
        n_min = int(gain["ft_n_min"])
        values, n = [], n_min
        while len(values) < PER_ROUND and n // 2 >= limits.min_n and n > 1:
            n //= 2
            values.append(n)
        label = curve_label("finetune", cell, cell["pretrain_family"])
        if not values:
            held.append(f"{label}: below the target at its smallest N {n_min}, already at min_n {limits.min_n}")
        else:
            specs = _n_specs(preset, analysis, cell, "finetune", values, at_largest=False)
            out.append(Addition("n_train", label, tuple(values), f"{censored}; fine-tuning is below {target:.3g} at "
                                f"its smallest N {n_min}", specs))  # fmt: skip
    return out


def _t(k: int) -> float:
    """The 97.5% quantile of t with k - 1 degrees of freedom (k replicates); the normal's for k = 1."""
    from fno_analysis.fit import t_quantile

    return 1.959964 if k < 2 else t_quantile(k - 1)


def seeds_needed(estimate: float, lo: float, hi: float, threshold: float, k: int, widening: float,
                 widening_after: float, most: int) -> tuple[int | None, str]:  # fmt: skip
    """The fewest data seeds k' in (k, most] whose projected interval decides ``estimate``
    against ``threshold`` (None if none can), and the projection in words.

    The half-width on the log scale, on the side that must clear the threshold, is taken
    without its widening, scaled by sqrt(k / k') and by the ratio of the t quantiles, then
    widened by what still applies with k' seeds (``widening_after``); k' decides where that
    is below the distance from the estimate to the threshold (about 50% power).
    """
    if not (estimate > 0 and lo > 0):
        return None, "no interval"
    up = estimate >= threshold
    half = math.log(estimate / lo) if up else math.log(hi / estimate) if math.isfinite(hi) else math.inf
    distance = abs(math.log(estimate / threshold))
    if not math.isfinite(half):
        return None, "an open interval (a lower bound) cannot fall below the threshold"
    base = half / widening
    for k_new in range(k + 1, most + 1):
        projected = base * widening_after * math.sqrt(k / k_new) * _t(k_new) / _t(k)
        if projected < distance:
            return k_new, (f"projected log half-width {projected:.2f} at {k_new} data seeds < distance {distance:.2f} "
                           f"from {threshold:g}")  # fmt: skip
    projected = base * widening_after * math.sqrt(k / most) * _t(most) / _t(k)
    return None, (f"even {most} data seeds (max_data_seeds) leave a projected log half-width {projected:.2f} >= "
                  f"distance {distance:.2f} from {threshold:g}")  # fmt: skip


def seed_plan(analysis: Analysis, candidates: list[tuple[Any, Any]], limits: AdaptiveSettings,
              held: list[Held]) -> tuple[dict[tuple, int], list[str]]:  # fmt: skip
    """Per candidate cell (CELL_COLUMNS values) the data seeds it needs in all (``seeds_needed``),
    and the projections in words; the cells no number within max_data_seeds can decide go to ``held``."""
    from fno_analysis.findings import ORDERS
    from fno_analysis.verdicts import WIDEN, CellDoubts, widen

    doubts = CellDoubts(analysis.flags)
    df = analysis.df
    wanted: dict[tuple, int] = {}
    why = []
    for cell, gain in candidates:
        size = (cell["width"], cell["modes"], cell["layers"])
        under = doubts.undercovers(cell["family"], cell["shift"], size, cell["pretrain_family"])
        widening = WIDEN if under else 1.0
        after = WIDEN if set(under) - {"one data seed"} else 1.0
        estimate = gain["gain"] if gain["verdict"] == "measured" else gain["bound"]
        lo, hi = widen(estimate, gain["gain_lo"], gain["gain_hi"], widening)
        k = int(min(_curve_rows(df, cell, m)["data_seed"].nunique() for m in ("scratch", "finetune")))
        k_new, words = seeds_needed(estimate, lo, hi, ORDERS, k, widening, after, limits.max_data_seeds)
        if k_new is None:
            held.append(Held(cell_label(cell), f"interval [{lo:.3g}, {hi:.3g}] across {ORDERS:g}: {words}"))
            continue
        wanted[tuple(cell[k] for k in CELL_COLUMNS)] = k_new
        why.append(f"{cell_label(cell)} [{lo:.3g}, {hi:.3g}]: {words}")
    return wanted, why


def data_seed_addition(preset: Preset, analysis: Analysis, candidates: list[tuple[Any, Any]],
                       limits: AdaptiveSettings, held: list[Held]) -> Addition | None:  # fmt: skip
    """The data-seed rule over the cells whose interval alone keeps them undecided
    (``candidates``: (cell, gain) rows); the cells it cannot help go to ``held``."""
    df = analysis.df
    trained = df[df["mode"].isin(("scratch", "finetune")) & (df["stage"] != "probe" if "stage" in df else True)]
    one_seed = df["data_seed"].nunique() == 1
    plan, why = seed_plan(analysis, candidates, limits, held)
    wanted = max(plan.values(), default=0)
    if not wanted:
        return None
    existing = sorted(int(d) for d in df["data_seed"].unique())
    new = list(range(max(existing) + 1, max(existing) + 1 + wanted - len(existing)))
    if not new:
        return None
    if one_seed:  # every trained curve, and the zero-shot points, so that no curve is left at one data seed
        cells = analysis.points[analysis.points["mode"].isin(("scratch", "finetune", "zeroshot"))]
        curve = "every trained curve"
    else:
        keys = set(plan)
        rows = analysis.points
        mine = pd.Series([tuple(r[k] for k in CELL_COLUMNS) in keys for _, r in rows.iterrows()], index=rows.index)
        scratch_of = {tuple(k[:5]) for k in keys}
        sc = pd.Series([(r["family"], r["shift"], r["width"], r["modes"], r["layers"]) in scratch_of
                        for _, r in rows.iterrows()], index=rows.index)  # fmt: skip
        cells = rows[((rows["mode"] == "finetune") & mine) | ((rows["mode"] == "scratch") & sc)]
        curve = "the curves of " + ", ".join(
            cell_label(c) for c, _ in candidates if tuple(c[k] for k in CELL_COLUMNS) in plan
        )
    specs = []
    for _, p in cells.iterrows():
        mode = p["mode"]
        if p["family"] in preset.datasets:
            continue
        if mode == "zeroshot":
            specs += [_spec(preset, p, mode, 1, 1e-3, 0, d) for d in new]
            continue
        if mode == "finetune" and p["finetune_strategy"] not in ("", "full"):
            continue
        at = trained[(trained["mode"] == mode) & (trained["family"] == p["family"]) & (trained["shift"] == p["shift"])
                     & (trained["width"] == p["width"]) & (trained["modes"] == p["modes"])
                     & (trained["n_train"] == p["n_train"])]  # fmt: skip
        if mode == "finetune":
            at = at[at["pretrain_family"] == p["pretrain_family"]]
        specs += [_spec(preset, p, mode, p["n_train"], r, s, d) for r in sorted(at["lr"].unique())
                  for s in preset.seeds for d in new]  # fmt: skip
    reason = "; ".join(why) + (" (the sweep has one data seed: every curve gets them)" if one_seed else "")
    return Addition("data_seed", curve, tuple(new), reason, tuple(specs))


def cell_rules(preset: Preset, analysis: Analysis, cell, limits: AdaptiveSettings,
               doubts) -> tuple[list[Addition], list[str], Any]:  # fmt: skip
    """The learning-rate and N rules on one undecided cell (a row of ``Findings.cells[1]``):
    (their additions, why they add nothing more, and the cell's gain row where only the
    interval's width keeps it undecided, a data-seed candidate, else None)."""
    from fno_analysis.findings import ORDERS

    reasons: list[str] = []
    here = [*lr_additions(preset, analysis, cell, "scratch", limits, reasons),
            *lr_additions(preset, analysis, cell, "finetune", limits, reasons)]  # fmt: skip
    gains = analysis.gains
    match = np.ones(len(gains), dtype=bool)
    for key in CELL_COLUMNS:
        match &= (gains[key] == cell[key]).to_numpy()
    match &= (gains["finetune_strategy"] == "full").to_numpy()
    gain = gains[match].iloc[0] if match.any() else None
    if gain is not None:
        here += n_additions(preset, analysis, cell, gain, limits, reasons)
    if here:
        return here, reasons, None
    size = (cell["width"], cell["modes"], cell["layers"])
    inflating, deflating = doubts.directions(cell["family"], cell["shift"], size, cell["pretrain_family"])
    if gain is None or gain["verdict"] not in ("measured", "lower bound", "upper bound"):
        reasons.append(f"the gain is {'missing' if gain is None else gain['verdict']}")
        return here, reasons, None
    estimate = gain["gain"] if gain["verdict"] == "measured" else gain["bound"]
    blocking = inflating if estimate >= ORDERS else deflating
    if blocking:
        reasons.append(f"flags no addition here clears: {', '.join(blocking)}")
        return here, reasons, None
    return here, reasons, gain


def decide(
    preset: Preset,
    analysis: Analysis,
    round_number: int,
    limits: AdaptiveSettings | None = None,
    spent_hours: float = 0.0,
    hours_of: Callable[[list[PlannedTrial]], float] | None = None,
    known_keys: Iterable[str] = (),
) -> Decision:
    """Round ``round_number``'s additions (see the module docstring), within the limits:
    ``spent_hours`` estimated trial-hours earlier rounds added, ``hours_of`` the estimated
    trial-hours of planned trials (None: not counted), ``known_keys`` trials already planned
    or run (never added again)."""
    from fno_analysis.verdicts import CONTRADICTS, NOT_LEARNED, SUPPORTS, CellDoubts

    limits = limits or preset.adaptive
    decision = Decision(round_number)
    if round_number > limits.max_rounds:
        decision.stop = f"max_rounds {limits.max_rounds} reached"
        return decision
    cells = analysis.findings.cells.get(1, pd.DataFrame())
    if cells is None or cells.empty:
        decision.stop = "no claim-1 cells (no fine-tune and scratch curves with fits)"
        return decision
    doubts = CellDoubts(analysis.flags)
    additions: list[Addition] = []
    candidates = []
    for _, cell in cells.iterrows():
        label = cell_label(cell)
        decision.verdicts[label] = str(cell["verdict"])
        if cell["verdict"] in (SUPPORTS, CONTRADICTS):
            continue
        if cell["verdict"] == NOT_LEARNED:
            decision.held.append(Held(label, "the models learned nothing here: no trial can make it a verdict"))
            continue
        if cell["family"] in preset.datasets:
            decision.held.append(Held(label, "a dataset of the user's: its N and data seeds are fixed by its files"))
            continue
        here, reasons, gain = cell_rules(preset, analysis, cell, limits, doubts)
        additions += here
        if gain is not None:
            candidates.append((cell, gain))
        elif here:  # what the rules could not add is said even where they add something: one line a cell
            if reasons:
                decision.held.append(Held(label, "; ".join(reasons)))
        else:
            decision.held.append(Held(label, "; ".join(reasons)))
    if candidates:
        seeds = data_seed_addition(preset, analysis, candidates, limits, decision.held)
        if seeds is not None:
            additions.append(seeds)
    decision.additions = _new_only(preset, _merge(additions), set(known_keys))
    _apply_cap(preset, decision, limits, spent_hours, hours_of)
    if not decision.additions and not decision.stop:
        undecided = [v for v in decision.verdicts.values() if v not in (SUPPORTS, CONTRADICTS, NOT_LEARNED)]
        decision.stop = (
            "every claim-1 verdict it can act on is decided"
            if not undecided
            else f"this round adds nothing ({len(undecided)} cells stay not decided; see why above)"
        )
    return decision


def _merge(additions: list[Addition]) -> list[Addition]:
    """One addition per (axis, curve, values): a scratch curve is shared by every pre-training set's cell."""
    merged: dict[tuple, Addition] = {}
    for a in additions:
        key = (a.axis, a.curve, a.values)
        if key in merged:
            old = merged[key]
            specs = tuple({_spec_key(s): s for s in (*old.specs, *a.specs)}.values())
            reason = old.reason if a.reason in old.reason else f"{old.reason}; {a.reason}"
            merged[key] = Addition(a.axis, a.curve, a.values, reason, specs)
        else:
            merged[key] = a
    return list(merged.values())


def _spec_key(spec: Mapping[str, Any]) -> tuple:
    return tuple(spec[k] for k in SPEC_FIELDS)


def _new_only(preset: Preset, additions: list[Addition], known: set[str]) -> list[Addition]:
    """The additions without trials already planned, run or added (by key); empty ones dropped."""
    out = []
    for a in additions:
        keep = []
        for spec in a.specs:
            key = spec_trials(preset, [spec])[0].key
            if key not in known:
                known.add(key)
                keep.append(spec)
        if keep:
            out.append(Addition(a.axis, a.curve, a.values, a.reason, tuple(keep)))
    return out


def _apply_cap(preset: Preset, decision: Decision, limits: AdaptiveSettings, spent_hours: float,
               hours_of: Callable[[list[PlannedTrial]], float] | None) -> None:  # fmt: skip
    """Keep the additions, in order, while the estimated trial-hours stay within max_trial_hours."""
    if hours_of is None:
        return
    left = limits.max_trial_hours - spent_hours
    kept, hours = [], 0.0
    for a in decision.additions:
        cost = hours_of(spec_trials(preset, list(a.specs)))
        if hours + cost <= left:
            kept.append(a)
            hours += cost
        else:
            decision.held.append(Held(a.curve, f"{AXIS_LABEL[a.axis]} {', '.join(_num(v) for v in a.values)} would "
                                      f"cost {cost:.2g} trial-hours, over what max_trial_hours "
                                      f"{limits.max_trial_hours:g} leaves ({max(left - hours, 0):.2g})"))  # fmt: skip
    decision.additions, decision.hours = kept, hours
    if not kept and left - hours <= 0:
        decision.stop = f"the compute cap max_trial_hours {limits.max_trial_hours:g} is spent"


def static_preset(preset: Preset, limits: AdaptiveSettings | None = None) -> Preset:
    """The static grid that runs every value the rounds could add at every point: the rate
    grid stepped ``max_lr_steps`` outward on each side, N doubled up to max_n and halved
    down to min_n, ``max_data_seeds`` data seeds. An upper bound of any adaptive run's trials."""
    import dataclasses

    limits = limits or preset.adaptive
    lrs = sorted(preset.lrs)
    if len(lrs) >= 2 or limits.one_rate_step > 1:
        down, up = (lrs[1] / lrs[0], lrs[-1] / lrs[-2]) if len(lrs) >= 2 else (limits.one_rate_step,) * 2
        lrs = [_round_rate(lrs[0] / down**i) for i in range(limits.max_lr_steps, 0, -1)] + lrs
        lrs += [_round_rate(lrs[-1] * up**i) for i in range(1, limits.max_lr_steps + 1)]
    ns = set(preset.n_train)
    n = max(ns)
    while 2 * n <= limits.largest_n(preset.n_train):
        n *= 2
        ns.add(n)
    n = min(ns)
    while n // 2 >= limits.min_n and n > 1:
        n //= 2
        ns.add(n)
    seeds = list(preset.data_seeds)
    while len(seeds) < limits.max_data_seeds:
        seeds.append(max(seeds) + 1)
    return dataclasses.replace(preset, lrs=tuple(lrs), n_train=tuple(sorted(ns)), data_seeds=tuple(seeds))


def replay(preset: Preset, recorded: list[Mapping[str, Any]]) -> tuple[list[Decision], list[PlannedTrial]]:
    """The recorded rounds, in order, and their trials (built from their grid positions)."""
    decisions = [Decision.from_json(r) for r in sorted(recorded, key=lambda r: r["round"])]
    trials = spec_trials(preset, [s for d in decisions for s in d.specs]) if decisions else []
    return decisions, trials
