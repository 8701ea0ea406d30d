"""Analysis: power-law fits, learning-rate selection, data-efficiency gain, the report."""

import math

import numpy as np
import pandas as pd
import pytest
from synthetic import N_VALUES, result_row, results_table

from fno_analysis.fit import fit_curve, fit_curves, saturating
from fno_analysis.gains import data_efficiency_gain
from fno_analysis.points import select_points


@pytest.mark.parametrize("a,b,c", [(1.0, 0.5, 0.01), (3.0, 0.8, 0.0), (0.5, 0.3, 0.05), (2.0, 1.5, 0.001)])
def test_noise_free_curves_recover_the_exponent(a, b, c):
    fit = fit_curve(N_VALUES, saturating(N_VALUES, a, b, c))
    assert abs(fit["b"] / b - 1) < 1e-6
    assert fit["a"] == pytest.approx(a, rel=1e-5) and fit["c"] == pytest.approx(c, rel=1e-4, abs=1e-9)
    assert fit["rms_log_residual"] < 1e-8 and fit["warning"] == ""
    assert fit["extrapolation_error"] < 1e-6


def test_the_95_percent_interval_covers_the_true_exponent_in_at_least_85_of_100_noisy_replicates():
    # benchmarks/bench_fit.py measures this case with 300 replicates (docs); 100 here vary by about 3.
    rng = np.random.default_rng(2026)
    a, b, c = 1.0, 0.5, 0.01
    covered = 0
    for replicate in range(100):
        noisy = saturating(N_VALUES, a, b, c) * np.exp(rng.normal(0.0, 0.05, len(N_VALUES)))
        fit = fit_curve(N_VALUES, noisy, seed=replicate)
        assert fit["b_lo"] <= fit["b"] <= fit["b_hi"]
        covered += fit["b_lo"] <= b <= fit["b_hi"]
    assert covered >= 85, covered


def test_pure_power_law_is_fitted_in_log_space():
    fit = fit_curve(N_VALUES, 2.0 * N_VALUES**-0.7)
    assert fit["b_pow"] == pytest.approx(0.7, rel=1e-12) and fit["a_pow"] == pytest.approx(2.0, rel=1e-12)


def test_untrustworthy_curves_are_flagged():
    three = fit_curve([8, 16, 32], [0.5, 0.4, 0.3])
    assert "weakly determined" in three["warning"]
    two = fit_curve([8, 16], [0.5, 0.4])
    assert "no fit" in two["warning"] and math.isnan(two["b"])
    steep = fit_curve(N_VALUES, saturating(N_VALUES, 1e6, 8.0, 0.01))  # b far beyond the search range
    assert "did not converge" in steep["warning"]


def test_learning_rate_is_chosen_by_validation_error_not_test_error():
    rows = []
    for n in (8, 16, 32, 64):
        # lr 1e-3: best validation, worse test; lr 1e-2: worse validation, best test.
        rows.append(result_row("scratch", 8, n, 1e-3, 0, test=0.5 / n**0.5, val=0.1))
        rows.append(result_row("scratch", 8, n, 1e-2, 0, test=0.1 / n**0.5, val=0.2))
    points = select_points(pd.DataFrame(rows))
    assert (points["lr"] == 1e-3).all()
    assert np.allclose(points["test_rel_l2"], 0.5 / points["n_train"] ** 0.5)
    fits = fit_curves(pd.DataFrame(rows))
    assert fits["a"].item() == pytest.approx(0.5, rel=1e-5)


def test_seeds_are_averaged_and_their_spread_kept():
    rows = [
        result_row("scratch", 8, n, 1e-3, s, test=0.1 * (1 + s), val=0.1 * (1 + s)) for n in (8, 16) for s in (0, 1)
    ]
    points = select_points(pd.DataFrame(rows))
    assert np.allclose(points["test_rel_l2"], 0.15) and np.allclose(points["test_std"], np.std([0.1, 0.2], ddof=1))
    assert (points["n_seeds"] == 2).all()


