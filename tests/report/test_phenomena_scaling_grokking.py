"""The scaling and grokking analyses: verdicts from synthetic stores (positive and negative),
the report files they add, and one tiny end-to-end sweep per preset on digits."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from pathlib import Path

import pytest

from cnnlab.experiments.store import ResultsStore
from cnnlab.report import generate_report


def _png_ok(path: Path) -> bool:
    data = Path(path).read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def _check_report(folder: Path, analysis: str):
    """The report of ``folder``: its analysis figure, verdict.json and the verdict in
    table.md and report.html; the report and the verdict's numbers."""
    rep = generate_report(folder)
    verdict = rep.verdict
    assert verdict
    assert _png_ok(rep.paths[analysis]) and rep.paths[analysis].name == f"{analysis}.png"
    saved = json.loads(rep.paths["verdict"].read_text())
    assert saved["analysis"] == analysis and saved["verdict"] == verdict
    assert f"**Verdict:** {verdict}" in rep.paths["table_md"].read_text()
    page = rep.paths["html"].read_text()
    assert "Verdict:" in page and f'data-file="{analysis}.png"' in page
    return rep, saved["numbers"]


# -- scaling -------------------------------------------------------------------------------

NS = [250, 750, 2000, 6000, 16000]


def make_scaling_store(folder: Path, law, widths=(8, 16, 32), ns=NS, reps: int = 2,
                       stuck=(), seed: int = 0) -> Path:
    """Runs whose test error is ``law(width, n)`` with 1% relative noise; (width, n, rep)
    in ``stuck`` at chance."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    axes = ["model.width", "data.train_size"]
    with ResultsStore(folder / "results.sqlite") as store:
        store.set_sweep("scaling", {"analysis": "scaling", "reps": reps,
                                    "grid": {"model.width": list(widths),
                                             "data.train_size": list(ns)},
                                    "base": {"data": {"batch_size": 64}}}, axes)
        for w in widths:
            for n in ns:
                cell = f"model.width={w},data.train_size={n}"
                for rep in range(reps):
                    at_chance = (w, n, rep) in stuck
                    err = 0.9 if at_chance else law(w, n) * (1 + rng.gauss(0, 0.01))
                    epochs = 20
                    store.record_run({
                        "sweep": "scaling", "cell": cell, "rep": rep,
                        "cell_params": {"model.width": w, "data.train_size": n},
                        "status": "stuck" if at_chance else "ok", "test_acc": 1 - err,
                        "final_train_acc": 1.0, "num_classes": 10, "params": 100 * w * w,
                        "flops": 20_000 * w * w, "epochs_completed": epochs,
                        "steps": epochs * math.ceil(n / 64)}, [])
    return folder


def test_scaling_power_law_inside_the_published_range(tmp_path):
    alphas = {8: 0.30, 16: 0.35, 32: 0.40}
    folder = make_scaling_store(tmp_path, lambda w, n: 3.0 * n ** -alphas[w] + 0.02,
                                stuck={(32, 250, 1)})
    rep, numbers = _check_report(folder, "scaling")
    verdict = rep.verdict
    assert numbers["observed"] and numbers["main"] == "width 32"
    assert numbers["relation"] == "inside" and numbers["stuck_runs_left_out"] == 1
    for w, alpha in alphas.items():
        m = numbers["models"][f"width {w}"]
        assert m["alpha"] == pytest.approx(alpha, abs=0.05), w
        assert m["alpha_ci"][0] < m["alpha"] + 0.1 and m["alpha_ci"][1] > m["alpha"] - 0.1
    a32 = numbers["models"]["width 32"]
    assert verdict.startswith(
        "Test error falls as a power law of the training-set size (250–16,000 images) with "
        f"α = {a32['alpha']:.2f} [{a32['alpha_ci'][0]:.2f}, {a32['alpha_ci'][1]:.2f}] for "
        f"width 32 ({numbers['models']['width 8']['alpha']:.2f} for width 8, "
        f"{numbers['models']['width 16']['alpha']:.2f} for width 16)")
    assert ("inside the 0.3–0.5 that Hestness et al. 2017 report for image classification"
            in verdict and "1 run stuck at chance" in verdict)
    md = re.sub(r" {2,}", " ", (folder / "report" / "table.md").read_text())  # padded columns
    assert "| width | n | test error (%) | fit (%) | epochs trained | runs |" in md
    assert "| width 32 | 102k |" in md  # the fit table: a, alpha, c per width


def test_scaling_exponent_above_the_range_and_one_model_size(tmp_path):
    folder = make_scaling_store(tmp_path, lambda w, n: 60.0 * n ** -0.9, widths=(16,))
    rep = generate_report(folder)
    assert "α = 0.9" in rep.verdict and rep.verdict.count(" for width") == 1
    assert "for width 16 and no plateau (c = 0), above the 0.3–0.5" in rep.verdict


def test_scaling_negative_verdicts(tmp_path):
    flat = make_scaling_store(tmp_path / "flat", lambda w, n: 0.3 + 0.0 * n)
    rep, numbers = _check_report(flat, "scaling")
    verdict = rep.verdict
    assert not numbers["observed"]
    assert verdict.startswith("Test error does not fall with the training-set size for "
                              "width 32 (")
    assert verdict.endswith("no scaling law observed at this scale.")

    two = make_scaling_store(tmp_path / "two", lambda w, n: 5 * n**-0.4, ns=[500, 1000])
    verdict = generate_report(two).verdict
    assert verdict == ("No power law could be fitted (2 distinct training-set sizes (at "
                       "least 3 are needed to fit a, alpha and c)).")
    assert _png_ok(two / "report" / "scaling.png")


# -- grokking ------------------------------------------------------------------------------

def _sigmoid_curve(steps, mid: float, top: float, width: float = 0.25) -> list[float]:
    """Accuracy rising from 0.1 to ``top`` around step ``mid`` (logistic in log step)."""
    return [0.1 + (top - 0.1) / (1 + math.exp(-(math.log10(s) - math.log10(mid)) / width))
            for s in steps]


def make_grok_store(folder: Path, runs: dict, reps: int = 2, test_curve: bool = True):
    """``runs``: init scale -> (train mid-step, train top, test mid-step, test top)."""
    folder.mkdir(parents=True, exist_ok=True)
    steps = [5 * e for e in range(4, 4001, 4)]  # 1,000 epochs logged, to step 20,000
    key = "test_acc" if test_curve else "val_acc"
    with ResultsStore(folder / "results.sqlite") as store:
        store.set_sweep("grokking", {"analysis": "grokking", "reps": reps,
                                     "grid": {"model.init_scale": list(runs)}},
                        ["model.init_scale"])
        for scale, (tr_mid, tr_top, te_mid, te_top) in runs.items():
            cell = f"model.init_scale={scale}"
            for rep in range(reps):
                shift = 1 + 0.05 * rep  # the reps differ a little
                train = _sigmoid_curve(steps, tr_mid * shift, tr_top, 0.08)
                test = _sigmoid_curve(steps, te_mid * shift, te_top, 0.08)
                curves = [{"epoch": i + 1, "step": s, "train_acc": a, key: b}
                          for i, (s, a, b) in enumerate(zip(steps, train, test))]
                store.record_run({
                    "sweep": "grokking", "cell": cell, "rep": rep, "status": "ok",
                    "cell_params": {"model.init_scale": scale}, "final_train_acc": train[-1],
                    "test_acc": test[-1] if test_curve else None, "final_val_acc": test[-1],
                    "num_classes": 10, "steps": steps[-1]}, curves)
    return folder


def test_grokking_observed(tmp_path):
    folder = make_grok_store(tmp_path, {1.0: (30, 1.0, 25, 0.98), 8.0: (2000, 1.0, 9000, 0.97)})
    rep, numbers = _check_report(folder, "grokking")
    s1, s8 = numbers["scales"]["1"], numbers["scales"]["8"]
    assert numbers["observed"] and numbers["control"] == 1.0 and numbers["large"] == 8.0
    assert numbers["gen_level"] == pytest.approx(0.9 * s1["best_test_acc"])
    assert s8["fit_step"] < s8["gen_step"] and s8["gap"] >= 2 > s1["gap"]
    assert rep.verdict == (
        f"With init scale 8, training accuracy reached 99% at step {s8['fit_step']:,.0f} but "
        f"test accuracy reached {100 * numbers['gen_level']:.0f}% only at step "
        f"{s8['gen_step']:,.0f} ({s8['gap']:.1f}x later), while with scale 1 both happened "
        f"by step {max(s1['fit_step'], s1['gen_step']):,.0f}: delayed generalization "
        f"(grokking) observed.")
    md = (folder / "report" / "table.md").read_text()
    assert "| init scale | runs | fit step (train ≥ 99%) | generalization step (test ≥" in md


def test_grokking_not_observed(tmp_path):
    # fits late but generalizes as it fits: no delay
    same = make_grok_store(tmp_path / "same",
                           {1.0: (30, 1.0, 25, 0.98), 8.0: (2000, 1.0, 1800, 0.97)})
    rep, numbers = _check_report(same, "grokking")
    assert not numbers["observed"] and numbers["scales"]["8"]["gap"] < 2
    assert rep.verdict.startswith("With init scale 8, training accuracy reached 99% at step ")
    assert rep.verdict.endswith("generalization was not delayed by more than 2x beyond the "
                                "control's, so grokking was not observed.")
    # memorizes but never reaches the level within the budget (validation curves only)
    never = make_grok_store(tmp_path / "never", {1.0: (30, 1.0, 25, 0.98),
                                                 8.0: (2000, 1.0, 9000, 0.6)},
                            test_curve=False)
    rep = generate_report(never)
    assert "but validation accuracy never reached 88% within 20,000 steps (best 59%)" in \
        rep.verdict and rep.verdict.endswith("(a longer run may show it).")
    # never fits the training set
    unfit = make_grok_store(tmp_path / "unfit", {1.0: (30, 1.0, 25, 0.98),
                                                 8.0: (2000, 0.9, 9000, 0.5)}, reps=1)
    rep = generate_report(unfit)
    assert rep.verdict == ("With init scale 8, training accuracy never reached 99% within "
                           "20,000 steps (best 90%): the network did not fit its training "
                           "set, so grokking was not observed.")


# -- end to end on digits --------------------------------------------------------------------

def _tiny(name: str, grid: dict, overrides: list[str], reps: int):
    from cnnlab.experiments.spec import resolve_spec

    spec = resolve_spec(name, data="digits", overrides=overrides, reps=reps)
    return dataclasses.replace(spec, grid=grid)


def test_scaling_preset_end_to_end(tmp_path):
    from cnnlab.api import sweep

    spec = _tiny("scaling", {"model.width": [4, 8], "data.train_size": [100, 200, 400]},
                 ["train.epochs=1", "train.early_stopping=false"], reps=2)
    res = sweep(spec, tmp_path, log=lambda *a, **k: None, workers=1, threads=1)
    assert res.verdict and res.report["scaling"].is_file() and _png_ok(res.report["scaling"])
    numbers = json.loads(res.report["verdict"].read_text())["numbers"]
    assert set(numbers["models"]) == {"width 4", "width 8"}


def test_grokking_preset_end_to_end(tmp_path):
    from cnnlab.api import sweep

    spec = _tiny("grokking", {"model.init_scale": [1.0, 8.0]}, ["train.epochs=4"], reps=1)
    res = sweep(spec, tmp_path, log=lambda *a, **k: None, workers=1, threads=1)
    assert res.verdict.startswith("With init scale 8, ")
    assert _png_ok(res.report["grokking"])
    numbers = json.loads(res.report["verdict"].read_text())["numbers"]
    assert set(numbers["scales"]) == {"1", "8"}
