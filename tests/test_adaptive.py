"""Adaptive rounds (sweeps/adaptive.py): the rules on synthetic tables, the [adaptive]
settings, the dry run, and a tiny adaptive sweep stopped after a recorded round and resumed."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from synthetic import result_row
from tiny_sweep import TINY

from fno_sweeps import adaptive, scaling
from fno_sweeps.grid import AdaptiveSettings, Preset, expand, spec_trials
from fno_sweeps.manifest import read_rounds, record_round

NS = (2, 4, 8, 16, 32)
LRS = (3e-4, 3e-3)


def _table(ns=NS, lrs=LRS, data_seeds=(0,), scratch=(1.0, 0.5, 0.005), finetune=(0.06, 0.1, 0.002), noise=0.02,
           scratch_best=max, finetune_best=min, seed=0) -> pd.DataFrame:  # fmt: skip
    """One cell (poisson/none/w8-m4 from poisson): scratch a N^-b + c best at ``scratch_best``
    of the rates, fine-tuning best at ``finetune_best``; the other rates 30% worse."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in data_seeds:
        for mode, (a, b, c), best in (("scratch", scratch, scratch_best), ("finetune", finetune, finetune_best)):
            for n in ns:
                for lr in lrs:
                    err = (a * n**-b + c) * (1.0 if lr == best(lrs) else 1.3) * math.exp(noise * rng.normal())
                    row = result_row(mode, 8, n, lr, 0, err, err * 1.05, data_seed=d)
                    row["key"] = f"{mode}-{n}-{lr:g}-{d}"
                    rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def preset():
    return Preset.load("cpu", {"sizes": ["w8-m4"], "shifts": ["none"], "lrs": list(LRS)})


def _by_axis(decision, axis, mode):
    return [a for a in decision.additions if a.axis == axis and a.curve.startswith(mode)]


def test_an_edge_rate_gets_the_next_rate_outward_at_the_same_log_spacing(preset):
    decision = adaptive.decide(preset, adaptive.analyse(_table()), 1)
    (up,) = _by_axis(decision, "lr", "scratch")
    (down,) = _by_axis(decision, "lr", "finetune")
    assert up.values == (3e-2,) and down.values == (3e-5,)  # x10 and /10, the grid's spacing
    assert {s["n_train"] for s in up.specs} == set(NS) and {s["lr"] for s in up.specs} == {3e-2}
    assert "largest run at N 2, 4, 8, 16, 32" in up.reason
    # Rates already two steps beyond the grid: the bound (max_lr_steps = 2) stops the rule, saying so.
    wide = _table(lrs=(3e-4, 3e-3, 3e-2, 3e-1), scratch_best=max)
    decision = adaptive.decide(preset, adaptive.analyse(wide), 2)
    assert not _by_axis(decision, "lr", "scratch")
    assert any("still the largest after 2 steps beyond the grid (max_lr_steps)" in h.reason for h in decision.held)
    # An interior optimum: nothing on the rate axis.
    interior = _table(lrs=(3e-4, 1e-3, 3e-3), scratch_best=lambda r: r[1], finetune_best=lambda r: r[1])
    assert not [a for a in adaptive.decide(preset, adaptive.analyse(interior), 1).additions if a.axis == "lr"]


def test_a_one_rate_grid_steps_half_a_decade_either_side_at_the_end_that_sets_the_gain():
    # The study preset runs one rate: every verdict is blocked by "every point was trained with
    # one learning rate", and the rule had no spacing to step by, so the rounds added nothing
    # for any cell (measured on a slice of the study; docs/study.md). It also printed one
    # "nothing" line per N and curve (10 per cell at 5 N). Now the rates x sqrt(10) and
    # / sqrt(10) are added where they move the gain: scratch's largest N, fine-tuning's
    # smallest; the other N are said once per cell.
    single = Preset.load("cpu", {"sizes": ["w8-m4"], "shifts": ["none"], "lrs": [3e-3]})
    decision = adaptive.decide(single, adaptive.analyse(_table(lrs=(3e-3,))), 1)
    added = {(a.curve.split()[0], a.values): {s["n_train"] for s in a.specs} for a in decision.additions
             if a.axis == "lr"}  # fmt: skip
    assert added == {
        ("scratch", (0.00948683,)): {32},
        ("scratch", (0.000948683,)): {32},
        ("finetune[poisson]", (0.00948683,)): {2},
        ("finetune[poisson]", (0.000948683,)): {2},
    }
    assert any("one rate run: x3.16 larger at N 32, the curve's end that sets the gain" in a.reason
               for a in decision.additions)  # fmt: skip
    lines = [line for line in decision.lines() if "one learning rate" in line]
    assert len(lines) == 1, lines
    assert "scratch poisson/none/w8-m4: one learning rate at N 2, 4, 8, 16, no spacing" in lines[0]
    assert "finetune[poisson] poisson/none/w8-m4: one learning rate at N 4, 8, 16, 32, no spacing" in lines[0]
    # Off (one_rate_step = 1): nothing on the rate axis.
    off = Preset.load("cpu", {"sizes": ["w8-m4"], "shifts": ["none"], "lrs": [3e-3], "adaptive": {"one_rate_step": 1}})
    assert not [a for a in adaptive.decide(off, adaptive.analyse(_table(lrs=(3e-3,))), 1).additions if a.axis == "lr"]


