"""Data scaling (Hestness et al. 2017, "Deep learning scaling is predictable, empirically"):
test error against training-set size, a power law ``err = a · n^(-alpha) + c`` per model
size, and test error against training compute with its Pareto front.

The axes: ``data.train_size`` (n) and the model size, ``model.width``, or whatever other
axes the grid has (their values together name a model size; with none there is one).
Per model size the power law is fitted to every run's test error pooled over repetitions
(the curve drawn, the alpha quoted), and once per repetition (its runs across sizes); the
interval quoted is the t-based 95% interval of those per-repetition exponents. Runs stuck
at chance are left out of the fits: they belong to what Hestness et al. call the
small-data region, where the error is that of a best guess, not to the power-law region
(they are drawn, hollow, and counted in the tables).

Verdict rule, for the largest model (most parameters) whose fit succeeds:

- no fit for any model (fewer than 3 sizes, or no convergence): "no power law could be
  fitted", with the reason;
- the error does not fall with the training-set size (no scaling law observed) unless the
  fitted curve falls by at least 10% of its value (:data:`MIN_DROP`) from the smallest to
  the largest size fitted and the mean error at the largest size is below that at the
  smallest;
- else alpha is compared with the 0.3–0.5 that Hestness et al. report for ImageNet
  classification (top-1 about 0.31, top-5 about 0.49): "inside", "below" or "above" that
  range, judged on the pooled point estimate (the sentence adds when the per-repetition
  interval overlaps the range from outside).

Training compute is FLOPs per image forward × 3 (forward + backward ≈ 3× forward, Kaplan
et al. 2020) × images seen (optimizer steps × batch size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from cnnlab.report.fits import AlphaInterval, FitError, PowerLaw, fit_reps, pareto_front
from cnnlab.report.phenomena import (
    Finding,
    Study,
    mean_std,
    pm,
    register_analysis,
    test_error,
)
from cnnlab.report.plots import STYLE, save_figure
from cnnlab.report.tables import fmt_value, human_count, short_axis_names
from cnnlab.status import DIVERGED, FAILED, STUCK

N_AXIS = "data.train_size"
PUBLISHED = (0.3, 0.5)  # Hestness et al. 2017, ImageNet top-1 / top-5 error exponents
BACKWARD_FACTOR = 3  # forward + backward ≈ 3 forward passes
MIN_DROP = 0.1  # the fit must fall by this fraction over the sizes for a "falls" verdict


@dataclass
class Point:
    """One run: its training-set size, repetition, test error and training compute."""

    n: float
    rep: int
    err: float
    compute: float  # FLOPs, NaN when the run recorded no FLOPs or steps
    epochs: float
    stuck: bool = False  # at chance: shown, not fitted


@dataclass
class ModelSize:
    """The runs of one model size (one value of the non-n axes) and their fit."""

    key: tuple
    label: str  # "width 16"
    params: float | None
    points: list[Point] = field(default_factory=list)
    fit: PowerLaw | None = None
    per_rep: list[PowerLaw | None] = field(default_factory=list)
    ci: AlphaInterval | None = None
    error: str = ""  # why no fit

    def by_n(self, fitted_only: bool = False) -> dict[float, list[Point]]:
        """Points by training-set size (only those the fit uses with ``fitted_only``)."""
        out: dict[float, list[Point]] = {}
        for p in sorted(self.points, key=lambda p: p.n):
            if not (fitted_only and p.stuck):
                out.setdefault(p.n, []).append(p)
        return out

    @property
    def fitted_points(self) -> list[Point]:
        return [p for p in self.points if not p.stuck]

    @property
    def alpha_text(self) -> str:
        """``"0.42 [0.35, 0.49]"``; ``"0.42 ± 0.03"`` (curve_fit's std) with one rep."""
        if self.fit is None:
            return "–"
        if self.ci is not None and self.ci.ok:
            return f"{self.fit.alpha:.2f} {self.ci}"
        if math.isfinite(self.fit.alpha_std):
            return f"{self.fit.alpha:.2f} ± {self.fit.alpha_std:.2f}"
        return f"{self.fit.alpha:.2f}"


def _size_label(key: tuple, axes: list[str]) -> str:
    if not axes:
        return "the model"
    short = short_axis_names(axes)
    return ", ".join(f"{short[a]} {fmt_value(v)}" for a, v in zip(axes, key))


def _model_sizes(study: Study) -> tuple[list[ModelSize], list[str]]:
    variants = (study.results.spec or {}).get("variants", {})
    sets_n = bool(variants) and all(N_AXIS in v for v in variants.values())
    # a variant axis whose variants set n (with its budget) is the n axis, not a model size
    size_axes = [a for a in study.results.axes
                 if a != N_AXIS and not (a == "variant" and sets_n)]
    if "model.width" in size_axes:  # width first: it names the model size
        size_axes.remove("model.width")
        size_axes.insert(0, "model.width")
    groups: dict[tuple, ModelSize] = {}
    for cell in study.cells:  # in the spec's order
        n = study.setting(cell, N_AXIS)
        key = tuple(cell.params.get(a) for a in size_axes)
        group = groups.setdefault(key, ModelSize(key, _size_label(key, size_axes),
                                                 cell.first("params")))
        batch = study.setting(cell, "data.batch_size")
        for r in cell.runs:
            err = test_error(r)
            if r.get("status") in (FAILED, DIVERGED) or err is None or n is None:
                continue
            flops, steps = r.get("flops"), r.get("steps")
            compute = (BACKWARD_FACTOR * float(flops) * float(steps) * float(batch)
                       if flops and steps and batch else math.nan)
            epochs = r.get("epochs_completed")
            group.points.append(Point(float(n), int(r.get("rep") or 0), err, compute,
                                      math.nan if epochs is None else float(epochs),
                                      r.get("status") == STUCK))
    return list(groups.values()), size_axes


def _fit(size: ModelSize) -> None:
    pts = size.fitted_points
    if not pts:
        size.error = "no run finished above chance" if size.points else "no run finished"
        return
    try:
        size.fit, size.per_rep, size.ci = fit_reps(
            [p.n for p in pts], [p.err for p in pts], [p.rep for p in pts])
    except FitError as e:
        size.error = str(e)


def _verdict(sizes: list[ModelSize]) -> tuple[str, dict]:
    numbers: dict = {"published_alpha_range": list(PUBLISHED), "models": {
        s.label: {"a": s.fit.a if s.fit else None, "alpha": s.fit.alpha if s.fit else None,
                  "alpha_std": s.fit.alpha_std if s.fit else None,
                  "c": s.fit.c if s.fit else None,
                  "alpha_ci": [s.ci.lo, s.ci.hi] if s.ci else None,
                  "alpha_rep_mean": s.ci.mean if s.ci else None,
                  "alpha_reps": [f.alpha if f else None for f in s.per_rep],
                  "params": s.params, "error": s.error or None} for s in sizes}}
    fitted = [s for s in sizes if s.fit is not None]
    if not fitted:
        why = "; ".join(dict.fromkeys(s.error for s in sizes if s.error)) or "no runs"
        return f"No power law could be fitted ({why}).", numbers
    order = {id(s): i for i, s in enumerate(sizes)}
    main = max(fitted, key=lambda s: (s.params or 0, order[id(s)]))
    numbers["main"] = main.label
    by_n = main.by_n(fitted_only=True)
    ns = sorted(by_n)
    first = mean_std([p.err for p in by_n[ns[0]]])[0]
    last = mean_std([p.err for p in by_n[ns[-1]]])[0]
    f_first, f_last = float(main.fit(ns[0])), float(main.fit(ns[-1]))
    drop = (f_first - f_last) / f_first if f_first > 0 else 0.0
    numbers.update(err_smallest_n=first, err_largest_n=last, fit_drop=drop)
    others = [s for s in fitted if s is not main]
    other_txt = (" (" + ", ".join(f"{s.fit.alpha:.2f} for {s.label}" for s in others) + ")"
                 if others else "")
    span = f"{int(ns[0]):,}–{int(ns[-1]):,} images"
    if not (last < first and drop >= MIN_DROP):
        numbers["observed"] = False
        return (f"Test error does not fall with the training-set size for {main.label} "
                f"({100 * first:.1f}% at {int(ns[0]):,} images, {100 * last:.1f}% at "
                f"{int(ns[-1]):,}; the fitted curve falls by {100 * drop:.0f}%, under the "
                f"{100 * MIN_DROP:.0f}% a trend needs): no scaling law observed at this "
                f"scale."), numbers
    lo, hi = PUBLISHED
    alpha = main.fit.alpha
    where = "inside" if lo <= alpha <= hi else ("below" if alpha < lo else "above")
    overlap = (where != "inside" and main.ci is not None and main.ci.ok
               and main.ci.lo <= hi and main.ci.hi >= lo)
    stuck = sum(p.stuck for s in sizes for p in s.points)
    numbers.update(observed=True, alpha=alpha, relation=where, ci_overlaps_range=overlap,
                   stuck_runs_left_out=stuck)
    plateau = (f" and a plateau c = {100 * main.fit.c:.1f}%" if main.fit.c >= 5e-4
               else " and no plateau (c = 0)")
    return (f"Test error falls as a power law of the training-set size ({span}) with "
            f"α = {main.alpha_text} for {main.label}{other_txt}{plateau}, {where} the "
            f"{lo:g}–{hi:g} that Hestness et al. 2017 report for image classification"
            + (" (though its interval over repetitions overlaps that range)" if overlap
               else "")
            + (f"; {stuck} run{'s' if stuck != 1 else ''} stuck at chance (the small-data "
               f"region) left out of the fit" if stuck else "") + "."), numbers


def _plain_log_ticks(axis, lo: float, hi: float) -> None:
    """Label a log axis with plain numbers (30, 50, 100) at 1-2-3-5-7, 1-2-5 or 1 per
    decade as its span grows: a narrow log range otherwise shows labels like 6×10^1."""
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = (1.0, 2.0, 3.0, 5.0, 7.0) if decades <= 1.3 else \
        (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
    axis.set_minor_formatter(NullFormatter())


def _figure(study: Study, sizes: list[ModelSize]):
    cmap = colormaps["viridis"]
    colors = [cmap(v) for v in np.linspace(0.15, 0.85, len(sizes))] if len(sizes) > 1 \
        else [cmap(0.35)]
    with rc_context(STYLE):
        fig = Figure(figsize=(13, 5), layout="constrained")
        ax_n, ax_c = fig.subplots(1, 2)
        all_n = [p.n for s in sizes for p in s.points]
        lows, highs = [], []  # y range (%) of what (a) shows
        stuck_drawn = False
        for s, color in zip(sizes, colors):
            stuck = [p for p in s.points if p.stuck]
            if stuck:  # hollow: at chance, left out of the fit
                ax_n.scatter([p.n for p in stuck], [100 * p.err for p in stuck], s=30,
                             facecolor="none", edgecolor=color, lw=1.1, zorder=3)
                highs += [100 * p.err for p in stuck]
                stuck_drawn = True
            by_n = s.by_n(fitted_only=True)
            if not by_n:
                continue
            ns = np.array(sorted(by_n))
            stats = [mean_std([p.err for p in by_n[n]]) for n in ns]
            mean = np.array([m for m, _ in stats])
            std = np.array([0.0 if math.isnan(sd) else sd for _, sd in stats])
            label = (f"{s.label}: α = {s.alpha_text}" if s.fit else
                     f"{s.label}: no fit")
            ax_n.errorbar(ns, 100 * mean, yerr=100 * std, fmt="o", color=color, capsize=3,
                          ms=5, label=label, zorder=3)
            lows += [v for v in 100 * (mean - std) if v > 0] + list(100 * mean)
            highs += list(100 * (mean + std))
            if s.fit is not None:
                grid = np.geomspace(min(all_n), max(all_n), 200)
                curve = 100 * s.fit(grid)
                inside = (grid >= ns.min()) & (grid <= ns.max())  # solid where fitted
                ax_n.plot(grid, curve, color=color, lw=0.9, ls="--", alpha=0.6)
                ax_n.plot(grid[inside], curve[inside], color=color, lw=1.8)
                lows.append(float(curve.min()))
                if s.fit.c > 0.05 * float(np.mean(mean)):  # a plateau worth showing
                    ax_n.axhline(100 * s.fit.c, color=color, lw=0.9, ls=":", alpha=0.8)
                    lows.append(100 * s.fit.c)
        ax_n.set(xscale="log", yscale="log", xlabel="training-set size n (images)",
                 ylabel="test error (%)",
                 title=r"(a) test error vs data: fit $a\,n^{-\alpha} + c$ "
                       r"(dashed: extrapolated; dotted: $c$)")
        if lows and highs:
            ylo, yhi = min(lows) / 1.15, max(highs) * 1.15
            ax_n.set_ylim(ylo, yhi)
            _plain_log_ticks(ax_n.yaxis, ylo, yhi)
        if all_n:
            _plain_log_ticks(ax_n.xaxis, min(all_n), max(all_n))
        handles, labels = ax_n.get_legend_handles_labels()
        if stuck_drawn:
            handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="0.3"))
            labels.append("run at chance (not fitted)")
        ax_n.legend(handles, labels, fontsize=9, title="α: pooled fit [95% CI over reps] or ± std",
                    title_fontsize=9)

        pts = []
        for s, color in zip(sizes, colors):
            run_pts = [p for p in s.points if math.isfinite(p.compute)]
            pts += [(p.compute, p.err) for p in run_pts]
            ok = [p for p in run_pts if not p.stuck]
            stuck = [p for p in run_pts if p.stuck]
            if ok:
                ax_c.scatter([p.compute for p in ok], [100 * p.err for p in ok], color=color,
                             s=28, alpha=0.85, edgecolor="white", lw=0.5, label=s.label)
            if stuck:  # hollow, as in (a)
                ax_c.scatter([p.compute for p in stuck], [100 * p.err for p in stuck], s=28,
                             facecolor="none", edgecolor=color, lw=1.1,
                             label=None if ok else s.label)
        front = pareto_front(pts)
        handles, labels = ax_c.get_legend_handles_labels()
        if front:
            fx = [c for c, _ in front]
            fy = [100 * e for _, e in front]
            ax_c.step(fx, fy, where="post", color="#c0392b", lw=1.4, zorder=1)
            handles.append(Line2D([], [], color="#c0392b", lw=1.4))
            labels.append("Pareto front")
        if pts:
            ax_c.set(xscale="log", yscale="log")
            errs = [100 * e for _, e in pts if e > 0]
            if errs:
                _plain_log_ticks(ax_c.yaxis, min(errs), max(errs))
            ax_c.legend(handles, labels, fontsize=9)
        else:
            ax_c.text(0.5, 0.5, "no run recorded FLOPs and steps", ha="center",
                      va="center", transform=ax_c.transAxes, color="0.4")
        ax_c.set(xlabel="training compute (FLOPs) = 3 × forward FLOPs/image × steps × batch",
                 ylabel="test error (%)", title="(b) test error vs training compute")
        reps = max((len(s.per_rep) for s in sizes), default=0)
        fig.suptitle(f"{study.name}: data scaling (mean ± std over {reps} "
                     f"repetition{'s' if reps != 1 else ''})")
        return save_figure(fig, study.out / "scaling.png")


