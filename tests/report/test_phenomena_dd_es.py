"""The double-descent and early-stopping analyses: verdicts from synthetic stores (positive,
negative, degenerate sweeps), the report files they add, and one tiny digits sweep each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnlab.experiments.store import ResultsStore
from cnnlab.report import generate_report
from cnnlab.report.phenomena import Study, analyze
from cnnlab.report.tables import axis_order_from_spec, summarize

PNG = b"\x89PNG\r\n\x1a\n"


def _study(folder: Path) -> Study:
    from cnnlab.report import load_sweep

    res = load_sweep(folder)
    cells = summarize(res.runs, res.axes, axis_order_from_spec(res.spec, res.axes))
    return Study(res, cells, folder / "report")


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


# -- double descent ------------------------------------------------------------------------

DD_PEAK = {1: (0.50, 0.45), 2: (0.40, 0.30), 4: (0.52, 0.05), 8: (0.38, 0.0), 16: (0.30, 0.0)}
DD_MONO = {1: (0.61, 0.55), 2: (0.50, 0.40), 4: (0.45, 0.25), 8: (0.40, 0.15),
           16: (0.35, 0.12)}


def make_dd_store(folder: Path, errors: dict, reps: int = 2, failed=(), no_test=False,
                  epochs: int = 4) -> Path:
    """A width sweep: ``errors`` maps width -> (test error, train error); rep r adds
    ±0.005 (alternating) to both; ``failed`` holds (width, rep) pairs that crashed."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"name": "dd", "analysis": "double-descent", "reps": reps,
            "grid": {"model.width": list(errors)}, "overrides": ["train.epochs=4"],
            "base": {"data": {"label_noise": 0.2}, "model": {"name": "vgg"}}}
    with ResultsStore(folder / "results.sqlite") as store:
        store.set_sweep("dd", spec, ["model.width"])
        for w, (test_err, train_err) in errors.items():
            for rep in range(reps):
                cell = f"model.width={w}"
                row = {"sweep": "dd", "cell": cell, "cell_params": {"model.width": w},
                       "rep": rep, "seed": rep, "num_classes": 10, "params": 100 * w * w}
                if (w, rep) in failed:
                    store.record_run({**row, "status": "failed", "error": "boom"}, [])
                    continue
                d = 0.005 * (1 if rep % 2 else -1) if reps > 1 else 0.0
                te, tr = test_err + d, max(0.0, train_err + d)
                curves = [{"epoch": e, "step": 10 * e, "train_acc": 1 - tr - 0.1 * (epochs - e),
                           "val_acc": 1 - te - 0.05 * (epochs - e), "train_loss": 1.0,
                           "val_loss": 1.0} for e in range(1, epochs + 1)]
                store.record_run({**row, "status": "ok", "final_train_acc": 1 - tr,
                                  "final_val_acc": 1 - te + 0.01,
                                  "test_acc": None if no_test else 1 - te,
                                  "epochs_completed": epochs}, curves)
    return folder


def test_double_descent_peak(tmp_path):
    f = analyze("double-descent", _study(make_dd_store(tmp_path, DD_PEAK)))
    assert f.numbers["observed"] is True
    assert f.numbers["peak_width"] == 4 and f.numbers["interpolation_threshold"] == 4
    assert f.numbers["rise_from_width"] == 2 and f.numbers["fall_to_width"] == 16
    assert f.verdict.startswith("Test error peaks at width 4 (52.0 ± 0.7%), 12.0 points "
                                "above width 2 and 22.0 above width 16, near the "
                                "interpolation threshold (width 4")
    assert f.verdict.endswith("double descent observed.")
    assert [r[0] for r in f.rows] == ["1", "2", "4", "8", "16"]
    assert f.rows[2][2:] == ["5.0 ± 0.7", "52.0 ± 0.7", "2/2"]
    (fig,) = f.figures.values()
    assert _is_png(fig) and fig.name == "double-descent.png"


def test_double_descent_monotone_is_negative(tmp_path):
    f = analyze("double-descent", _study(make_dd_store(tmp_path, DD_MONO)))
    assert f.numbers["observed"] is False and f.numbers["interpolation_threshold"] is None
    assert f.verdict.startswith("Test error falls monotonically from 61.0% at width 1 to "
                                "35.0% at width 16")
    assert "no width fits the noisy training set" in f.verdict
    assert f.verdict.endswith("no double descent at this scale.")


def test_double_descent_bump_within_noise(tmp_path):
    errors = {1: (0.60, 0.5), 2: (0.50, 0.2), 4: (0.505, 0.02), 8: (0.45, 0.0)}
    f = analyze("double-descent", _study(make_dd_store(tmp_path, errors)))
    assert f.numbers["observed"] is False and f.numbers["peak_width"] == 4
    assert "largest bump, at width 4 (+0.5 points over width 2" in f.verdict
    assert "within the noise (1.0 points)" in f.verdict


