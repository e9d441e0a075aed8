"""Model-wise double descent (Nakkiran et al. 2019, "Deep Double Descent", Fig. 1 and 4):
with noisy training labels, the test error of a CNN of width k first falls with k, rises
to a peak near the interpolation threshold (the smallest k that just fits the noisy
training set) and falls again beyond it.

The rules behind the verdict, all on the stored numbers:

- training error is ``1 - final_train_acc`` against the noisy labels (a net that learned
  only the clean rule sits near the label noise); test error is ``1 - test_acc`` (the
  validation accuracy for a dataset without a test split), mean ± sample std over the
  repetitions of each width; failed runs have no numbers and do not count;
- the **interpolation threshold** is the smallest width whose mean training error is
  below half the label noise (it fits more than half of the wrong labels), or below 1%
  when the labels are clean;
- the **noise** is the larger of 1 percentage point and the pooled std of test error
  (root mean of the widths' variances; just the 1 point with one repetition);
- the **peak** is the interior width w with the largest min(rise, fall), where rise is
  err(w) minus the lowest error at a smaller width and fall is err(w) minus the lowest
  error at a larger width; double descent is observed when both exceed the noise.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

from cnnlab.report.phenomena import (
    Finding,
    Study,
    mean_std,
    pm,
    register_analysis,
    test_error,
)
from cnnlab.report.plots import STYLE, save_figure
from cnnlab.report.tables import fmt_value, human_count
from cnnlab.status import FAILED

AXIS = "model.width"
MIN_NOISE = 0.01  # 1 percentage point: the smallest rise or fall that counts
FIT_CLEAN = 0.01  # training error that counts as interpolation when labels are clean
COLORS = {"test": "#c0392b", "train": "#2c6fad"}
PICK_COLORS = ("#7b3294", "#e66101", "#1b9e77")  # smallest, peak, largest: not (a)'s colors


@dataclass
class Width:
    """One width's runs (every cell with that ``model.width``) and their errors."""

    value: float | int | str
    runs: list[dict] = field(default_factory=list)
    curves: list[list[dict]] = field(default_factory=list)
    test: tuple[float, float] = (math.nan, math.nan)  # mean, std (fractions)
    train: tuple[float, float] = (math.nan, math.nan)
    n_ok: int = 0  # runs with a test error

    @property
    def x(self) -> float:
        return float(self.value)

    @property
    def label(self) -> str:
        return fmt_value(self.value)

    @property
    def has_result(self) -> bool:
        return not math.isnan(self.test[0])

    @property
    def params(self) -> int | None:
        return next((r["params"] for r in self.runs if r.get("params") is not None), None)


def _widths(study: Study) -> list[Width]:
    by: dict[str, Width] = {}
    for cell in study.cells:
        value = study.setting(cell, AXIS)
        try:
            float(value)
        except (TypeError, ValueError):
            continue  # no numeric width: nothing to place on the axis
        w = by.setdefault(repr(value), Width(value))
        w.runs += cell.runs
        w.curves += [study.results.curves.get((cell.cell, int(r["rep"]))) or []
                     for r in cell.runs if r.get("status") != FAILED]
    out = sorted(by.values(), key=lambda w: w.x)
    for w in out:
        ok = [r for r in w.runs if r.get("status") != FAILED]
        errs = [test_error(r) for r in ok]
        w.test = mean_std(errs)
        w.n_ok = sum(e is not None for e in errs)
        w.train = mean_std([1.0 - r["final_train_acc"] for r in ok
                            if r.get("final_train_acc") is not None])
        w.curves = [c for c in w.curves if c]
    return out


def _noise(widths: list[Width]) -> float:
    """The larger of 1 point and the pooled std of test error over the widths."""
    var = [w.test[1] ** 2 for w in widths if not math.isnan(w.test[1])]
    pooled = math.sqrt(statistics.fmean(var)) if var else 0.0
    return max(MIN_NOISE, pooled)


