"""The memorization analysis: verdicts from synthetic stores, and the preset end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cnnlab.experiments import load_spec
from cnnlab.experiments.store import ResultsStore
from cnnlab.report import generate_report

CONDITIONS = {  # variant -> (label noise, pixels)
    "true-labels": (0.0, "keep"), "noise-0.5": (0.5, "keep"), "random-labels": (1.0, "keep"),
    "gaussian": (0.0, "gaussian"),
}


def _store(folder: Path, steps: dict, test_acc: dict, reps: int = 2) -> Path:
    """A memorization sweep whose runs fit (or not: steps None) with these numbers."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"name": "mem", "analysis": "memorization", "grid": {"variant": list(CONDITIONS)},
            "variants": {v: ({"data.label_noise": n} if n else {}) |
                         ({"data.pixels": p} if p != "keep" else {})
                         for v, (n, p) in CONDITIONS.items()},
            "base": {"train": {"target_train_acc": 1.0}}, "reps": reps}
    with ResultsStore(folder / "results.sqlite") as store:
        store.set_sweep("mem", spec, ["variant"])
        for v in CONDITIONS:
            for rep in range(reps):
                fit_at = steps[v]
                total = fit_at if fit_at else 3000
                curves = [{"epoch": e, "step": e * 100, "train_loss": 2.3 / e,
                           "train_acc": min(1.0, e * 100 / total)} for e in range(1, total // 100
                                                                                    + 1)]
                store.record_run({
                    "sweep": "mem", "cell": f"variant={v}", "cell_params": {"variant": v},
                    "rep": rep, "status": "ok", "test_acc": test_acc[v] + 0.01 * rep,
                    "final_train_acc": 1.0 if fit_at else 0.6, "num_classes": 10,
                    "steps": total, "steps_to_target": fit_at}, curves)
    return folder


def test_memorization_observed(tmp_path):
    folder = _store(tmp_path / "s", {"true-labels": 1000, "noise-0.5": 1800,
                                     "random-labels": 2500, "gaussian": 400},
                    {"true-labels": 0.45, "noise-0.5": 0.25, "random-labels": 0.10,
                     "gaussian": 0.11})
    report = generate_report(folder)
    assert report.verdict.startswith("All conditions fit the training set")
    assert "random labels took 2.50x the steps of true labels to 100% (2,500 vs 1,000)" in \
        report.verdict
    assert report.verdict.endswith("memorization observed.")
    verdict = json.loads(report.paths["verdict"].read_text())
    assert verdict["numbers"]["steps_ratio"] == pytest.approx(2.5)
    assert report.paths["memorization"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = re.sub(r" {2,}", " ", report.paths["table_md"].read_text())  # columns are padded
    assert f"**Verdict:** {report.verdict}" in md and "| random-labels | 1 | keep | 2/2 |" in md
    assert report.verdict in report.paths["html"].read_text()


def test_memorization_not_observed_when_random_labels_are_not_fitted(tmp_path):
    folder = _store(tmp_path / "s", {"true-labels": 1000, "noise-0.5": 1800,
                                     "random-labels": None, "gaussian": 400},
                    {"true-labels": 0.45, "noise-0.5": 0.25, "random-labels": 0.10,
                     "gaussian": 0.11})
    verdict = generate_report(folder).verdict
    assert verdict.startswith("Random labels reached only 60.0")
    assert "within 3,000 steps (0 of 2 runs fitted): memorization not observed" in verdict


def test_memorization_preset_on_tiny_digits(tmp_path):
    """The preset's digits form end to end, cut to three conditions and a few epochs."""
    from cnnlab.api import sweep
    from cnnlab.experiments import resolve_spec

    spec = resolve_spec("memorization", data="digits", reps=1,
                        overrides=["train.epochs=3", "data.train_size=200"]).to_dict()
    spec["grid"] = {"variant": ["true-labels", "random-labels", "shuffled-pixels"]}
    result = sweep(spec, tmp_path / "mem", log=lambda *a: None)
    assert result.failed == 0 and len(result.runs) == 3
    assert "memorization" in result.report and result.verdict
    assert load_spec("memorization").sizes["digits"]["reps"] == 2