def test_double_descent_degenerate_sweeps(tmp_path):
    # one rep, a failed width, no test split, widths the preset does not have
    errors = {3: (0.5, 0.4), 5: (0.6, 0.05), 7: (0.45, 0.0), 9: (0.3, 0.0)}
    f = analyze("double-descent", _study(make_dd_store(
        tmp_path / "a", errors, reps=1, failed={(9, 0)}, no_test=True)))
    assert f.numbers["widths_without_results"] == ["9"]
    assert f.rows[3][3:] == ["–", "0/1"]
    # test error falls back to the validation accuracy (test error - 1 point here)
    assert "peaks at width 5 (59.0%), 10.0 points above width 3 and 15.0 above width 7" \
        in f.verdict and "(no results at width 9)" in f.verdict
    assert _is_png(next(iter(f.figures.values())))

    few = analyze("double-descent", _study(make_dd_store(
        tmp_path / "b", {2: (0.5, 0.4), 4: (0.4, 0.1)}, reps=1)))
    assert few.verdict.startswith("Only 2 widths of 2 have results")


def test_double_descent_in_report(tmp_path):
    rep = generate_report(make_dd_store(tmp_path, DD_PEAK))
    assert "double descent observed" in rep.verdict
    saved = json.loads(rep.paths["verdict"].read_text())
    assert saved["analysis"] == "double-descent" and saved["verdict"] == rep.verdict
    assert saved["numbers"]["widths"]["4"]["runs"] == 2
    assert _is_png(rep.paths["double-descent"])
    assert f"**Verdict:** {rep.verdict}" in rep.paths["table_md"].read_text()
    page = rep.paths["html"].read_text()
    assert "double descent observed" in page and 'data-file="double-descent.png"' in page


# -- early stopping ------------------------------------------------------------------------

NS_ACC = [0.580, 0.588, 0.596]
ES_EPOCHS = [12, 14, 16]


def make_es_store(folder: Path, es_acc, ns_acc=NS_ACC, es_epochs=ES_EPOCHS, budget=40,
                  patience=5, no_test=False, failed=(), es_best=None,
                  names=("no-stopping", "early-stopping")) -> Path:
    """The early-stopping preset's two variants, paired by rep; the stopped run's best epoch
    is ``es_best`` (default: its last minus patience); ``failed`` holds (variant, rep)
    pairs that crashed."""
    folder.mkdir(parents=True, exist_ok=True)
    ns, es = names
    spec = {"name": "es", "analysis": "early-stopping", "reps": len(ns_acc),
            "grid": {"variant": [ns, es]},
            "variants": {ns: {"train.early_stopping": False},
                         es: {"train.early_stopping": True}},
            "base": {"train": {"epochs": budget, "patience": patience, "restore_best": True}},
            "overrides": []}
    with ResultsStore(folder / "results.sqlite") as store:
        store.set_sweep("es", spec, ["variant"])
        for name, accs in ((ns, ns_acc), (es, es_acc)):
            for rep, acc in enumerate(accs):
                n = budget if name == ns else es_epochs[rep]
                best = n - 3 if name == ns else (es_best[rep] if es_best else n - patience)
                row = {"sweep": "es", "cell": f"variant={name}", "cell_params": {"variant": name},
                       "rep": rep, "seed": rep, "num_classes": 10}
                if (name, rep) in failed:
                    store.record_run({**row, "status": "failed", "error": "boom"}, [])
                    continue
                curves = [{"epoch": e, "step": 10 * e, "train_acc": min(1.0, 0.3 + 0.03 * e),
                           "val_acc": 0.3 + 0.3 * min(e, best) / best - 0.002 * max(0, e - best),
                           "train_loss": 1.0, "val_loss": 1.0} for e in range(1, n + 1)]
                store.record_run({**row, "status": "ok", "test_acc": None if no_test else acc,
                                  "final_val_acc": acc - 0.01, "best_val_acc": acc + 0.01,
                                  "final_train_acc": curves[-1]["train_acc"],
                                  "best_epoch": best, "epochs_completed": n}, curves)
    return folder