def test_a_censored_gain_doubles_scratch_n_up_to_the_cap(preset):
    analysis = adaptive.analyse(_table())
    gain = analysis.gains.iloc[0]
    assert gain["verdict"] == "lower bound" and gain["n_scratch"] > 32  # scratch past its largest N
    (more,) = _by_axis(adaptive.decide(preset, analysis, 1), "n_train", "scratch")
    assert more.values == (64, 128) and "gain censored at >= 16" in more.reason
    assert {(s["n_train"], s["lr"]) for s in more.specs} == {(n, lr) for n in (64, 128) for lr in LRS}
    assert more.line().startswith("scratch poisson/none/w8-m4: N 64, 128 (gain censored at >= 16")
    capped = adaptive.decide(preset, analysis, 1, AdaptiveSettings(max_n=64))
    assert _by_axis(capped, "n_train", "scratch")[0].values == (64,)
    stopped = adaptive.decide(preset, analysis, 1, AdaptiveSettings(max_n=32))
    assert not _by_axis(stopped, "n_train", "scratch")
    assert any("2 x 32 > max_n 32" in h.reason for h in stopped.held)


def test_fine_tuning_below_the_target_at_its_smallest_n_gets_smaller_n(preset):
    analysis = adaptive.analyse(_table(), target_error=0.3)  # scratch gets there at N ~ 11; fine-tuning at once
    (fewer,) = _by_axis(adaptive.decide(preset, analysis, 1), "n_train", "finetune")
    assert fewer.values == (1,) and "fine-tuning is below 0.3 at its smallest N 2" in fewer.reason
    assert adaptive.decide(preset, analysis, 1, AdaptiveSettings(min_n=2)).held  # at min_n: held, with why


def test_cells_that_learned_nothing_get_nothing_and_say_why(preset):
    flat = _table(scratch=(0.0, 0.5, 1.2), finetune=(0.0, 0.5, 1.1))  # worse than predicting zero
    decision = adaptive.decide(preset, adaptive.analyse(flat), 1)
    assert not decision.additions
    assert [h.reason for h in decision.held] == ["the models learned nothing here: no trial can make it a verdict"]
    assert decision.stop == "every claim-1 verdict it can act on is decided"  # none it can act on


def test_the_power_projection_adds_the_fewest_data_seeds_that_can_decide():
    # half-width log(20 / 8) = 0.92 at 3 seeds, distance log 2 = 0.69: 4 seeds project 0.59.
    k, words = adaptive.seeds_needed(20.0, 8.0, 50.0, 10.0, k=3, widening=1.0, widening_after=1.0, most=8)
    assert k == 4 and "< distance 0.69" in words
    assert adaptive.seeds_needed(20.0, 8.0, 50.0, 10.0, 3, 1.0, 1.0, most=3)[0] is None
    assert adaptive.seeds_needed(10.5, 2.0, 60.0, 10.0, 3, 1.0, 1.0, most=8)[0] is None  # too close to call
    assert adaptive.seeds_needed(16.0, 1.8, math.inf, 10.0, 1, 2.0, 1.0, most=4)[0] is None  # an open bound