def test_failed_and_diverged_rows_are_not_points():
    df = results_table({("scratch", 8): (1.0, 0.5, 0.0)})
    bad = pd.DataFrame([result_row("scratch", 8, 8, 1e-3, 1, 1e-9, 1e-9, status="diverged")])
    points = select_points(pd.concat([df, bad]))
    assert points["test_rel_l2"].min() > 1e-3


def test_data_efficiency_gain_has_the_known_answer():
    # scratch 1 N^-0.5, fine-tune 0.1 N^-0.5: reaching error e takes (1/e)^2 and (0.1/e)^2 examples.
    df = results_table({("scratch", 8): (1.0, 0.5, 0.0), ("finetune", 8): (0.1, 0.5, 0.0)})
    gain = data_efficiency_gain(df, target_error=0.01)
    assert len(gain) == 1
    row = gain.iloc[0]
    assert row["gain"] == pytest.approx(100.0, rel=1e-6)
    assert row["n_scratch"] == pytest.approx(1e4, rel=1e-6) and row["n_finetune"] == pytest.approx(100.0, rel=1e-6)
    assert row["gain_lo"] <= row["gain"] <= row["gain_hi"]
    # With a floor: scratch 1 N^-0.5 + 0.002 needs (1 / (e - 0.002))^2.
    df = results_table({("scratch", 8): (1.0, 0.5, 0.002), ("finetune", 8): (0.1, 0.5, 0.0)})
    row = data_efficiency_gain(df, target_error=0.01).iloc[0]
    assert row["gain"] == pytest.approx((1 / 0.008) ** 2 / (0.1 / 0.01) ** 2, rel=1e-5)


def test_gain_outside_the_fine_tune_range_or_below_the_scratch_floor():
    df = results_table({("scratch", 8): (1.0, 0.5, 0.05), ("finetune", 8): (0.5, 0.5, 0.0)})
    outside = data_efficiency_gain(df, target_error=0.7).iloc[0]  # both below 0.7 at every measured N
    assert outside["verdict"] == "undetermined" and math.isnan(outside["gain"]) and math.isnan(outside["bound"])
    assert "already at the target at its smallest N" in outside["note"]
    floor = data_efficiency_gain(df, target_error=0.03).iloc[0]  # scratch never gets below 0.05
    assert floor["verdict"] == "lower bound" and math.isnan(floor["gain"]) and "never" in floor["note"]
    assert floor["bound"] == pytest.approx(2**15 / (0.5 / 0.03) ** 2)  # largest scratch N / fine-tune N
    suspect = data_efficiency_gain(df, target_error=0.03, floor_artefacts={("poisson", "none", 8, 4, 4)}).iloc[0]
    assert suspect["verdict"] == "not measurable with this budget" and math.isnan(suspect["gain"])
    default = data_efficiency_gain(df).iloc[0]  # the fine-tune curve's error at its smallest N
    assert default["target_error"] == pytest.approx(0.5 / 8**0.5, rel=1e-6)
    with pytest.raises(ValueError, match="target_error"):
        data_efficiency_gain(df, target_error=-1.0)


def test_a_table_missing_required_columns_is_refused_by_name():
    df = results_table({("scratch", 8): (1.0, 0.5, 0.0)}).drop(columns=["val_rel_l2"])
    with pytest.raises(ValueError, match=r"lacks required columns \['val_rel_l2'\]"):
        fit_curves(df)