@register_analysis("scaling")
def scaling(study: Study) -> Finding:
    sizes, size_axes = _model_sizes(study)
    for s in sizes:
        _fit(s)
    verdict, numbers = _verdict(sizes)
    model_col = short_axis_names(size_axes)[size_axes[0]] if size_axes else "model"
    header = [model_col if len(size_axes) <= 1 else "model", "n", "test error (%)",
              "fit (%)", "epochs trained", "runs", "at chance (not fitted)"]
    rows = []
    for s in sizes:
        for n, pts in s.by_n().items():
            above = [p for p in pts if not p.stuck]  # what the fit and the error bars use
            err = (pm(*mean_std([p.err for p in above])) if above else
                   f"{pm(*mean_std([p.err for p in pts]))} (chance)")
            rows.append([s.label.split(" ", 1)[-1] if len(size_axes) == 1 else s.label,
                         int(n), err, f"{100 * float(s.fit(n)):.1f}" if s.fit else "–",
                         pm(*mean_std([p.epochs for p in pts]), scale=1, digits=0),
                         len(pts), len(pts) - len(above)])
    fit_header = ["model", "params", "a", "α (pooled ± std)", "α over reps [95% CI]",
                  "c (%)", "sizes"]
    fit_rows = [[s.label, human_count(s.params),
                 f"{s.fit.a:.3g}" if s.fit else "–",
                 (f"{s.fit.alpha:.2f}" + (f" ± {s.fit.alpha_std:.2f}"
                                          if math.isfinite(s.fit.alpha_std) else ""))
                 if s.fit else f"no fit: {s.error}",
                 f"{s.ci.mean:.2f} {s.ci}" if s.ci and s.ci.ok else "–",
                 (f"{100 * s.fit.c:.1f}" + (" (fixed)" if s.fit.fixed_c else ""))
                 if s.fit else "–",
                 s.fit.sizes if s.fit else "–"] for s in sizes]
    figures = {"Test error against training-set size (power-law fits) and training compute":
               _figure(study, sizes)}
    return Finding(verdict, header, rows, figures, numbers, [(fit_header, fit_rows)])