def test_the_data_seed_rule_extends_every_curve_of_a_one_seed_sweep(preset):
    # A clean cell (interior rates, gain 16 measured) whose one-seed interval, widened, crosses 10.
    interior = {"lrs": (3e-4, 1e-3, 3e-3), "scratch_best": lambda r: r[1], "finetune_best": lambda r: r[1]}
    table = _table(**interior, scratch=(1.0, 0.5, 0.0), finetune=(0.25, 0.5, 0.0), noise=0.05)
    decision = adaptive.decide(preset, adaptive.analyse(table), 1, AdaptiveSettings(max_data_seeds=6))
    (seeds,) = decision.additions
    assert seeds.axis == "data_seed" and seeds.curve == "every trained curve" and seeds.values == (1, 2, 3, 4)
    assert "projected log half-width" in seeds.reason and "one data seed" in seeds.reason
    # Whole curves: every N and rate of both curves, at the new seeds only.
    assert {(s["mode"], s["n_train"], s["lr"]) for s in seeds.specs} == {
        (m, n, lr) for m in ("scratch", "finetune") for n in NS for lr in interior["lrs"]
    }
    assert {s["data_seed"] for s in seeds.specs} == {1, 2, 3, 4}
    # Where the cap on data seeds cannot decide it: nothing, and the projection says why.
    held = adaptive.decide(preset, adaptive.analyse(table), 1, AdaptiveSettings(max_data_seeds=3))
    assert not held.additions and "even 3 data seeds (max_data_seeds)" in held.held[0].reason


def test_decisions_round_trip_through_json_and_rebuild_the_same_trials(preset):
    decision = adaptive.decide(preset, adaptive.analyse(_table()), 1)
    again = adaptive.Decision.from_json(json.loads(json.dumps(decision.to_json())))
    assert again == decision
    keys = [t.key for t in spec_trials(preset, again.specs)]
    assert len(keys) == len(set(keys)) == len(decision.specs)
    # A grid position on the preset's own grid gets the grid trial's key.
    grid = {t.key for t in expand(preset)}
    on_grid = [dict(s, lr=3e-3) for s in again.specs if s["lr"] == 3e-2]
    assert {t.key for t in spec_trials(preset, on_grid)} <= grid


def test_the_static_grid_holds_every_value_the_rounds_can_add(preset):
    static = adaptive.static_preset(preset, AdaptiveSettings(max_n=128, min_n=1, max_lr_steps=1, max_data_seeds=3))
    assert static.lrs == pytest.approx((3e-5, 3e-4, 3e-3, 3e-2))
    assert static.n_train == (1, 2, 4, 8, 16, 32, 64, 128) and static.data_seeds == (0, 1, 2)