def _sweep_table():
    """Two sizes, two shifts, scratch / fine-tune / zero-shot, two seeds, plus failures."""
    rng = np.random.default_rng(5)
    frames = []
    for width, scale in ((8, 1.0), (16, 0.5)):
        for shift, offset in (("none", 0.0), ("moderate", 0.02)):
            df = results_table(
                {
                    ("scratch", width): (scale, 0.5, 0.01 + offset),
                    ("finetune", width): (0.1 * scale, 0.5, 0.005 + offset),
                    ("zeroshot", width): (0.0, 0.5, 0.05 + 5 * offset),
                },
                lrs=(1e-3, 3e-3),
                seeds=(0, 1),
                noise=0.05,
                rng=rng,
                n_values=2 ** np.arange(3, 15),
            )
            df["shift"] = shift
            df["key"] = df["key"] + f"-{shift}"
            frames.append(df)
    bad = [
        result_row("finetune", 8, 8, 1e-2, 0, math.nan, math.nan, status="failed", error="RuntimeError: out of memory"),
        result_row("scratch", 16, 8, 1e-2, 0, math.nan, math.nan, status="diverged", error="non-finite training loss"),
    ]
    return pd.concat([*frames, pd.DataFrame(bad)], ignore_index=True)


def _figure(report, title: str):
    return next(fig for t, _, fig in report.figures if t.startswith(title))


def test_report_figures_hold_the_tables_data():
    from fno_analysis.report import build_report

    df = _sweep_table()
    report = build_report(df, n_boot=50)
    titles = [title.split(" (")[0] for title, _, _ in report.figures]
    # One family, in page order: error vs N by size and across shifts, gain and exponents vs size, error by
    # shift, the transfer law (two sizes), health (no surface with two sizes, no compute figure without FLOP
    # counts, no validation curves recorded).
    assert titles == [
        "Test error vs N by model size",
        "Test error vs N across physics shifts",
        "Data-efficiency gain vs model size",
        "Fitted exponents vs model size",
        "Zero-shot and fine-tuned error by shift",
        "The transfer law",
        "Sweep health",
    ]
    points = report.points
    fig = report.figures[0][2]
    for trace in fig.data:
        meta = trace.meta
        if meta["kind"] != "points":
            continue
        expected = points[
            (points["mode"] == meta["mode"])
            & (points["n_params"] == meta["n_params"])
            & (points["shift"] == meta["shift"])
            & (points["pretrain_family"] == meta["pretrain_family"])
        ].sort_values("n_train")
        assert np.allclose(trace.x, expected["n_train"]) and np.allclose(trace.y, expected["test_rel_l2"])
    fits = [t for t in fig.data if t.meta["kind"] == "fit"]
    assert len(fits) == 4  # scratch and fine-tune, two sizes
    for trace in fits:
        assert np.allclose(trace.y, saturating(np.asarray(trace.x), trace.meta["a"], trace.meta["b"], trace.meta["c"]))
    zero = [t for t in fig.data if t.meta["kind"] == "zeroshot"]
    assert sorted(t.y[0] for t in zero) == sorted(points.query("mode == 'zeroshot' and shift == 'none'").test_rel_l2)
    shifts = report.figures[1][2]  # the largest size across shifts
    for trace in (t for t in shifts.data if t.meta["kind"] == "points"):
        meta = trace.meta
        assert meta["n_params"] == points["n_params"].max()
        expected = points[
            (points["mode"] == meta["mode"])
            & (points["shift"] == meta["shift"])
            & (points["n_params"] == meta["n_params"])
        ].sort_values("n_train")
        assert np.allclose(trace.y, expected["test_rel_l2"])
    trend = _figure(report, "Data-efficiency gain vs model size")
    assert (report.gains["verdict"] == "measured").all()
    gains = report.gains.set_index(["shift", "n_params"])["gain"]
    gain_traces = [t for t in trend.data if t.meta["kind"] == "gain"]
    assert len(gain_traces) == 2  # one per shift
    for trace in gain_traces:
        assert np.allclose(trace.y, [gains[(trace.meta["shift"], n)] for n in trace.x])
    assert trend.layout.legend.x > 1 and trend.layout.height >= 400  # the legend right of the axes; tall panels
    exponents = report.fits.set_index(["shift", "mode", "n_params"])["b"]
    exponent_traces = [t for t in _figure(report, "Fitted exponents").data if t.meta["kind"] == "exponent"]
    assert len(exponent_traces) == 4  # scratch and fine-tune, two shifts
    for trace in exponent_traces:
        assert np.allclose(trace.y, [exponents[(trace.meta["shift"], trace.meta["mode"], n)] for n in trace.x])
    largest = points[points["n_params"] == points["n_params"].max()]
    for trace in _figure(report, "Zero-shot and fine-tuned error by shift").data:
        meta = trace.meta
        here = largest[(largest["mode"] == meta["mode"]) & (largest["pretrain_family"] == meta["pretrain_family"])]
        if meta["n"] != "":
            n = here.groupby("shift")["n_train"].transform(meta["n"])
            here = here[here["n_train"] == n]
        expected = here.set_index("shift").loc[list(trace.x), "test_rel_l2"]
        assert list(trace.x) == ["none", "moderate"] and np.allclose(trace.y, expected)
    health = report.figures[-1][2]
    by_status = {t.meta["status"]: sum(t.y) for t in health.data if t.meta["kind"] == "status"}
    assert by_status == df["status"].value_counts().to_dict()
    assert any("mixed vs single" in note for note in report.notes)  # no mixture in this sweep
    signatures = [{(t.name, str(t.x), str(t.y)) for t in fig.data} for _, _, fig in report.figures]
    assert all(a != b for i, a in enumerate(signatures) for b in signatures[:i])  # no figure twice


