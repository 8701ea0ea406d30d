"""The report's page and files: the bottom line first, no empty table and no figure twice,
every trial's validation curve, and the folders fno-report refuses."""

import numpy as np
import pandas as pd
import pytest
from synthetic import results_table

from fno_analysis.report import build_report, main
from fno_analysis.report.base import SHORT_CELL, is_blank
from fno_analysis.report.claims import claim_rows


def _one_size_table() -> pd.DataFrame:
    """One size, two shifts, scratch / fine-tune / zero-shot, two rates and two seeds; every
    trained trial with a validation curve of two evaluations (half and all of its 100 steps)."""
    rng = np.random.default_rng(11)
    frames = []
    for shift, offset in (("none", 0.0), ("moderate", 0.02)):
        df = results_table(
            {
                ("scratch", 8): (1.0, 0.5, 0.01 + offset),
                ("finetune", 8): (0.1, 0.5, 0.005 + offset),
                ("zeroshot", 8): (0.0, 0.5, 0.05 + 5 * offset),
            },
            lrs=(1e-3, 3e-3),
            seeds=(0, 1),
            noise=0.05,
            rng=rng,
            n_values=2 ** np.arange(3, 9),
        )
        df["shift"] = shift
        df["key"] = df["key"] + f"-{shift}"
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    trained = df["mode"] != "zeroshot"
    df["eval_steps"] = [[50, 100] if t else [] for t in trained]
    df["eval_val_rel_l2"] = [[2 * v, v] if t else [] for t, v in zip(trained, df["val_rel_l2"], strict=True)]
    return df


@pytest.fixture(scope="module")
def one_size_report():
    return build_report(_one_size_table(), n_boot=30)


def test_the_page_leaves_out_empty_tables_and_figures_another_figure_holds(one_size_report):
    report = one_size_report
    titles = [title for title, _, _ in report.figures]
    # One size: its panel is the across-shifts figure's first, so there is no figure by model size.
    assert not any(t.startswith("Test error vs N by model size") for t in titles)
    assert any(t.startswith("Test error vs N across physics shifts") for t in titles)
    tables = [t for s in report.sections for t in [*s.shown, *s.tables]]
    assert tables and all(len(t.frame) > 0 for t in tables)
    for table in tables:  # no column without a value, so no table of empty columns
        assert not [c for c in table.frame.columns if all(is_blank(v) for v in table.frame[c])], table.title
    assert not any(t.title in ("Surfaces", "Transfer law") for t in tables)  # one size: nothing fitted ...
    laws = next(s for s in report.sections if s.key == "laws")
    assert any(p.startswith("No surface fitted: ") for p in laws.paragraphs)  # ... and the page says why


def test_the_claims_table_is_short_and_says_what_the_findings_say(one_size_report):
    report = one_size_report
    rows = claim_rows(report)
    assert list(rows["claim"]) == [1, 2, 3, 4]
    assert list(rows["verdict"]) == list(report.findings.claims["verdict"])  # presented, never re-judged
    for _, row in rows.iterrows():
        assert len(row["number"]) <= SHORT_CELL + 20 and len(row["reason"]) <= SHORT_CELL + 20
        assert row["reason"] != "" or row["verdict"] in ("supports", "contradicts")
    bottom = next(s for s in report.sections if s.key == "bottom-line").paragraphs[0]
    assert bottom.startswith("Does pre-training beat training from scratch here?") and "By how much" in bottom


def test_every_trials_validation_curve_is_drawn_and_picked_by_curve(one_size_report):
    report = one_size_report
    fig = next(fig for title, _, fig in report.figures if title == "Validation curves per trial")
    trials = report.trials
    assert len(trials) == (report.health["mode"] != "zeroshot").sum()  # every trained trial, no zero-shot
    (menu,) = fig.layout.updatemenus
    assert len(menu.buttons) == 4  # (scratch, fine-tune) x 2 shifts
    for button in menu.buttons:
        shown = [t for t, visible in zip(fig.data, button.args[0]["visible"], strict=True) if visible]
        assert len({(t.meta["shift"], t.meta["mode"]) for t in shown}) == 1  # one curve per choice
        assert len(shown) == 6  # one trace per N
    for trace in fig.data:
        meta = trace.meta
        here = trials[(trials["shift"] == meta["shift"]) & (trials["mode"] == meta["mode"])]
        here = here[here["n_train"] == meta["n_train"]].sort_values(["lr", "seed", "data_seed"])
        expected = [v for curve in here["eval_val_rel_l2"] for v in [*curve, None]]
        assert [None if y is None else pytest.approx(y, rel=1e-3) for y in trace.y] == expected
        assert [x for x in trace.x if x is not None] == [0.5, 1.0] * len(here)  # share of the 100 steps


def _sweep(folder):
    results = folder / "results"
    results.mkdir(parents=True)
    _one_size_table().to_parquet(results / "all.parquet")


def test_fno_report_refuses_an_empty_folder_and_a_results_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert main(["empty"]) == 2
    assert "no results table in empty" in capsys.readouterr().err
    assert list((tmp_path / "empty").iterdir()) == []  # nothing written
    _sweep(tmp_path / "out" / "tiny")
    assert main(["out/tiny/results"]) == 2
    err = capsys.readouterr().err
    assert "this is a results table; run fno-report on its sweep folder: out/tiny" in err
    assert sorted(p.name for p in (tmp_path / "out" / "tiny").rglob("*")) == ["all.parquet", "results"]
    (tmp_path / "started" / "results").mkdir(parents=True)  # a sweep before its first row
    assert main(["started"]) == 2 and "no results table in started" in capsys.readouterr().err
    assert main(["out/tiny", "--n-boot", "20"]) == 0
    written = {p.name for p in (tmp_path / "out" / "tiny").iterdir()}
    assert written == {"results", "report.html", "summary.md", "details.md"}
