"""Grokking (Power et al. 2022; Liu et al. 2022, "Omnigrok"): with a large initialization
a network fits its training set long before it generalizes; from a normal one it
generalizes as it fits.

The axis is ``model.init_scale``; the control is its smallest value (normally 1). From
each run's per-epoch curves (step, training accuracy and test accuracy, or validation
accuracy when the run recorded no test curve):

- fit step: the first step at which training accuracy reaches 99% (:data:`FIT_LEVEL`);
- generalization step: the first step at which test accuracy reaches the generalization
  level, 90% (:data:`GEN_FRACTION`) of the best test accuracy the control reached (the mean
  over its runs of each run's best; 90% of the best any run reached if the control has no
  curves): a level set by what this data and model can reach, not by a fixed number;
- gap: mean generalization step / mean fit step, per init scale.

Verdict rule, for the largest init scale against the control: grokking (delayed
generalization) is observed when every run of the large scale fit and generalized within
the budget, its gap is at least 2 (:data:`GAP_RATIO`) and larger than the control's.
Otherwise the sentence says which part failed: the large scale never fit the training
set, fit but never generalized within the budget, or generalized as it fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from cnnlab.report.phenomena import Finding, Study, mean_curve, mean_std, register_analysis
from cnnlab.report.plots import STYLE, save_figure
from cnnlab.report.tables import fmt_value

SCALE_AXIS = "model.init_scale"
FIT_LEVEL = 0.99  # training accuracy that counts as "fit"
GEN_FRACTION = 0.9  # generalized: test accuracy >= this fraction of the control's best
GAP_RATIO = 2.0  # generalization at least this many times later than fitting: delayed
TRAIN_COLOR, TEST_COLOR, GAP_COLOR = "#1f77b4", "#e67e22", "#7f7f7f"


@dataclass
class Run:
    steps: list[float]
    train: list[float]
    test: list[float]
    final_train: float | None
    final_test: float | None
    fit_step: float | None = None
    gen_step: float | None = None

    @property
    def best_test(self) -> float:
        vals = [v for v in self.test if math.isfinite(v)]
        return max(vals) if vals else math.nan

    @property
    def best_train(self) -> float:
        vals = [v for v in self.train if math.isfinite(v)]
        return max(vals) if vals else math.nan


@dataclass
class Scale:
    """The runs of one init scale and what they reached."""

    value: float
    cell: object
    runs: list[Run] = field(default_factory=list)
    test_key: str = "test_acc"

    def _steps(self, attr: str) -> list[float]:
        return [getattr(r, attr) for r in self.runs if getattr(r, attr) is not None]

    @property
    def fitted(self) -> int:
        return len(self._steps("fit_step"))

    @property
    def generalized(self) -> int:
        return len(self._steps("gen_step"))

    @property
    def fit(self) -> tuple[float, float]:
        return mean_std(self._steps("fit_step"))

    @property
    def gen(self) -> tuple[float, float]:
        return mean_std(self._steps("gen_step"))

    @property
    def gap(self) -> float:
        """Mean generalization step / mean fit step (NaN unless both happened)."""
        f, g = self.fit[0], self.gen[0]
        return g / f if math.isfinite(f) and math.isfinite(g) and f > 0 else math.nan

    @property
    def budget(self) -> float:
        return max((r.steps[-1] for r in self.runs if r.steps), default=math.nan)

    def mean_of(self, attr: str) -> float:
        return mean_std([getattr(r, attr) for r in self.runs])[0]


def _first(steps: list[float], values: list[float], level: float) -> float | None:
    return next((s for s, v in zip(steps, values) if math.isfinite(v) and v >= level), None)


def _num(v) -> float:
    return math.nan if v is None else float(v)


def _scales(study: Study) -> list[Scale]:
    scales: dict[float, Scale] = {}
    for cell in study.cells:
        value = float(study.setting(cell, SCALE_AXIS, 1.0) or 1.0)
        scale = scales.setdefault(value, Scale(value, cell))
        by_rep = {int(r["rep"]): r for r in cell.runs}
        for (key, rep), curve in sorted(study.results.curves.items(), key=lambda kv: kv[0]):
            if key != cell.cell or rep not in by_rep or not curve:
                continue
            has_test = any(row.get("test_acc") is not None for row in curve)
            test_key = "test_acc" if has_test else "val_acc"
            if not has_test:
                scale.test_key = "val_acc"
            row = by_rep[rep]
            final_test = row.get("test_acc") if has_test else row.get("final_val_acc")
            scale.runs.append(Run(
                [float(r.get("step") or r["epoch"]) for r in curve],
                [_num(r.get("train_acc")) for r in curve],
                [_num(r.get(test_key)) for r in curve],
                row.get("final_train_acc"),
                final_test if final_test is not None else _num(curve[-1].get(test_key))))
    return sorted(scales.values(), key=lambda s: s.value)


def _steps_text(mean: float) -> str:
    return f"step {mean:,.0f}"


def _verdict(scales: list[Scale], level: float) -> tuple[str, dict]:
    numbers: dict = {"fit_level": FIT_LEVEL, "gen_level": level, "gap_ratio_rule": GAP_RATIO,
                     "observed": False, "scales": {
                         fmt_value(s.value): {
                             "runs": len(s.runs), "fitted": s.fitted,
                             "generalized": s.generalized, "fit_step": s.fit[0],
                             "gen_step": s.gen[0], "gap": s.gap,
                             "final_test_acc": s.mean_of("final_test"),
                             "best_test_acc": s.mean_of("best_test")} for s in scales}}
    with_runs = [s for s in scales if s.runs]
    if len(with_runs) < 2:
        return ("The sweep has curves for fewer than two init scales, so a large "
                "initialization cannot be compared with a normal one."), numbers
    ctrl, big = with_runs[0], with_runs[-1]
    numbers.update(control=ctrl.value, large=big.value)
    name = f"With init scale {fmt_value(big.value)}"
    lvl = f"{100 * level:.0f}%"
    budget = f"{big.budget:,.0f} steps"
    test_word = "test" if big.test_key == "test_acc" else "validation"
    if big.fitted < len(big.runs):
        some = ("never" if big.fitted == 0 else
                f"in only {big.fitted} of {len(big.runs)} runs")
        return (f"{name}, training accuracy {some} reached {100 * FIT_LEVEL:.0f}% within "
                f"{budget} (best {100 * big.mean_of('best_train'):.0f}%): the network did "
                f"not fit its training set, so grokking was not observed."), numbers
    fit_txt = f"training accuracy reached {100 * FIT_LEVEL:.0f}% at {_steps_text(big.fit[0])}"
    if big.generalized < len(big.runs):
        missed = len(big.runs) - big.generalized
        some = (f"never reached {lvl}" if big.generalized == 0 else
                f"did not reach {lvl} in {missed} of {len(big.runs)} runs")
        return (f"{name}, {fit_txt} but {test_word} accuracy {some} within "
                f"{budget} (best {100 * big.mean_of('best_test'):.0f}%): it memorized "
                f"without generalizing within the budget, so grokking was not observed "
                f"(a longer run may show it)."), numbers
    ctrl_gap = ctrl.gap
    if ctrl.fitted == len(ctrl.runs) and ctrl.generalized == len(ctrl.runs):
        ctrl_txt = (f"with scale {fmt_value(ctrl.value)} both happened by "
                    f"{_steps_text(max(ctrl.fit[0], ctrl.gen[0]))}"
                    if ctrl_gap < GAP_RATIO else
                    f"with scale {fmt_value(ctrl.value)} the gap was {ctrl_gap:.1f}x "
                    f"({_steps_text(ctrl.fit[0])} to {ctrl.gen[0]:,.0f})")
    elif ctrl.fitted < len(ctrl.runs):
        ctrl_txt = (f"with scale {fmt_value(ctrl.value)} training accuracy did not reach "
                    f"{100 * FIT_LEVEL:.0f}% in every run")
    else:
        ctrl_txt = f"with scale {fmt_value(ctrl.value)} the level was not reached in every run"
    numbers["control_gap"] = ctrl_gap
    gap = big.gap
    delayed = gap >= GAP_RATIO and not (gap <= ctrl_gap)  # a NaN control gap does not veto
    numbers["observed"] = bool(delayed)
    if delayed:
        return (f"{name}, {fit_txt} but {test_word} accuracy reached {lvl} only at "
                f"{_steps_text(big.gen[0])} ({gap:.1f}x later), while {ctrl_txt}: delayed "
                f"generalization (grokking) observed."), numbers
    return (f"{name}, {fit_txt} and {test_word} accuracy reached {lvl} at "
            f"{_steps_text(big.gen[0])} ({gap:.1f}x the fit step), while {ctrl_txt}: "
            f"generalization was not delayed by more than {GAP_RATIO:g}x beyond the "
            f"control's, so grokking was not observed."), numbers


def _figure(study: Study, scales: list[Scale], level: float):
    shown = [s for s in scales if s.runs]
    k = max(len(shown), 1)
    with rc_context(STYLE):
        fig = Figure(figsize=(min(5.2 * k, 16), 4.6), layout="constrained")
        axes = fig.subplots(1, k, sharey=True, squeeze=False)[0]
        for ax, s in zip(axes, shown):
            curves = study.curves(s.cell)
            lw, alpha = (0.6, 0.35) if len(s.runs) > 1 else (1.2, 0.9)  # thin under a mean
            for r in s.runs:
                ax.plot(r.steps, [100 * v for v in r.train], color=TRAIN_COLOR, lw=lw,
                        alpha=alpha)
                ax.plot(r.steps, [100 * v for v in r.test], color=TEST_COLOR, lw=lw,
                        alpha=alpha)
            if len(s.runs) > 1:
                for key, color in (("train_acc", TRAIN_COLOR), (s.test_key, TEST_COLOR)):
                    xs, ys = mean_curve(curves, key)
                    ax.plot(xs, [100 * v for v in ys], color=color, lw=1.8)
            f, g = s.fit[0], s.gen[0]
            if math.isfinite(f):
                ax.axvline(f, color=TRAIN_COLOR, ls="--", lw=1.1)
            if math.isfinite(g):
                ax.axvline(g, color=TEST_COLOR, ls="--", lw=1.1)
            if math.isfinite(f) and math.isfinite(g):
                ax.axvspan(min(f, g), max(f, g), color=GAP_COLOR, alpha=0.15, lw=0)
                ax.text(math.sqrt(f * g), 4, f"gap {s.gap:.1f}x", ha="center",
                        va="bottom", fontsize=9, color="0.25")
            ax.axhline(100 * level, color=TEST_COLOR, ls=":", lw=0.9)
            ax.axhline(100 * FIT_LEVEL, color=TRAIN_COLOR, ls=":", lw=0.9)
            status = ("" if s.fitted == len(s.runs) and s.generalized == len(s.runs) else
                      f"; fit {s.fitted}/{len(s.runs)}, generalized "
                      f"{s.generalized}/{len(s.runs)}")
            ax.set(xscale="log", xlabel="optimizer steps (log)",
                   title=f"init scale {fmt_value(s.value)} ({len(s.runs)} "
                         f"run{'s' if len(s.runs) != 1 else ''}{status})")
            ax.set_ylim(0, 102)
        test_word = "test" if all(s.test_key == "test_acc" for s in shown) else "validation"
        axes[0].set_ylabel("accuracy (%)")
        handles = [Line2D([], [], color=TRAIN_COLOR, lw=1.8, label="training accuracy"),
                   Line2D([], [], color=TEST_COLOR, lw=1.8, label=f"{test_word} accuracy"),
                   Line2D([], [], color=TRAIN_COLOR, ls="--",
                          label=f"fit: train ≥ {100 * FIT_LEVEL:.0f}%"),
                   Line2D([], [], color=TEST_COLOR, ls="--",
                          label=f"generalized: {test_word} ≥ {100 * level:.0f}%"),
                   Patch(color=GAP_COLOR, alpha=0.25, label="gap")]
        axes[0].legend(handles=handles, fontsize=8, loc="lower right")
        reps = "mean (thick) and each run (thin)" if any(len(s.runs) > 1 for s in shown) \
            else "one run each"
        fig.suptitle(f"{study.name}: training and {test_word} accuracy against steps, "
                     f"{reps}")
        return save_figure(fig, study.out / "grokking.png")


def _steps_cell(scale: Scale, attr: str, stat: tuple[float, float]) -> str:
    n = scale.fitted if attr == "fit_step" else scale.generalized
    if n == 0:
        return "never"
    m, sd = stat
    text = f"{m:,.0f}" + ("" if math.isnan(sd) else f" ± {sd:,.0f}")
    return text if n == len(scale.runs) else f"{text} ({n}/{len(scale.runs)})"


def _pct(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{100 * v:.1f}"


@register_analysis("grokking")
def grokking(study: Study) -> Finding:
    scales = _scales(study)
    with_runs = [s for s in scales if s.runs]
    ctrl = with_runs[0] if with_runs else None
    best = (ctrl.mean_of("best_test") if ctrl else math.nan)
    if not math.isfinite(best):
        best = max((r.best_test for s in scales for r in s.runs), default=math.nan)
    level = GEN_FRACTION * best if math.isfinite(best) else math.nan
    for s in scales:
        for r in s.runs:
            r.fit_step = _first(r.steps, r.train, FIT_LEVEL)
            r.gen_step = _first(r.steps, r.test, level) if math.isfinite(level) else None
    verdict, numbers = _verdict(scales, level)
    test_word = "test" if all(s.test_key == "test_acc" for s in with_runs) else "val"
    header = ["init scale", "runs", f"fit step (train ≥ {100 * FIT_LEVEL:.0f}%)",
              f"generalization step ({test_word} ≥ {_pct(level)}%)", "gap (gen / fit)",
              "final train acc (%)", f"final {test_word} acc (%)",
              f"best {test_word} acc (%)"]
    rows = [[fmt_value(s.value), len(s.runs), _steps_cell(s, "fit_step", s.fit),
             _steps_cell(s, "gen_step", s.gen),
             "–" if math.isnan(s.gap) else f"{s.gap:.2f}x",
             _pct(s.mean_of("final_train")), _pct(s.mean_of("final_test")),
             _pct(s.mean_of("best_test"))] for s in scales]
    figures = {"Training and test accuracy against steps: fit and generalization steps":
               _figure(study, scales, level)}
    return Finding(verdict, header, rows, figures, numbers)