def test_report_writes_a_self_contained_html_file_and_a_summary(tmp_path):
    from fno_analysis.report import main

    sweep = tmp_path / "synthetic"
    (sweep / "results").mkdir(parents=True)
    _sweep_table().to_parquet(sweep / "results" / "all.parquet")
    assert main([str(sweep), "--n-boot", "50"]) == 0
    page = (sweep / "report.html").read_text()
    assert page.count("Plotly.newPlot") == 7 and "<script src=" not in page  # plotly.js inline, no CDN
    assert "out of memory" in page and "non-finite training loss" in page
    # Bottom line first: the answer and the claims, the contents, the figures, the checks, then the tables.
    order = ["id='bottom-line'", "<table class='claims'>", "id='contents'", "id='figures'", "id='trust'"]
    order += ["id='tables'", "id='claim-1'"]
    assert [page.index(mark) for mark in order] == sorted(page.index(mark) for mark in order)
    assert "Does pre-training beat training from scratch here?" in page
    summary = (sweep / "summary.md").read_text()
    assert summary.index("## Bottom line") < summary.index("### The paper's claims")
    assert summary.index("### The paper's claims") < summary.index("## Can these numbers be trusted?")
    assert len(summary.splitlines()) <= 150 and "(details.md#claim-1)" in summary
    claims = [line for line in summary.splitlines() if line.startswith("| [")]
    assert len(claims) == 4 and all(len(cell) <= 320 for line in claims for cell in line.split(" | "))
    details = (sweep / "details.md").read_text()
    assert "### Fits" in details and "### Data-efficiency gains" in details and "| finetune |" in details
    assert '<a id="claim-2"></a>' in details and "Evidence:" in details


def test_report_refuses_a_table_without_required_columns(tmp_path, capsys):
    from fno_analysis.report import build_report, main

    with pytest.raises(ValueError, match=r"lacks required columns \['status'\]"):
        build_report(_sweep_table().drop(columns=["status"]))
    sweep = tmp_path / "broken"
    (sweep / "results").mkdir(parents=True)
    _sweep_table().drop(columns=["status"]).to_parquet(sweep / "results" / "all.parquet")
    assert main([str(sweep)]) == 2  # the results reader refuses a file off the schema
    err = capsys.readouterr().err
    assert "all.parquet" in err and "schema" in err
    assert main([str(tmp_path / "missing")]) == 2
    assert "no results at" in capsys.readouterr().err


