"""Calibration of the verdicts: how often the report says "supports" or "contradicts" when
it should not, and how often it says "supports" when the claim is true.

Each scenario draws synthetic sweeps from known truths (``synthetic_tables.draw_table``),
judges each with ``fno_analysis.findings.judge_table`` (points, fits, diagnostics, gains,
transfer law, findings: what the report computes) and counts the per-cell verdicts of
``Findings.cells[k]``: "supports", "contradicts", anything else (not decided, no
verdict). In most scenarios a claim is false by a small margin (or cannot be judged at
all), and the verdicts that are wrong there are counted, with a one-sided 95%
Clopper-Pearson upper limit on their share (goal: at most 2.5%); in the power scenarios the
claim is true by a clear margin and the share of "supports" is the power (goal: at least
80%). A sweep holds several families, each an independent draw of the scenario's cell(s).

    python benchmarks/bench_verdicts.py [--cells 200] [--scenarios NAME ...] [--seed S]
                                        [--n-boot 200] [--markdown] [--list]
                                        [--adaptive [--rounds 3] [--max-data-seeds 6] [--n-rule]]

With --adaptive each sweep of a claim-1 scenario is judged, then given the data seeds that
the adaptive rounds' data-seed rule (``fno_sweeps.adaptive.seed_plan``) asks for, drawn from
the same truth, and judged again, for up to --rounds rounds: the sequential design whose
error rate the verdicts must keep. With --n-rule too, every sweep starts at N 32 .. 8,192
and the N rule's additions (scratch N doubled where a gain is censored, fine-tuning N
halved where fine-tuning is below the target at its smallest N) are revealed from the same
truth, out to N 8 and 32,768. Rates the learning-rate rule would add are not in the
synthetic truth (three rates): cells where it adds get nothing from it. Each row then
also gives the static run's wrong share and power beside the adaptive one, and the
trained trials per decided cell of each.

Names may be shell-style patterns ("gain9.8*"). Unless a scenario says otherwise: the
paper's 13 N values (8 .. 32,768), scratch err(N) = N^-0.5 + 0.01, fine-tuning worth G
times its examples, err_ft(N) = err_scratch(G N) (so the true gain is G at every target
error), 3 learning rates with the middle one best by 25%, 3 data seeds x 2 training seeds,
5% log point noise per (data seed, curve, N), AR(1) along N with rho 0.6 (nested training
sets), half its variance shared by the curves of one cell (one test set), 3% training-seed
noise, validation within 2% of test.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import math
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import beta as beta_dist
from synthetic_tables import LRS3, N13, PAPER_SIZES, Curve, Noise, draw_table

import fno_analysis
from fno_analysis.findings import judge_table
from fno_analysis.gains import examples_needed
from fno_sweeps import adaptive
from fno_sweeps.grid import AdaptiveSettings

SUPPORTS, CONTRADICTS = "supports", "contradicts"
N_GRID = np.asarray(N13)
A, B, C = 1.0, 0.5, 0.01  # the scratch curve A N^-B + C
WRONG_GOAL, POWER_GOAL = 0.025, 0.80  # issue 24: at most 2.5% wrong verdicts; power at least 80%
LB_FRACTION = 0.9  # "lower bound" targets: fine-tuning reaches them at 0.9 x its smallest N


def scratch_error(n, a: float = A, c: float = C) -> np.ndarray:
    return a * np.power(np.asarray(n, dtype=float), -B) + c


@dataclass(frozen=True)
class Judged:
    """A claim a scenario judges: which verdicts are wrong there, or (power) that the
    claim is true and the share of "supports" is the measure."""

    claim: int
    cells_per_family: int
    wrong: tuple[str, ...] = (SUPPORTS,)
    power: bool = False


@dataclass(frozen=True)
class Scenario:
    key: str
    truth: str  # how the truth is built (one line, for the table)
    curves: Callable[[str], list[Curve]]  # one family's curves
    judged: tuple[Judged, ...]
    target: float | None = None  # judge_table's target_error (None: the report's default)
    noise: Noise = field(default_factory=lambda: Noise(rho=0.6))
    data_seeds: int = 3
    seeds: int = 2
    eval_curves: bool = False
    families_per_sweep: int = 10


# --- the scenarios ---------------------------------------------------------------------


def gain_cell(gain: float, *, scratch_factor: float = 1.0, scratch_penalty=(1.25, 1.0, 1.25),
              falling: float = 0.0, probe: float | None = None, sizes=(PAPER_SIZES[0],),
              shifts=("none",)) -> Callable[[str], list[Curve]]:  # fmt: skip
    """Scratch N^-0.5 + 0.01 (times ``scratch_factor``: a scratch run that reaches only that
    multiple of its converged error) and fine-tuning on N worth scratch on ``gain`` N.
    ``probe``: budget probes of scratch improving by that share, as a sweep runs them
    (largest N, every rate, first seed and data seed; fine-tuning is not probed)."""

    def build(family: str) -> list[Curve]:
        out = []
        for shift in shifts:
            for size in sizes:
                group = (family, shift, size)
                out.append(Curve(family, shift, size, "scratch", scratch_factor * scratch_error(N_GRID), group=group,
                                 penalty=scratch_penalty, still_falling=falling, probe_gain=probe))  # fmt: skip
                out.append(Curve(family, shift, size, "finetune", scratch_error(gain * N_GRID), pretrain_family=family,
                                 group=group))  # fmt: skip
        return out

    return build


def lower_bound_target(gain: float) -> float:
    """An error fine-tuning reaches at 0.9 x its smallest N: the gain there is a lower bound."""
    return float(scratch_error(gain * LB_FRACTION * N_GRID[0]))


def _claim1_scenarios() -> list[Scenario]:
    out = []
    for gain in (8.0, 9.0, 9.8):
        for seeds_key, data_seeds in (("3ds", 3), ("1ds", 1)):
            for lb in (False, True):
                where = f"target {lower_bound_target(gain):.4g}: fine-tuning's at 0.9 N_min" if lb else "default target"
                out.append(
                    Scenario(
                        key=f"gain{gain:g}-{seeds_key}" + ("-lb" if lb else ""),
                        truth=f"true gain {gain:g} at every target; {data_seeds} data seed(s); {where}",
                        curves=gain_cell(gain),
                        judged=(Judged(1, 1),),
                        target=lower_bound_target(gain) if lb else None,
                        data_seeds=data_seeds,
                    )
                )
    return out


def size_cell(scratch: list[tuple[float, float]], finetune: list[tuple[float, float]] | None = None,
              gain: float | None = None) -> Callable[[str], list[Curve]]:  # fmt: skip
    """Four sizes (the paper's), each with scratch a N^-0.5 + c; fine-tuning either worth
    ``gain`` times the examples, or its own (a, c)."""

    def build(family: str) -> list[Curve]:
        out = []
        for i, size in enumerate(PAPER_SIZES):
            group = (family, size)
            a_s, c_s = scratch[i]
            out.append(Curve(family, "none", size, "scratch", scratch_error(N_GRID, a_s, c_s), group=group))
            truth = scratch_error(gain * N_GRID, a_s, c_s) if gain else scratch_error(N_GRID, *finetune[i])
            out.append(Curve(family, "none", size, "finetune", truth, pretrain_family=family, group=group))
        return out

    return build


FLAT_SCRATCH = [(1.0, 0.012), (0.9, 0.009), (0.8, 0.006), (0.7, 0.004)]  # larger models: lower curves
CENSORED_FT = [(0.1, 0.002), (0.095, 0.002), (0.09, 0.002), (0.085, 0.002)]
CENSORED_GAINS = (31.6, 20.3)
# Sizes 1-2: the same floor as fine-tuning, so the gain is (a_s / a_ft)^2 at every target;
# sizes 3-4: scratch levels off at 0.045, above the default target (about 0.032): no N gets there.
CENSORED_SCRATCH = [(CENSORED_FT[i][0] * math.sqrt(g), 0.002) for i, g in enumerate(CENSORED_GAINS)]
CENSORED_SCRATCH += [(0.4, 0.045), (0.4, 0.045)]


def zero_shot_cell(levels=(0.15, 0.15, 0.15), gain: float = 30.0) -> Callable[[str], list[Curve]]:
    """One size, three shifts: scratch and fine-tuning (worth ``gain``) at each, and the
    pre-trained model's zero-shot error ``levels`` (none, moderate, large)."""

    def build(family: str) -> list[Curve]:
        size, out = PAPER_SIZES[1], []
        for shift, level in zip(("none", "moderate", "large"), levels, strict=True):
            group = (family, shift)
            out.append(Curve(family, shift, size, "scratch", scratch_error(N_GRID), group=group))
            out.append(Curve(family, shift, size, "finetune", scratch_error(gain * N_GRID), pretrain_family=family,
                             group=group))  # fmt: skip
            out.append(Curve(family, shift, size, "zeroshot", np.array([level]), pretrain_family=family))
        return out

    return build


def nothing_cell(family: str) -> list[Curve]:
    """Two sizes, three shifts, pre-trained on the mixture: every error 1.0 (predicting
    zero; the mean field is no better), scratch, fine-tune and zero-shot alike."""
    out, flat = [], np.ones(len(N_GRID))
    for shift in ("none", "moderate", "large"):
        for size in PAPER_SIZES[:2]:
            group = (family, shift, size)
            kw = {"penalty": (1.02, 1.0, 1.02), "mean_field": 1.0}
            out.append(Curve(family, shift, size, "scratch", flat, group=group, **kw))
            out.append(Curve(family, shift, size, "finetune", flat, pretrain_family="mixture", group=group,
                             extra_inputs=2, **kw))  # fmt: skip
            out.append(Curve(family, shift, size, "zeroshot", np.ones(1), pretrain_family="mixture", extra_inputs=2,
                             mean_field=1.0))  # fmt: skip
    return out


def mixture_cell(family: str) -> list[Curve]:
    """Scratch, and fine-tuning from the mixture worth 0.9 x the examples: no better than scratch."""
    size, group = PAPER_SIZES[0], (family,)
    return [
        Curve(family, "none", size, "scratch", scratch_error(N_GRID), group=group),
        Curve(family, "none", size, "finetune", scratch_error(0.9 * N_GRID), "mixture", group, extra_inputs=2),
    ]


def apparent_gain(gain: float, factor: float) -> float:
    """The gain an analysis would read at the default target (fine-tuning's error at its
    smallest N) from a scratch curve ``factor`` times too high."""
    target = float(scratch_error(gain * N_GRID[0]))
    return float(examples_needed(target, factor * A, B, factor * C) / N_GRID[0])


BOTH = (SUPPORTS, CONTRADICTS)
SCENARIOS: tuple[Scenario, ...] = (
    *_claim1_scenarios(),
    Scenario(
        "flat-trend-3ds",
        "true gain 20 at every size and target (4 sizes, scratch floors 0.012 .. 0.004); 3 data seeds",
        size_cell(FLAT_SCRATCH, gain=20.0),
        (Judged(2, 1, BOTH),),
    ),
    Scenario(
        "flat-trend-1ds",
        "as flat-trend-3ds with 1 data seed",
        size_cell(FLAT_SCRATCH, gain=20.0),
        (Judged(2, 1, BOTH),),
        data_seeds=1,
    ),
    Scenario(
        "censored-trend",
        "true gains 31.6, 20.3, inf, inf over 4 sizes (the largest two: scratch levels off at 0.045, above the "
        "target ~0.032); 3 data seeds",
        size_cell(CENSORED_SCRATCH, finetune=CENSORED_FT),
        (Judged(2, 1, (CONTRADICTS,)),),
    ),
    Scenario(
        "zeroshot-tied",
        "zero-shot error 0.15 at every shift (5% noise per data seed); fine-tuning (gain 30) recovers clearly; "
        "3 data seeds",
        zero_shot_cell(),
        (Judged(4, 1, BOTH),),
    ),
    Scenario(
        "learned-nothing",
        "every error 1.0 (predicting zero; mean field 1.0): 2 sizes x 3 shifts, mixture pre-training; 3 data seeds",
        nothing_cell,
        (Judged(1, 6, BOTH), Judged(2, 3, BOTH), Judged(3, 6, BOTH), Judged(4, 2, BOTH)),
    ),
    Scenario(
        "mixture-tied",
        "fine-tuning from the mixture worth 0.9x scratch's examples (5% worse at the smallest N); 3 data seeds",
        mixture_cell,
        (Judged(3, 1, (SUPPORTS,)),),
    ),
    Scenario(
        "undertrained-scratch",
        f"true gain 7; scratch reaches 2x its converged error at every N (apparent gain "
        f"{apparent_gain(7.0, 2.0):.0f}), its best rate the grid's largest, validation still falling 5% over the "
        "last 10%, budget probes improving 40%; 3 data seeds",
        gain_cell(7.0, scratch_factor=2.0, scratch_penalty=(1.3, 1.15, 1.0), falling=0.05, probe=0.4),
        (Judged(1, 1),),
        eval_curves=True,
    ),
    Scenario(
        "power-gain30",
        "true gain 30; 3 data seeds; clean diagnostics (interior rate of 3, validation flat at the end, budget "
        "probes improving 3%)",
        gain_cell(30.0, falling=0.0, probe=0.03),
        (Judged(1, 1, (CONTRADICTS,), power=True),),
        eval_curves=True,
    ),
    Scenario(
        "power-gain30-noprobes",
        "as power-gain30 without budget probes (whether the probes' check, not the gain, costs power)",
        gain_cell(30.0, falling=0.0),
        (Judged(1, 1, (CONTRADICTS,), power=True),),
        eval_curves=True,
    ),
    Scenario(
        "power-gain15-1ds",
        "true gain 15, 1 data seed (its intervals widened x2): clean diagnostics, no budget probes",
        gain_cell(15.0, falling=0.0),
        (Judged(1, 1, (CONTRADICTS,), power=True),),
        data_seeds=1,
        eval_curves=True,
    ),
    Scenario(
        "power-gain15-3ds",
        "as power-gain15-1ds with 3 data seeds",
        gain_cell(15.0, falling=0.0),
        (Judged(1, 1, (CONTRADICTS,), power=True),),
        eval_curves=True,
    ),
    Scenario(
        "power-gain30-lb",
        f"as power-gain30 at fine-tuning's error at 0.9 N_min ({lower_bound_target(30.0):.4g}): "
        "lower bound ~27 vs true 30",
        gain_cell(30.0, falling=0.0, probe=0.03),
        (Judged(1, 1, (CONTRADICTS,), power=True),),
        target=lower_bound_target(30.0),
        eval_curves=True,
    ),
)


# --- counting --------------------------------------------------------------------------


@dataclass
class Tally:
    cells: int = 0
    supports: int = 0
    contradicts: int = 0
    other: Counter = field(default_factory=Counter)  # undecided reasons (and "missing", "error")

    @property
    def undecided(self) -> int:
        return sum(self.other.values())

    def add(self, verdict: str) -> None:
        self.cells += 1
        if verdict == SUPPORTS:
            self.supports += 1
        elif verdict == CONTRADICTS:
            self.contradicts += 1
        else:
            self.other[verdict] += 1


def upper_limit(k: int, n: int, level: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper limit of a binomial share."""
    return 1.0 if k >= n else float(beta_dist.ppf(level, k + 1, n - k))


def lower_limit(k: int, n: int, level: float = 0.95) -> float:
    """One-sided Clopper-Pearson lower limit of a binomial share."""
    return 0.0 if k <= 0 else float(beta_dist.ppf(1 - level, k, n - k + 1))


def _reason(verdict) -> str:
    text = str(verdict)
    return text.split(":")[0].strip() if len(text) > 60 else text


def run_scenario(scenario: Scenario, cells: int, seed: int, n_boot: int, notes: list[str]) -> tuple[dict, float]:
    """Tallies per judged claim, and the seconds it took."""
    started = time.perf_counter()
    rng = np.random.default_rng([seed, zlib.crc32(scenario.key.encode())])
    families = max(math.ceil(cells / j.cells_per_family) for j in scenario.judged)
    tallies = {j.claim: Tally() for j in scenario.judged}
    no_column: set[int] = set()
    errors: Counter = Counter()
    for sweep, first in enumerate(range(0, families, scenario.families_per_sweep)):
        names = [f"f{i:03d}" for i in range(first, min(families, first + scenario.families_per_sweep))]
        curves = [c for name in names for c in scenario.curves(name)]
        df = draw_table(curves, N_GRID, rng, scenario.noise, scenario.data_seeds, scenario.seeds, LRS3,
                        scenario.eval_curves)  # fmt: skip
        try:
            findings = judge_table(df, target_error=scenario.target, n_boot=n_boot, seed=seed * 100_003 + sweep)
        except Exception as exc:  # the analysis is being rewritten: count, report, go on
            errors[f"{type(exc).__name__}: {exc}"[:160]] += 1
            for j in scenario.judged:
                for _ in range(j.cells_per_family * len(names)):
                    tallies[j.claim].add("error (judge_table raised)")
            continue
        for j in scenario.judged:
            table = findings.cells.get(j.claim)
            expected = j.cells_per_family * len(names)
            if table is None or table.empty:
                verdicts = []
            elif "verdict" not in table:
                no_column.add(j.claim)
                verdicts = ["no verdict column"] * len(table)
            else:
                verdicts = list(table["verdict"])
            for v in verdicts:
                tallies[j.claim].add(v if v in (SUPPORTS, CONTRADICTS) else _reason(v))
            for _ in range(expected - len(verdicts)):
                tallies[j.claim].add("missing (no row for the cell)")
            if len(verdicts) > expected:
                notes.append(f"{scenario.key}, claim {j.claim}: {len(verdicts)} rows for {expected} cells in a sweep")
    for claim in sorted(no_column):
        notes.append(f"{scenario.key}: Findings.cells[{claim}] has no 'verdict' column; its cells counted undecided")
    for message, n in errors.items():
        notes.append(f"{scenario.key}: judge_table raised in {n} sweep(s): {message}")
    return tallies, time.perf_counter() - started


@dataclass
class Adaptive:
    """The adaptive mode's settings and, per scenario, the trained trials each run used."""

    rounds: int = 3
    max_data_seeds: int = 6
    n_rule: bool = False  # the grid starts at N_GRID[2:-2]; the N rule may reveal N out to N_GRID's ends
    trials: Counter = field(default_factory=Counter)  # "static" | "adaptive" -> trained trials drawn
    decided: Counter = field(default_factory=Counter)  # "static" | "adaptive" -> cells decided (either way)
    added_rounds: Counter = field(default_factory=Counter)  # rounds that added data seeds -> sweeps


CELL = ["family", "shift", "width", "modes", "layers"]


def _grid(scenario: Scenario, n_values=N_GRID) -> object:
    """The fields of a preset the rules read, for a synthetic sweep (its families are not real ones)."""
    from types import SimpleNamespace

    return SimpleNamespace(lrs=LRS3, n_train=tuple(int(n) for n in n_values), pretrain_families=("synthetic",),
                           seeds=tuple(range(scenario.seeds)), datasets={})  # fmt: skip


N_START = N_GRID[2:-2]  # --n-rule: the planned grid's N (32 .. 8,192); the rule may add N_GRID's ends


def adaptive_rounds(full, scenario: Scenario, settings: Adaptive, n_boot: int, judge_seed: int):
    """Judge the sweep ``full`` (drawn with settings.max_data_seeds data seeds) at the
    scenario's data seeds (and, with settings.n_rule, at N_START only), then reveal the
    data seeds (and N) the rules ask for, round by round.
    Returns (static findings, adaptive findings, static trials, adaptive trials)."""
    from fno_analysis.verdicts import CONTRADICTS as C
    from fno_analysis.verdicts import NOT_LEARNED, CellDoubts
    from fno_analysis.verdicts import SUPPORTS as S

    # With the N rule, N may be revealed out to N_GRID's ends; without it the rule's own
    # limits stand (its additions then only keep a cell from the data-seed rule).
    reach = {"max_n": int(N_GRID[-1]), "min_n": int(N_GRID[0])} if settings.n_rule else {}
    limits = AdaptiveSettings(max_rounds=settings.rounds, max_data_seeds=settings.max_data_seeds, **reach)
    grid = _grid(scenario, N_START if settings.n_rule else N_GRID)
    cell_of = list(zip(*(full[k] for k in CELL), strict=True))
    shown = {c: scenario.data_seeds for c in set(cell_of)}  # data seeds revealed per cell
    # N revealed per curve (cell, mode); zero-shot rows have no N to reveal.
    curve_of = [(*c, m) for c, m in zip(cell_of, full["mode"], strict=True)]
    start = {int(n) for n in grid.n_train}
    n_shown = {c: set(start) for c in set(curve_of)}
    trained = full["mode"].isin(("scratch", "finetune")).to_numpy()
    n_of = full["n_train"].to_numpy()

    def table():
        limit = np.array([shown[c] for c in cell_of])
        keep = full["data_seed"].to_numpy() < limit
        keep &= ~trained | np.array([int(n) in n_shown[c] for c, n in zip(curve_of, n_of, strict=True)])
        return full[keep].reset_index(drop=True)

    df = table()
    analysis = adaptive.analyse(df, n_boot=n_boot, seed=judge_seed, target_error=scenario.target)
    static, static_trials = analysis.findings, int((df["mode"].isin(("scratch", "finetune"))).sum())
    for round_number in range(1, settings.rounds + 1):
        cells = analysis.findings.cells.get(1)
        if cells is None or cells.empty:
            break
        doubts, candidates, revealed = CellDoubts(analysis.flags), [], False
        for _, cell in cells.iterrows():
            if cell["verdict"] in (S, C, NOT_LEARNED):
                continue
            here, _, gain = adaptive.cell_rules(grid, analysis, cell, limits, doubts)
            for addition in here:  # the N rule's additions are revealed; rates are not in the truth
                if addition.axis != "n_train" or not settings.n_rule:
                    continue
                for spec in addition.specs:
                    key = (*(cell[k] for k in CELL), spec["mode"])
                    if key in n_shown and spec["n_train"] not in n_shown[key]:
                        n_shown[key].add(spec["n_train"])
                        revealed = True
            if gain is not None and not here:
                candidates.append((cell, gain))
        plan, _ = adaptive.seed_plan(analysis, candidates, limits, [])
        if not plan and not revealed:
            break
        if plan and df["data_seed"].nunique() == 1:  # every curve of the sweep gets them (the rule's one-seed case)
            shown.update(dict.fromkeys(shown, max(plan.values())))
        else:
            for key, k in plan.items():
                shown[tuple(key[:5])] = max(shown[tuple(key[:5])], k)
        settings.added_rounds[round_number] += 1
        df = table()
        analysis = adaptive.analyse(df, n_boot=n_boot, seed=judge_seed, target_error=scenario.target)
    return static, analysis.findings, static_trials, int((df["mode"].isin(("scratch", "finetune"))).sum())


def run_adaptive_scenario(scenario: Scenario, cells: int, seed: int, n_boot: int, notes: list[str],
                          settings: Adaptive) -> tuple[dict, dict, float]:  # fmt: skip
    """Tallies per judged claim, static and adaptive, and the seconds it took."""
    started = time.perf_counter()
    rng = np.random.default_rng([seed, zlib.crc32(scenario.key.encode())])
    families = max(math.ceil(cells / j.cells_per_family) for j in scenario.judged)
    tallies = {"static": {j.claim: Tally() for j in scenario.judged},
               "adaptive": {j.claim: Tally() for j in scenario.judged}}  # fmt: skip
    drawn = max(scenario.data_seeds, settings.max_data_seeds)
    for sweep, first in enumerate(range(0, families, scenario.families_per_sweep)):
        names = [f"f{i:03d}" for i in range(first, min(families, first + scenario.families_per_sweep))]
        curves = [c for name in names for c in scenario.curves(name)]
        full = draw_table(curves, N_GRID, rng, scenario.noise, drawn, scenario.seeds, LRS3, scenario.eval_curves)
        static, final, n_static, n_adaptive = adaptive_rounds(full, scenario, settings, n_boot, seed * 100_003 + sweep)
        settings.trials["static"] += n_static
        settings.trials["adaptive"] += n_adaptive
        for name, findings in (("static", static), ("adaptive", final)):
            for j in scenario.judged:
                table = findings.cells.get(j.claim)
                verdicts = [] if table is None or table.empty else list(table["verdict"])
                for v in verdicts:
                    tallies[name][j.claim].add(v if v in (SUPPORTS, CONTRADICTS) else _reason(v))
                    settings.decided[name] += v in (SUPPORTS, CONTRADICTS)
                for _ in range(j.cells_per_family * len(names) - len(verdicts)):
                    tallies[name][j.claim].add("missing (no row for the cell)")
    return tallies["static"], tallies["adaptive"], time.perf_counter() - started


ADAPTIVE_HEADER = ["scenario", "claim", "cells", "static: supports / contradicts", "adaptive: supports / contradicts",
                   "wrong share, static -> adaptive [95% upper]", "goal (adaptive)", "trained trials per decided cell, "
                   "static -> adaptive", "sweeps adding seeds in rounds 1/2/3", "s"]  # fmt: skip


def adaptive_rows(scenario: Scenario, static: dict, final: dict, settings: Adaptive, seconds: float) -> list:
    rows = []
    for j in scenario.judged:
        out = []
        for t in (static[j.claim], final[j.claim]):
            n = t.cells
            if j.power:
                out.append((t.contradicts, f"power {_pct(t.supports, n)} [>= {lower_limit(t.supports, n):.1%}]",
                            n > 0 and t.supports / n >= POWER_GOAL))  # fmt: skip
            else:
                k = (t.supports if SUPPORTS in j.wrong else 0) + (t.contradicts if CONTRADICTS in j.wrong else 0)
                out.append((k, "", n > 0 and k / n <= WRONG_GOAL))
        (k0, m0, _), (k1, m1, met) = out
        n = final[j.claim].cells
        per = [settings.trials[x] / settings.decided[x] if settings.decided[x] else math.inf
               for x in ("static", "adaptive")]  # fmt: skip
        goal = f"power >= {POWER_GOAL:.0%}" if j.power else f"wrong <= {WRONG_GOAL:.1%}"
        rounds = "/".join(str(settings.added_rounds[r]) for r in range(1, settings.rounds + 1))
        rows.append([
            scenario.key, str(j.claim), str(n),
            f"{_pct(static[j.claim].supports, n)} / {_pct(static[j.claim].contradicts, n)}",
            f"{_pct(final[j.claim].supports, n)} / {_pct(final[j.claim].contradicts, n)}",
            f"{_pct(k0, n)} -> {_pct(k1, n)} [<= {upper_limit(k1, n):.1%}]" + (f"; {m0} -> {m1}" if j.power else ""),
            f"{goal}: {'met' if met else 'MISSED'}", f"{per[0]:.0f} -> {per[1]:.0f}", rounds, f"{seconds:.0f}",
        ])  # fmt: skip
    return rows


def _pct(k: int, n: int) -> str:
    return f"{k / n:.1%}" if n else "-"


def table_rows(scenario: Scenario, tallies: dict, seconds: float) -> list[list[str]]:
    rows = []
    for j in scenario.judged:
        t = tallies[j.claim]
        n = t.cells
        if j.power:
            wrong_k = t.contradicts
            measure = f"power {_pct(t.supports, n)} [>= {lower_limit(t.supports, n):.1%}]"
            met = n > 0 and t.supports / n >= POWER_GOAL
        else:
            wrong_k = (t.supports if SUPPORTS in j.wrong else 0) + (t.contradicts if CONTRADICTS in j.wrong else 0)
            measure = ""
            met = n > 0 and wrong_k / n <= WRONG_GOAL
        wrong = f"{_pct(wrong_k, n)} [<= {upper_limit(wrong_k, n):.1%}]" if n else "-"
        goal = f"power >= {POWER_GOAL:.0%}" if j.power else f"wrong <= {WRONG_GOAL:.1%}"
        rows.append([
            scenario.key, str(j.claim), scenario.truth, str(n), _pct(t.supports, n), _pct(t.contradicts, n),
            _pct(t.undecided, n), " or ".join(f'"{w}"' for w in j.wrong), wrong + (f"; {measure}" if measure else ""),
            f"{goal}: {'met' if met else 'MISSED'}", f"{seconds:.0f}",
        ])  # fmt: skip
    return rows


HEADER = ["scenario", "claim", "truth", "cells", "supports", "contradicts", "undecided", "wrong verdicts",
          "wrong share [95% upper]", "goal", "s"]  # fmt: skip


def render(rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        align = ["---", "---:", "---", "---:", "---:", "---:", "---:", "---", "---:", "---", "---:"]
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    short = [r[:2] + r[3:] for r in rows]  # the truth goes below, it is long
    head = HEADER[:2] + HEADER[3:]
    widths = [max(len(x) for x in col) for col in zip(head, *short, strict=True)]
    fmt = "  ".join(f"{{:{'<' if i in (0, 6, 8) else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*r) for r in [head, *short])


def code_fingerprint() -> str:
    """A short hash of the analysis package's source, to tell which version of the rules a
    table measured (they are being rewritten)."""
    root = Path(fno_analysis.__file__).resolve().parent
    digest = hashlib.sha1()
    for path in sorted(root.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=200, help="independent cells per scenario and claim")
    parser.add_argument("--scenarios", nargs="*", default=None, help="names or patterns (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates per fit (the report's 200)")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table, to paste into docs/analysis.md")
    parser.add_argument("--list", action="store_true", help="list the scenarios and their truths, and stop")
    parser.add_argument(
        "--adaptive",
        action="store_true",
        help="also run the adaptive rounds' data-seed rule on each sweep (claim-1 scenarios)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="--adaptive: rounds at most (max_rounds)")
    parser.add_argument(
        "--n-rule",
        action="store_true",
        help="--adaptive: the sweeps start at N 32 .. 8,192 and the N rule may add N out to 8 and 32,768",
    )
    parser.add_argument("--max-data-seeds", type=int, default=6, help="--adaptive: data seeds per curve at most")
    args = parser.parse_args(argv)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.key}: claims {', '.join(str(j.claim) for j in s.judged)}; {s.truth}")
        return 0
    patterns = args.scenarios or ["*"]
    chosen = [s for s in SCENARIOS if any(fnmatch.fnmatchcase(s.key, p) for p in patterns)]
    if not chosen:
        parser.error(f"no scenario matches {patterns}; --list names them")
    stamp = time.strftime("%Y-%m-%d %H:%M")
    fingerprint = code_fingerprint()
    print(f"{stamp}, analysis source {fingerprint}: {args.cells} cells per scenario and claim, "
          f"seed {args.seed}, n_boot {args.n_boot}"
          + ("" if args.n_boot == 200 else " (FEWER than the report's 200: intervals noisier than the report's)")
          + "; wrong share: one-sided 95% Clopper-Pearson upper limit in brackets; power: its lower limit\n",
          flush=True)  # fmt: skip
    rows, notes, total = [], [], time.perf_counter()
    if args.adaptive:
        return _main_adaptive(args, chosen, total)
    for scenario in chosen:
        tallies, seconds = run_scenario(scenario, args.cells, args.seed, args.n_boot, notes)
        new = table_rows(scenario, tallies, seconds)
        rows += new
        for j in scenario.judged:
            top = ", ".join(f"{v!r} {n}" for v, n in tallies[j.claim].other.most_common(3))
            if top:
                notes.append(f"{scenario.key}, claim {j.claim}, undecided: {top}")
        print(f"done {scenario.key} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    print(render(rows, args.markdown))
    if not args.markdown:
        print("\ntruths:")
        for s in chosen:
            print(f"  {s.key}: {s.truth}")
    print(f"\ntotal {time.perf_counter() - total:.0f} s")
    if code_fingerprint() != fingerprint:
        notes.append(f"the analysis source changed during the run ({fingerprint} -> {code_fingerprint()}): rerun")
    if notes:
        print("\nnotes:")
        for n in notes:
            print(f"- {n}")
    return 0


def _main_adaptive(args, chosen: list[Scenario], total: float) -> int:
    """--adaptive: claim-1 scenarios only (the rounds act on claim 1), static beside adaptive."""
    chosen = [s for s in chosen if any(j.claim == 1 for j in s.judged)]
    if args.n_rule:
        print(f"N rule on: every sweep starts at N {int(N_START[0])} .. {int(N_START[-1])} and may add N out to "
              f"{int(N_GRID[0])} and {int(N_GRID[-1])}")  # fmt: skip
    print(f"adaptive: up to {args.rounds} rounds, at most {args.max_data_seeds} data seeds per curve; claim-1 "
          f"scenarios: {', '.join(s.key for s in chosen)}\n", flush=True)  # fmt: skip
    rows, notes = [], []
    for scenario in chosen:
        settings = Adaptive(args.rounds, args.max_data_seeds, n_rule=args.n_rule)
        static, final, seconds = run_adaptive_scenario(scenario, args.cells, args.seed, args.n_boot, notes, settings)
        rows += adaptive_rows(scenario, static, final, settings, seconds)
        print(f"done {scenario.key} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    if args.markdown:
        lines = ["| " + " | ".join(ADAPTIVE_HEADER) + " |", "|" + "|".join("---" for _ in ADAPTIVE_HEADER) + "|"]
        print("\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)]))
    else:
        widths = [max(len(x) for x in col) for col in zip(ADAPTIVE_HEADER, *rows, strict=True)]
        for r in [ADAPTIVE_HEADER, *rows]:
            print("  ".join(f"{x:<{w}}" for x, w in zip(r, widths, strict=True)))
    print(f"\ntotal {time.perf_counter() - total:.0f} s")
    for n in notes:
        print(f"- {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