def _threshold(widths: list[Width], label_noise: float) -> tuple[Width | None, float]:
    """The smallest width whose mean training error is below the interpolation bound."""
    bound = label_noise / 2 if label_noise > 0 else FIT_CLEAN
    hit = next((w for w in widths if not math.isnan(w.train[0]) and w.train[0] < bound), None)
    return hit, bound


def _peak(widths: list[Width]) -> tuple[Width | None, Width | None, Width | None, float]:
    """The interior width with the largest min(rise, fall), the widths it rises from and
    falls to, and that min (NaN without an interior width)."""
    best: tuple = (None, None, None, math.nan)
    for i in range(1, len(widths) - 1):
        left = min(widths[:i], key=lambda w: w.test[0])
        right = min(widths[i + 1:], key=lambda w: w.test[0])
        score = min(widths[i].test[0] - left.test[0], widths[i].test[0] - right.test[0])
        if math.isnan(best[3]) or score > best[3]:
            best = (widths[i], left, right, score)
    return best


def _shape(res: list[Width], noise: float) -> str:
    """What the test-error curve did, in words: falls / rises / falls then rises / flat."""
    first, last = res[0], res[-1]
    low = min(res, key=lambda w: w.test[0])
    e = lambda w: f"{100 * w.test[0]:.1f}% at width {w.label}"  # noqa: E731
    if low not in (first, last) and last.test[0] - low.test[0] > noise \
            and first.test[0] - low.test[0] > noise:
        return f"test error falls from {e(first)} to {e(low)}, then rises to {e(last)}"
    if abs(last.test[0] - first.test[0]) <= noise and \
            max(w.test[0] for w in res) - low.test[0] <= noise:
        return f"test error stays within {100 * noise:.1f} points of {e(first)} up to width " \
               f"{last.label}"
    steps = [b.test[0] - a.test[0] for a, b in zip(res, res[1:])]
    mono = ("monotonically " if all(s <= 0 for s in steps) or all(s >= 0 for s in steps)
            else "")
    verb = "falls" if last.test[0] < first.test[0] else "rises"
    return f"test error {verb} {mono}from {e(first)} to {e(last)}"


def _verdict(widths: list[Width], label_noise: float) -> tuple[str, dict]:
    res = [w for w in widths if w.has_result]
    noise = _noise(res)
    thr, bound = _threshold(res, label_noise)
    missing = [w.label for w in widths if not w.has_result]
    numbers: dict = {"noise": noise, "interpolation_bound": bound,
                     "interpolation_threshold": thr.value if thr else None,
                     "label_noise": label_noise, "widths_without_results": missing}
    tail = f" (no results at width {', '.join(missing)})" if missing else ""
    if len(res) < 3:
        return (f"Only {len(res)} width{'s' if len(res) != 1 else ''} of {len(widths)} "
                f"{'have' if len(res) != 1 else 'has'} results; double descent needs test "
                f"errors at three or more widths{tail}."), numbers | {"observed": False}
    peak, left, right, score = _peak(res)
    rise, fall = peak.test[0] - left.test[0], peak.test[0] - right.test[0]
    observed = score > noise
    numbers["observed"] = observed
    if rise > 0 and fall > 0:  # a bump, within the noise or not
        numbers.update(peak_width=peak.value, peak_test_error=peak.test[0], rise=rise,
                       rise_from_width=left.value, fall=fall, fall_to_width=right.value)
    if thr is None:
        lowest = min(res, key=lambda w: w.train[0] if not math.isnan(w.train[0]) else 9.0)
        thr_txt = (f"no width fits the noisy training set (training error stays above "
                   f"{100 * bound:.0f}%; lowest {100 * lowest.train[0]:.1f}% at width "
                   f"{lowest.label})")
    else:
        thr_txt = (f"the interpolation threshold is at width {thr.label} (training error "
                   f"{100 * thr.train[0]:.1f}%)")
    if observed:
        near = thr is not None and abs(res.index(peak) - res.index(thr)) <= 1
        if near:
            where = (f"near the interpolation threshold (width {thr.label}, training error "
                     f"{100 * thr.train[0]:.1f}%)")
        else:
            where = f"while {thr_txt}" if thr else f"although {thr_txt}"
        return (f"Test error peaks at width {peak.label} ({pm(*peak.test)}%), "
                f"{100 * rise:.1f} points above width {left.label} and {100 * fall:.1f} "
                f"above width {right.label}, {where}: double descent observed{tail}."), numbers
    bump = ""
    if rise > 0 and fall > 0:
        bump = (f"; its largest bump, at width {peak.label} (+{100 * rise:.1f} points over "
                f"width {left.label}, -{100 * fall:.1f} to width {right.label}), is within "
                f"the noise ({100 * noise:.1f} points)")
    shape = _shape(res, noise)
    low = min(res, key=lambda w: w.test[0])
    if (thr is None or res.index(thr) >= res.index(low)) and \
            res[-1].test[0] - low.test[0] > noise:  # the first ascent, cut by the grid
        thr_txt += ", so a second descent, if any, lies beyond the largest width"
    return (f"{shape[0].upper()}{shape[1:]}{bump}; {thr_txt}: no double descent at this "
            f"scale{tail}."), numbers