@pytest.mark.parametrize(
    "override, message",
    [
        ("adaptive.max_rounds=0", "adaptive.max_rounds must be a whole number >= 1, got 0"),
        ("adaptive.max_trial_hours=-1", "adaptive.max_trial_hours must be a number of hours > 0, got -1"),
        ("adaptive.max_n=0", "adaptive.max_n must be a whole number >= 1 or unset, got 0"),
        ("adaptive.one_rate_step=0.5", "adaptive.one_rate_step must be a factor >= 1 (1: off), got 0.5"),
        ("adaptive.enabled=2", "adaptive.enabled must be true or false, got 2"),
        ("adaptive.rounds=2", "unknown [adaptive] fields ['rounds']; allowed: ['enabled', 'max_data_seeds'"),
    ],
)
def test_bad_adaptive_fields_are_refused_before_ray_starts(override, message, tmp_path, capsys):
    assert scaling.main(["--out", str(tmp_path), "--adaptive", "--set", override]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_dry_run_adaptive_prints_the_cap_and_the_worst_case(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--dry-run", "--adaptive", "--throughput", "1e9", "--set", "adaptive.max_n=64"]
    assert scaling.main(argv) == 0
    out = capsys.readouterr().out
    assert "adaptive: up to 3 rounds after the grid; limits: scratch N up to 64 (max_n)" in out
    assert "adaptive cap: 1 trial-hours of added trials (max_trial_hours); worst case" in out or (
        "adaptive cap:" in out and "(max_trial_hours); worst case, the static grid" in out
    )
    assert "N 1, 2, 4, 8, 16, 32, 64; data seeds 0, 1, 2, 3" in out and "more trials" in out
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


# A tiny sweep with a fit: three N, two rates (every choice at an edge), one shift.
TINY_ADAPTIVE = [*TINY, "--set", 'shifts=["none"]', "--set", "n_train=[2,4,8]", "--set", "lrs=[1e-3,1e-2]",
                 "--no-report", "--adaptive"]  # fmt: skip


def _final_verdicts(sweep_dir) -> dict:
    from fno_analysis.points import read_table

    cells = adaptive.analyse(read_table(sweep_dir)).findings.cells[1]
    return {adaptive.cell_label(c): c["verdict"] for _, c in cells.iterrows()}


def _round_specs(sweep_dir) -> list:
    return [sorted(json.dumps(s, sort_keys=True) for a in r["additions"] for s in a["specs"])
            for r in read_rounds(sweep_dir)]  # fmt: skip


def test_an_adaptive_sweep_killed_in_its_second_round_resumes_with_the_same_trials_and_verdicts(tmp_path, capsys):
    import shutil

    import pyarrow.parquet as pq

    from fno import results
    from fno.storage import location
    from fno_analysis.points import read_table

    argv = ["--no-dashboard", *TINY_ADAPTIVE, "--set", "adaptive.max_rounds=2"]
    assert scaling.main(["--out", str(tmp_path / "ref"), *argv]) == 0  # the reference: two rounds in one run
    out = capsys.readouterr().out
    assert "adaptive round 1: " in out and "adaptive round 2: " in out and "max_rounds 2 reached" in out
    assert "  scratch poisson/none/w8-m4: lr 0.1 (the chosen rate is the largest run at N" in out
    ref = location(tmp_path / "ref" / "cpu")
    # The same sweep killed in round 2 after recording it, before any of its trials wrote a row.
    shutil.copytree(tmp_path / "ref", tmp_path / "cut")
    cut = location(tmp_path / "cut" / "cpu")
    preset = Preset.load("cpu", scaling.parse_set_flags([a for a in TINY_ADAPTIVE if "=" in a]))
    second = [t.key for t in spec_trials(preset, adaptive.Decision.from_json(read_rounds(cut)[1]).specs)]
    assert second
    rows = results.read_results(cut / "results")
    for f in (tmp_path / "cut" / "cpu" / "results").glob("*.parquet"):
        f.unlink()
    kept = rows.filter(pa_not_in(rows, second))
    pq.write_table(kept, tmp_path / "cut" / "cpu" / "results" / "part-1.parquet")
    assert len(read_table(cut)) == len(read_table(ref)) - len(second)
    assert scaling.main(["--out", str(tmp_path / "cut"), *argv]) == 0
    out = capsys.readouterr().out
    assert "adaptive round 2 (recorded)" in out and f"ran {len(second)} trials" in out
    assert "adaptive round 2: " not in out and "adaptive round 3" not in out  # replayed, not decided again
    assert _round_specs(cut) == _round_specs(ref)  # the same trials, round by round
    assert set(read_table(cut)["key"]) == set(read_table(ref)["key"])
    assert _final_verdicts(cut) == _final_verdicts(ref)


def pa_not_in(table, keys):
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.invert(pc.is_in(table["key"], value_set=pa.array(keys)))


def test_rounds_recorded_in_the_manifest_survive_its_rewrites(tmp_path, preset):
    from fno.storage import location
    from fno_sweeps.manifest import record_study

    sweep = location(tmp_path)
    record_study(sweep, preset)
    decision = adaptive.decide(preset, adaptive.analyse(_table()), 1)
    record_round(sweep, decision.to_json())
    record_round(sweep, {**decision.to_json(), "round": 2, "additions": []})
    record_round(sweep, {**decision.to_json(), "round": 2, "stop": "again"})  # the same number: replaced
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x.parquet").write_bytes(b"")  # a study with rows: an extension, not a redefinition
    record_study(sweep, Preset.load("cpu", {"sizes": ["w8-m4"], "shifts": ["none"], "lrs": [*LRS, 3e-2]}))
    rounds = read_rounds(sweep)
    assert [r["round"] for r in rounds] == [1, 2] and rounds[1]["stop"] == "again"
    assert adaptive.Decision.from_json(rounds[0]) == decision


def test_the_report_shows_the_rounds_and_what_each_added(preset):
    from fno_analysis.report.build import build_report, text_sections

    table = _table()
    for column, value in (("wall_s", 1.0), ("error", "")):
        table[column] = value
    decision = adaptive.decide(preset, adaptive.analyse(table), 1)
    last = {"round": 2, "additions": [], "held": [], "hours": 0.0, "stop": "this round adds nothing"}
    report = build_report(table, n_boot=50, adaptive_rounds=[decision.to_json(), last])
    (rounds,) = [s for s in text_sections(report) if s[0] == "Adaptive rounds"]
    _, paragraphs, tables = rounds
    assert f"ran 2 adaptive rounds ({len(decision.specs)} trials added" in paragraphs[0]
    assert "Stopped: this round adds nothing." in paragraphs[0]
    added = dict(tables)["Trials added by round"]
    assert set(added["axis"]) == {"lr", "n_train"} and (added["round"] == 1).all()
    assert "N 64, 128" not in added["values"].tolist() and "64, 128" in added["values"].tolist()
    # A sweep without rounds has no such section.
    assert "Adaptive rounds" not in [s[0] for s in text_sections(build_report(table, n_boot=50))]