def test_early_stopping_better(tmp_path):
    es = [a + d for a, d in zip(NS_ACC, [0.021, 0.025, 0.029])]
    f = analyze("early-stopping", _study(make_es_store(tmp_path, es)))
    assert f.verdict == (
        "Early stopping ended at epoch 14 ± 2 of 40 (65% of the epochs saved) and restored "
        "epoch 9 ± 2; its test accuracy, 61.3 ± 1.2%, is 2.5 ± 0.4 points above training to "
        "the end (58.8 ± 0.8%): stopping early saved compute and generalized better.")
    n = f.numbers["early-stopping"]
    assert n["outcome"] == "better" and n["pairs"] == 3 and n["stopped_runs"] == 3
    assert n["epochs_saved"] == pytest.approx(0.65)
    assert f.rows[1] == ["early-stopping", "patience 5", "14 ± 2", "9 ± 2", "61.3 ± 1.2", "3/3"]
    assert _is_png(next(iter(f.figures.values())))


def test_early_stopping_worse_and_within_noise(tmp_path):
    worse = [a - d for a, d in zip(NS_ACC, [0.02, 0.03, 0.025])]
    f = analyze("early-stopping", _study(make_es_store(tmp_path / "w", worse)))
    assert f.numbers["early-stopping"]["outcome"] == "worse"
    assert "is 2.5 ± 0.5 points below training to the end" in f.verdict
    assert f.verdict.endswith("stopping early cost test accuracy here.")

    same = [a + d for a, d in zip(NS_ACC, [0.004, -0.003, 0.002])]
    f = analyze("early-stopping", _study(make_es_store(tmp_path / "s", same)))
    assert f.numbers["early-stopping"]["outcome"] == "same"
    assert "is within the noise (+0.1 points, margin 1.0) of training to the end" in f.verdict


def test_early_stopping_degenerate_sweeps(tmp_path):
    # one rep, no test split, renamed variants: held-out accuracy of the restored weights
    f = analyze("early-stopping", _study(make_es_store(
        tmp_path / "a", [0.62], ns_acc=[0.60], es_epochs=[20], no_test=True,
        names=("full", "patient"))))
    assert f.verdict.startswith("Early stopping ended at epoch 20 of 40 (50% of the epochs "
                                "saved) and restored epoch 15; its held-out (validation: no "
                                "test split) accuracy, 63.0%, is 4.0 points above")
    assert "(59.0%)" in f.verdict  # the baseline's final validation accuracy

    # a failed rep drops out of the pairs; a run that never stopped says so
    f = analyze("early-stopping", _study(make_es_store(
        tmp_path / "b", NS_ACC, es_epochs=[40, 40, 40], es_best=[38, 37, 39],
        failed={("early-stopping", 1)})))
    n = f.numbers["early-stopping"]
    assert n["pairs"] == 2 and n["stopped_runs"] == 0
    assert f.verdict.startswith("Early stopping never triggered within 40 epochs")
    assert f.rows[1][-1] == "2/3"

    # only one variant
    f = analyze("early-stopping", _study(make_es_store(
        tmp_path / "c", NS_ACC, failed={("no-stopping", r) for r in range(3)})))
    assert f.verdict.startswith("The sweep has no run without early stopping")


def test_early_stopping_in_report(tmp_path):
    es = [a + 0.025 for a in NS_ACC]
    rep = generate_report(make_es_store(tmp_path, es))
    assert rep.verdict.startswith("Early stopping ended at epoch 14")
    assert json.loads(rep.paths["verdict"].read_text())["verdict"] == rep.verdict
    assert _is_png(rep.paths["early-stopping"])
    assert f"**Verdict:** {rep.verdict}" in rep.paths["table_md"].read_text()
    page = rep.paths["html"].read_text()
    assert "generalized better" in page and 'data-file="early-stopping.png"' in page


# -- end to end on digits ------------------------------------------------------------------

def _tiny_sweep(preset: str, out: Path, grid: dict, overrides: list[str]):
    from cnnlab.api import sweep
    from cnnlab.experiments import resolve_spec

    spec = resolve_spec(preset, data="digits", reps=1,
                        overrides=["data.train_size=200", "train.device=cpu", *overrides])
    spec.grid.update(grid)
    return sweep(spec, out, workers=1, threads=1, log=lambda *a: None)


def test_double_descent_preset_on_digits(tmp_path):
    result = _tiny_sweep("double-descent", tmp_path, {"model.width": [2, 4, 8]},
                         ["train.epochs=2"])
    assert len(result.runs) == 3 and not result.failed
    assert result.verdict and "double descent" in result.verdict
    assert _is_png(Path(result.report["double-descent"]))
    assert result.verdict in Path(result.report["table_md"]).read_text()


def test_early_stopping_preset_on_digits(tmp_path):
    result = _tiny_sweep("early-stopping", tmp_path, {},
                         ["train.epochs=3", "train.patience=1"])
    assert len(result.runs) == 2 and not result.failed
    assert "training to the end" in result.verdict
    assert _is_png(Path(result.report["early-stopping"]))
    assert result.verdict in Path(result.report["table_md"]).read_text()