def _epoch_error(curves: list[list[dict]], key: str) -> tuple[list[int], list[float]]:
    """Epochs and the mean over runs of ``1 - key`` at each epoch (runs that reached it)."""
    by: dict[int, list[float]] = {}
    for c in curves:
        for row in c:
            v = row.get(key)
            if v is not None and math.isfinite(v):
                by.setdefault(int(row["epoch"]), []).append(1.0 - float(v))
    epochs = sorted(by)
    return epochs, [100 * statistics.fmean(by[e]) for e in epochs]


def _picks(res: list[Width], peak: Width | None, thr: Width | None) -> list[tuple[str, Width]]:
    """The smallest width, the test-error peak (else the interpolation threshold, else the
    lowest test error, else the middle one, whichever is interior) and the largest."""
    if not res:
        return []
    inner = res[1:-1]
    low = min(res, key=lambda w: w.test[0])
    mid = next(((role, w) for role, w in (("peak", peak), ("threshold", thr),
                                          ("lowest test error", low))
                if w is not None and w in inner), ("middle", res[len(res) // 2]))
    picks, seen = [], set()
    for role, w in (("smallest", res[0]), mid, ("largest", res[-1])):
        if id(w) not in seen:
            seen.add(id(w))
            picks.append((role, w))
    return picks


def _figure(study: Study, widths: list[Width], numbers: dict, label_noise: float):
    res = [w for w in widths if w.has_result]
    thr = next((w for w in res if w.value == numbers.get("interpolation_threshold")), None)
    peak = next((w for w in res if numbers.get("peak_width") is not None
                 and w.value == numbers["peak_width"]), None)
    observed = bool(numbers.get("observed"))
    reps = sorted({w.n_ok for w in res}) or [0]
    with rc_context(STYLE):
        fig = Figure(figsize=(16, 4.8), layout="constrained")
        ax_w, ax_val, ax_tr = fig.subplots(1, 3)
        xs = [w.x for w in res]
        log = bool(xs) and min(xs) > 0 and max(xs) / min(xs) >= 8
        for kind, marker in (("test", "o"), ("train", "s")):
            ys = [100 * getattr(w, kind)[0] for w in res]
            es = [0.0 if math.isnan(getattr(w, kind)[1]) else 100 * getattr(w, kind)[1]
                  for w in res]
            ax_w.errorbar(xs, ys, yerr=es, marker=marker, capsize=3, color=COLORS[kind],
                          label=f"{kind} error" + (" (noisy labels)" if kind == "train"
                                                   else ""))
        if label_noise > 0:
            ax_w.axhline(100 * label_noise, color="0.55", ls=":", lw=1,
                         label=f"label noise ({100 * label_noise:.0f}%)")
        if thr is not None:
            ax_w.axvline(thr.x, color="0.35", ls="--", lw=1.2,
                         label=f"interpolation threshold (train error "
                               f"< {100 * numbers['interpolation_bound']:.0f}%)")
        if peak is not None:
            ax_w.plot([peak.x], [100 * peak.test[0]], marker="o", ms=16, mfc="none",
                      mec=COLORS["test"] if observed else "0.5", mew=2, ls="none",
                      label="test-error peak" if observed else "largest bump (within noise)")
        if log:
            ax_w.set_xscale("log", base=2)
        ax_w.xaxis.set_major_locator(FixedLocator(xs))
        ax_w.xaxis.set_minor_locator(NullLocator())
        ax_w.set_xticklabels([w.label for w in res])
        _, top = ax_w.get_ylim()
        ax_w.set_ylim(0, top * 1.4)  # headroom: the legend sits above the curves
        ax_w.set(xlabel="width k (filters of the first conv layer)", ylabel="error (%)",
                 title="(a) final error vs width")
        ax_w.legend(fontsize=8.5, loc="upper center", ncol=2)

        picks = _picks(res, peak, thr)
        for (role, w), color in zip(picks, PICK_COLORS):
            for ax, key in ((ax_val, "val_acc"), (ax_tr, "train_acc")):
                ep, ys = _epoch_error(w.curves, key)
                ax.plot(ep, ys, color=color, lw=1.6, label=f"width {w.label} ({role})")
        ax_val.set(xlabel="epoch", ylabel="held-out error (%)",
                   title="(b) epoch-wise validation error (clean labels)")
        ax_tr.set(xlabel="epoch", ylabel="training error (%)",
                  title="(c) training error (noisy labels)")
        if label_noise > 0:
            ax_tr.axhline(100 * label_noise, color="0.55", ls=":", lw=1)
            handles, labels = ax_tr.get_legend_handles_labels()
            handles.append(Line2D([], [], color="0.55", ls=":", lw=1))
            labels.append(f"label noise ({100 * label_noise:.0f}%)")
            ax_tr.legend(handles, labels, fontsize=8.5)
        else:
            ax_tr.legend(fontsize=8.5)
        ax_val.legend(fontsize=8.5)
        for ax in (ax_val, ax_tr):
            ax.set_ylim(bottom=0)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        rep_txt = str(reps[0]) if len(reps) == 1 else f"{reps[0]}–{reps[-1]}"
        fig.suptitle(f"{study.name}: model-wise double descent, "
                     f"{100 * label_noise:.0f}% label noise "
                     f"(mean{' ± std' if reps[-1] > 1 else ''} over {rep_txt} "
                     f"repetition{'s' if reps[-1] != 1 else ''})")
        return save_figure(fig, study.out / "double-descent.png")


@register_analysis("double-descent")
def double_descent(study: Study) -> Finding:
    widths = _widths(study)
    noise_levels = {float(study.setting(c, "data.label_noise", 0.0) or 0.0)
                    for c in study.cells}
    label_noise = max(noise_levels) if noise_levels else 0.0
    if not widths:
        return Finding(f"No run of the sweep has a numeric {AXIS}: the width-wise test "
                       f"error cannot be drawn.", numbers={"observed": False})
    verdict, numbers = _verdict(widths, label_noise)
    header = ["width", "params", "train error (%)", "test error (%)", "runs"]
    rows = [[w.label, human_count(w.params), pm(*w.train), pm(*w.test),
             f"{w.n_ok}/{len(w.runs)}"] for w in widths]
    numbers["widths"] = {w.label: {"params": w.params, "train_error": w.train[0],
                                   "train_error_std": w.train[1], "test_error": w.test[0],
                                   "test_error_std": w.test[1], "runs": w.n_ok}
                         for w in widths}
    figures = {"Double descent: error vs width, epoch-wise held-out and training error":
               _figure(study, widths, numbers, label_noise)}
    return Finding(verdict, header, rows, figures, numbers)