def _strategies_table():
    """Scratch, full fine-tuning and head-only fine-tuning with known curves and 4 seeds,
    and an evaluations table: error 1.5x at 64 points, a known band split at 32."""
    curves = {("scratch", 8): (1.0, 0.5, 0.0), ("finetune", 8): (0.1, 0.5, 0.0)}
    n_values = N_VALUES[:6]
    rng = np.random.default_rng(3)
    base = results_table(curves, seeds=(0, 1, 2, 3), noise=0.02, rng=rng, n_values=n_values)
    head = results_table({("finetune", 8): (0.3, 0.3, 0.0)}, seeds=(0, 1, 2, 3), noise=0.02, rng=rng, n_values=n_values)
    head = head.assign(finetune_strategy="head", key="head-" + head["key"])
    df = pd.concat([base.assign(finetune_strategy=np.where(base["mode"] == "finetune", "full", "")), head])
    df = df.assign(resolution=32).reset_index(drop=True)
    shares = {"rel_l2_low": 0.6, "rel_l2_mid": 0.8, "rel_l2_high": 0.0}  # 0.36 + 0.64 = 1
    rows = []
    for key, err in zip(df["key"], df["test_rel_l2"], strict=True):
        rows += [{"key": key, "resolution": 32, "metric": "rel_l2", "value": err}]
        rows += [{"key": key, "resolution": 64, "metric": "rel_l2", "value": 1.5 * err}]
        rows += [{"key": key, "resolution": 32, "metric": m, "value": s * err} for m, s in shares.items()]
    return df, pd.DataFrame(rows), base.assign(resolution=32)


def test_strategies_resolutions_and_bands_in_the_report():
    from fno_analysis.report import build_report

    df, evaluations, paper_only = _strategies_table()
    report = build_report(df, n_boot=50, evaluations=evaluations)
    gains = report.gains.set_index("finetune_strategy")
    assert set(gains.index) == {"full", "head"}
    # Adding a strategy leaves the paper's gain and claims as they were (targets come from full curves).
    paper = build_report(paper_only, n_boot=50)
    columns = ["target_error", "n_finetune", "n_scratch", "bound", "verdict"]
    assert gains.loc[["full"], columns].reset_index(drop=True).equals(paper.gains[columns])
    pd.testing.assert_frame_equal(report.findings.claims, paper.findings.claims)
    tables = report.findings.tables
    strategies = next(t for name, t in tables.items() if name.startswith("Fine-tuning strategies"))
    smallest = strategies[strategies["n_train"] == N_VALUES[0]].iloc[0]
    assert smallest["best"] == "full" and smallest["decided"] == "best below all others"
    assert any(
        a.startswith("Best fine-tuning strategy at the smallest N") and "full" in a for a in report.findings.answers
    )
    growth = next(t for name, t in tables.items() if name.startswith("Error at other test resolutions"))
    assert set(growth["tested_at"]) == {64} and set(growth["mode"]) == {"scratch", "finetune", "finetune (head)"}
    assert all(g == "1.5" for g in growth["growth"])  # the same ratio for every seed: no interval
    bands = next(t for name, t in tables.items() if name.startswith("Error by frequency band"))
    assert set(bands["dominant"]) == {"mid"}
    np.testing.assert_allclose(np.hypot(bands["low"], bands["mid"]) ** 2, (bands["low"] / 0.6) ** 2, rtol=1e-9)
    titles = [title for title, _, _ in report.figures]
    assert any(t.startswith("Fine-tuning strategies") for t in titles)
    resolution = next(fig for title, _, fig in report.figures if title.startswith("Resolution transfer"))
    for trace in resolution.data:
        assert list(trace.x) == [32, 64] and trace.y[1] == pytest.approx(1.5 * trace.y[0])
    bands_fig = next(fig for title, _, fig in report.figures if title.startswith("Error by frequency band"))
    assert {t.meta["band"] for t in bands_fig.data} == {"rel_l2_low", "rel_l2_mid", "rel_l2_high"}
    assert {t.meta["mode"] for t in bands_fig.data} == {"scratch", "finetune"}
