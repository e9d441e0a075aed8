"""Report figures (matplotlib, Agg canvas, no pyplot state): heatmap or line plot of the
chosen metric over the grid, metric vs parameters, and training curves per cell.

Every function takes the :class:`~cnnlab.report.tables.CellSummary` list of a sweep, draws
one PNG and writes it atomically (temporary file, rename).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps, patheffects, rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator, NullLocator

from cnnlab.report.tables import (
    CellSummary,
    Metric,
    axis_values,
    cell_label,
    fmt_value,
    resolve_metric,
    short_axis_names,
    summarize,
)
from cnnlab.status import STUCK
from cnnlab.utils.io import atomic_write

__all__ = ["STYLE", "plot_curves", "plot_heatmap", "plot_line", "plot_metric_vs_params",
           "save_figure"]

STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 14,
    "axes.grid": False,
    "savefig.dpi": 110,
}
STUCK_COLOR = "#c0392b"  # red for "did not train" marks
CMAP = "viridis"
_HALO = [patheffects.withStroke(linewidth=3, foreground="white")]  # text over lines
MAX_HEATMAP_PANELS = 12  # beyond this many combinations of extra axes, average over them


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` atomically (a reader never sees half a PNG)."""
    FigureCanvasAgg(fig)
    return atomic_write(path, lambda f: fig.savefig(f, format=Path(path).suffix[1:] or "png"))


def _has_results(cells: Sequence[CellSummary], m: Metric) -> bool:
    return any(c.stat(m.column).n for c in cells)


def _no_results(cells: Sequence[CellSummary], path: str | Path, sweep: str | None,
                what: str) -> Path:
    """A figure that says there is nothing to draw (every run failed) instead of empty axes."""
    n = sum(c.n_runs for c in cells)
    counts = {s: sum(c.count(s) for c in cells) for s in ("failed", "diverged", STUCK)}
    how = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    with rc_context(STYLE):
        fig = Figure(figsize=(6.5, 2.6), layout="constrained")
        ax = fig.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.55, "no results", transform=ax.transAxes, ha="center", va="center",
                fontsize=16, color="0.3")
        ax.text(0.5, 0.25, f"none of the {n} run{'s' if n != 1 else ''} recorded {what}"
                + (f" ({how})" if how else ""), transform=ax.transAxes, ha="center",
                va="center", color="0.4")
        ax.set_title(_title(sweep, what))
        return save_figure(fig, Path(path))


def _scale(metric: Metric) -> float:
    return 100.0 if metric.is_acc else 1.0


def _chance(cells: Sequence[CellSummary]) -> float | None:
    return next((c.chance for c in cells if c.chance), None)


def _title(sweep: str | None, text: str) -> str:
    return f"{sweep}: {text}" if sweep else text


def _reps_note(cells: Sequence[CellSummary]) -> str:
    ns = sorted({c.n_runs for c in cells})
    reps = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return f"mean ± std over {reps} repetition{'s' if ns[-1] > 1 else ''}"


def _clamp_acc_ylim(ax: Any, metric: Metric) -> None:
    """Keep an accuracy axis within about [0, 100] % after autoscaling margins."""
    if metric.is_acc:
        lo, hi = ax.get_ylim()
        ax.set_ylim(max(lo, -2.0), min(hi, 102.0))


def _numeric_positions(values: list[Any]) -> tuple[list[float], bool]:
    """x positions for axis values: the numbers themselves, or 0..n-1 for categories."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        xs = [float(v) for v in values]
        log = min(xs) > 0 and max(xs) / min(xs) >= 100
        return xs, log
    return [float(i) for i in range(len(values))], False


def _err_bars(stats: Sequence[tuple[float, float]], metric: Metric) -> np.ndarray:
    """(2, n) asymmetric error bars for (mean, std) pairs, already scaled; accuracies are
    clipped to [0, 100] % (mean ± std of a half-stuck cell would reach below zero)."""
    lo = [0.0 if math.isnan(sd) else sd for _, sd in stats]
    hi = list(lo)
    if metric.is_acc:
        lo = [min(e, mu) for (mu, _), e in zip(stats, lo)]
        hi = [min(e, 100.0 - mu) for (mu, _), e in zip(stats, hi)]
    return np.array([lo, hi]).reshape(2, len(stats))


# -- heatmap -------------------------------------------------------------------------------

def _text_color(rgba: tuple[float, ...]) -> str:
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _draw_heatmap(ax: Any, cells: Sequence[CellSummary], x_axis: str,
                  y_axis: str, metric: Metric, norm: Normalize) -> tuple[Any, set[str]]:
    """One heatmap panel; returns the image and the kinds of marks used ("all", "some")."""
    xs, ys = axis_values(cells, x_axis), axis_values(cells, y_axis)
    by_pos = {(repr(c.params.get(x_axis)), repr(c.params.get(y_axis))): c for c in cells}
    grid = np.full((len(ys), len(xs)), np.nan)
    for (i, y), (j, x) in itertools.product(enumerate(ys), enumerate(xs)):
        c = by_pos.get((repr(x), repr(y)))
        if c is not None and c.stat(metric.column).n:
            grid[i, j] = c.stat(metric.column).mean * _scale(metric)
    # bright = good: reversed for a loss; NaN (no result) light grey
    cmap = colormaps[CMAP if metric.is_acc else f"{CMAP}_r"].with_extremes(bad="#eeeeee")
    im = ax.imshow(grid, origin="lower", cmap=cmap, norm=norm, aspect="auto")
    marks: set[str] = set()
    fontsize = 11 if len(xs) <= 6 else 9
    for (i, y), (j, x) in itertools.product(enumerate(ys), enumerate(xs)):
        c = by_pos.get((repr(x), repr(y)))
        if c is None:
            ax.text(j, i, "no runs", ha="center", va="center", fontsize=fontsize, color="0.4")
            continue
        s = c.stat(metric.column)
        note = c.status_note("\n")
        boxed = False
        if c.all_stuck:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#d9d9d9",
                                   edgecolor="0.55", hatch="///", linewidth=0))
            marks.add("all")
        elif c.count(STUCK):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False,
                                   edgecolor="white", hatch="//", linewidth=0, alpha=0.6))
            marks.add("some")
            boxed = True
        if c.all_stuck or boxed or math.isnan(grid[i, j]):
            color = "black"
        else:
            color = _text_color(im.cmap(norm(grid[i, j])))
        if s.n == 0:
            main = "no result"
        elif s.n == 1:
            main = metric.fmt(s.mean)
        else:
            main = f"{metric.fmt(s.mean)} ± {metric.fmt(s.std)}"
        text = main + (f"\n{note}" if note else "")
        # a white box keeps the text readable over the hatching
        bbox = dict(boxstyle="round,pad=0.25", fc="white", ec="none", alpha=0.85)
        ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=color,
                bbox=bbox if boxed else None, linespacing=1.4)
    short = short_axis_names([x_axis, y_axis])
    ax.set_xticks(range(len(xs)), [fmt_value(v) for v in xs])
    ax.set_yticks(range(len(ys)), [fmt_value(v) for v in ys])
    ax.set_xlabel(short[x_axis])
    ax.set_ylabel(short[y_axis])
    ax.set_xticks(np.arange(-0.5, len(xs)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(ys)), minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    return im, marks


def plot_heatmap(cells: Sequence[CellSummary], axes: Sequence[str], path: str | Path,
                 metric: str | Metric = "test_acc", sweep: str | None = None) -> Path:
    """Mean ``metric`` over the first two ``axes`` (x, y), each cell "mean ± std" with its
    stuck / diverged / failed counts; all-stuck cells grey and hatched, partly stuck hatched.

    With more axes: one panel per combination of the others (shared colour scale), or, past
    :data:`MAX_HEATMAP_PANELS` combinations, the runs averaged over them.
    """
    m = resolve_metric(metric)
    if len(axes) < 2:
        raise ValueError(f"a heatmap needs two axes, got {list(axes)}")
    if not _has_results(cells, m):
        return _no_results(cells, path, sweep, m.label)
    x_axis, y_axis, extra = axes[0], axes[1], list(axes[2:])
    panels: list[tuple[str, list[CellSummary]]] = []
    combos = list(itertools.product(*(axis_values(cells, a) for a in extra)))
    if extra and len(combos) <= MAX_HEATMAP_PANELS:
        short = short_axis_names(axes)
        for combo in combos:
            sub = [c for c in cells
                   if all(repr(c.params.get(a)) == repr(v) for a, v in zip(extra, combo))]
            label = ", ".join(f"{short[a]}={fmt_value(v)}" for a, v in zip(extra, combo))
            panels.append((label, sub))
        agg_note = ""
    elif extra:
        runs = [{**r, "cell": f"{r['cell_params'].get(x_axis)!r},{r['cell_params'].get(y_axis)!r}",
                 "cell_params": {x_axis: r["cell_params"].get(x_axis),
                                 y_axis: r["cell_params"].get(y_axis)}}
                for c in cells for r in c.runs]
        panels.append(("", summarize(runs, [x_axis, y_axis], cells[0].order)))
        agg_note = f" (pooled over {', '.join(short_axis_names(axes)[a] for a in extra)})"
    else:
        panels.append(("", list(cells)))
        agg_note = ""

    scale = _scale(m)
    means = [c.stat(m.column).mean * scale for _, sub in panels for c in sub
             if c.stat(m.column).n]
    chance = _chance(cells)
    lo = min(means) if means else 0.0
    hi = max(means) if means else 1.0
    if m.is_acc and chance is not None:
        lo = min(lo, chance * scale)
    if hi - lo < 1e-9:
        hi = lo + 1.0
    norm = Normalize(vmin=lo, vmax=hi)

    nx, ny = len(axis_values(cells, x_axis)), len(axis_values(cells, y_axis))
    n = len(panels)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    pw, ph = max(4.5, 1.35 * nx + 1.5), max(3.2, 0.85 * ny + 1.6)
    with rc_context(STYLE):
        fig = Figure(figsize=(pw * ncols + 1.2, ph * nrows + 1.2), layout="constrained")
        axs = fig.subplots(nrows, ncols, squeeze=False)
        marks: set[str] = set()
        im = None
        for k, (label, sub) in enumerate(panels):
            ax = axs[k // ncols][k % ncols]
            im, mk = _draw_heatmap(ax, sub, x_axis, y_axis, m, norm)
            marks |= mk
            if label:
                ax.set_title(label)
        for k in range(n, nrows * ncols):
            axs[k // ncols][k % ncols].set_visible(False)
        cmap_label = f"mean {m.unit_label}"
        if im is not None:
            fig.colorbar(im, ax=axs, label=cmap_label, shrink=0.9)
        fig.suptitle(_title(sweep, f"{cmap_label} by {short_axis_names(axes)[x_axis]} and "
                                   f"{short_axis_names(axes)[y_axis]}{agg_note}\n"
                                   f"{_reps_note(cells)}"))
        handles = []
        if "all" in marks:
            handles.append(Patch(facecolor="#d9d9d9", edgecolor="0.55", hatch="///",
                                 label="all runs stuck at chance"))
        if "some" in marks:
            handles.append(Patch(facecolor="#7f9fbf", edgecolor="white", hatch="//",
                                 label="some runs stuck at chance"))
        if handles:
            fig.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                       frameon=False)
        return save_figure(fig, Path(path))


# -- one axis: line plot -------------------------------------------------------------------

def _run_points(c: CellSummary, m: Metric) -> list[tuple[float, bool]]:
    """(value, stuck) for each run of ``c`` with a finite value of the metric."""
    out = []
    for r in c.runs:
        v = r.get(m.column)
        if v is not None and math.isfinite(float(v)):
            out.append((float(v) * _scale(m), r.get("status") == STUCK))
    return out


def plot_line(cells: Sequence[CellSummary], axis: str | None, path: str | Path,
              metric: str | Metric = "test_acc", sweep: str | None = None) -> Path:
    """Mean ``metric`` ± std against the one grid axis, with each run as a dot (red x when
    stuck) and chance as a dashed line. ``axis=None`` puts one point per cell."""
    m = resolve_metric(metric)
    if not _has_results(cells, m):
        return _no_results(cells, path, sweep, m.label)
    scale = _scale(m)
    if axis is None:
        values = [c.cell for c in cells]
        lookup = {c.cell: c for c in cells}
        name = "cell"
    else:
        values = axis_values(cells, axis)
        lookup = {repr(c.params.get(axis)): c for c in cells}
        name = short_axis_names([axis])[axis]
    xs, log = _numeric_positions(values)
    categorical = not all(isinstance(v, int | float) and not isinstance(v, bool)
                          for v in values)
    with rc_context(STYLE):
        fig = Figure(figsize=(max(6.5, 0.9 * len(values) + 3), 4.8), layout="constrained")
        ax = fig.subplots()
        mx: list[float] = []
        ms: list[tuple[float, float]] = []
        for x, v in zip(xs, values):
            c = lookup.get(v if axis is None else repr(v))
            if c is None:
                continue
            s = c.stat(m.column)
            pts = _run_points(c, m)
            for val, stuck in pts:
                ax.plot(x, val, "x" if stuck else "o", color=STUCK_COLOR if stuck else "0.45",
                        markersize=7 if stuck else 4, alpha=0.8, zorder=2)
            if s.n:
                mx.append(x)
                ms.append((s.mean * scale, s.std * scale))
            note = c.status_note()
            if note:
                bar_top = s.mean * scale + (0.0 if s.n < 2 else s.std * scale) if s.n else 0.0
                if m.is_acc:
                    bar_top = min(bar_top, 100.0)
                top = max([p for p, _ in pts] + [bar_top])  # above the dots and the bar
                ax.annotate(note, (x, top), xytext=(0, 8), textcoords="offset points",
                            ha="center", fontsize=9, color=STUCK_COLOR)
        ax.errorbar(mx, [mu for mu, _ in ms], yerr=_err_bars(ms, m), color="C0", marker="s",
                    markersize=6, capsize=4, linewidth=2, label=f"mean ± std of {m.label}",
                    zorder=3)
        chance = _chance(cells)
        if m.is_acc and chance is not None:
            ax.axhline(chance * scale, color="0.5", linestyle="--", linewidth=1,
                       label=f"chance ({chance * scale:.0f}%)")
        ax.plot([], [], "o", color="0.45", markersize=4, label="one run")
        if any(c.count(STUCK) for c in cells):
            ax.plot([], [], "x", color=STUCK_COLOR, markersize=7, label="run stuck at chance")
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(NullLocator())
        if xs:  # explicit limits: autoscaling ignores the notes of cells without results
            if log:
                f = (max(xs) / min(xs)) ** 0.08
                ax.set_xlim(min(xs) / f, max(xs) * f)
            else:
                pad = 0.1 * (max(xs) - min(xs)) if len(xs) > 1 else 0.5
                ax.set_xlim(min(xs) - pad, max(xs) + pad)
        if not ms:
            ax.text(0.5, 0.5, "no run has a result", transform=ax.transAxes, ha="center",
                    va="center", color="0.4")
            if m.is_acc:
                ax.set_ylim(0, 100)
        if len(values) <= 12 or categorical:  # tick every grid value, labelled as in the spec
            ax.set_xticks(xs, [fmt_value(v) for v in values],
                          rotation=30 if max(len(fmt_value(v)) for v in values) > 8 else 0)
        ax.set_xlabel(name)
        ax.set_ylabel(m.unit_label)
        ax.margins(x=0.08, y=0.12)
        if ms:
            _clamp_acc_ylim(ax, m)
        ax.grid(True, alpha=0.3)
        fig.legend(loc="outside lower center", ncols=4, frameon=False)
        ax.set_title(_title(sweep, f"{m.label} by {name}\n{_reps_note(cells)}"))
        return save_figure(fig, Path(path))


# -- metric vs parameters ------------------------------------------------------------------

def plot_metric_vs_params(cells: Sequence[CellSummary], axes: Sequence[str], path: str | Path,
                          metric: str | Metric = "test_acc", sweep: str | None = None) -> Path:
    """Mean ``metric`` ± std against parameter count (log x). Points are joined along the first
    axis, one colour per combination of the other axes; each point is labelled with its value
    of the first axis; hollow markers have runs stuck at chance."""
    m = resolve_metric(metric)
    if not _has_results(cells, m):
        return _no_results(cells, path, sweep, m.label)
    scale = _scale(m)
    short = short_axis_names(axes)
    lead, rest = (axes[0], list(axes[1:])) if axes else (None, [])
    groups: dict[str, list[CellSummary]] = {}
    for c in cells:
        key = ", ".join(f"{short[a]}={fmt_value(c.params.get(a))}" for a in rest)
        groups.setdefault(key, []).append(c)
    with rc_context(STYLE):
        fig = Figure(figsize=(9, 6), layout="constrained")
        ax = fig.subplots()
        plotted = 0
        for gi, (key, sub) in enumerate(groups.items()):
            color = f"C{gi % 10}"
            pts = [(float(c.first("params")), c) for c in sub
                   if c.first("params") and c.stat(m.column).n]
            if not pts:
                continue
            xs = [p for p, _ in pts]
            ms = [(c.stat(m.column).mean * scale, c.stat(m.column).std * scale)
                  for _, c in pts]
            ys = [mu for mu, _ in ms]
            ax.errorbar(xs, ys, yerr=_err_bars(ms, m), color=color, linewidth=1.5, capsize=3,
                        marker="none", label=key or None, zorder=2)
            for x, y, (_, c) in zip(xs, ys, pts):
                runs = [v for v, _ in _run_points(c, m)]
                ax.plot([x] * len(runs), runs, "_", color=color, markersize=9, alpha=0.7,
                        zorder=2)
                stuck = c.count(STUCK) > 0
                ax.plot(x, y, "o", markersize=8, color=color, zorder=3,
                        markerfacecolor="white" if stuck else color, markeredgewidth=2)
                text = fmt_value(c.params.get(lead)) if lead else c.cell
                if lead and len(axes) == 1:
                    text = f"{short[lead]}={text}"
                ax.annotate(text, (x, y), xytext=(6, 5), textcoords="offset points",
                            fontsize=10, color=color, path_effects=_HALO)
                plotted += 1
        chance = _chance(cells)
        if m.is_acc and chance is not None:
            ax.axhline(chance * scale, color="0.5", linestyle="--", linewidth=1,
                       label=f"chance ({chance * scale:.0f}%)")
        ax.plot([], [], "_", color="0.3", markersize=9, label="one run")
        if any(c.count(STUCK) for c in cells):
            ax.plot([], [], "o", color="0.3", markerfacecolor="white", markeredgewidth=2,
                    label="hollow: some runs stuck")
        if plotted:
            ax.set_xscale("log")
        else:
            ax.text(0.5, 0.5, "no cell has both a parameter count and a result",
                    transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_xlabel("parameters (log scale)")
        ax.set_ylabel(m.unit_label)
        ax.grid(True, alpha=0.3)
        ax.margins(x=0.1, y=0.1)
        _clamp_acc_ylim(ax, m)
        label_note = f"; point labels: {short[lead]}" if lead and len(axes) > 1 else ""
        ax.set_title(_title(sweep, f"{m.label} vs parameters\n{_reps_note(cells)}"
                                   f"{label_note}"))
        fig.legend(loc="outside right upper", frameon=False,
                   title=", ".join(short[a] for a in rest) if rest else None)
        return save_figure(fig, Path(path))


# -- training curves -----------------------------------------------------------------------

def _curve_stats(runs_curves: list[list[dict]], key: str
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """epochs, mean, min, max of ``key`` over runs, per epoch (runs may differ in length)."""
    by_epoch: dict[int, list[float]] = {}
    for rows in runs_curves:
        for r in rows:
            v = r.get(key)
            if r.get("epoch") is not None and v is not None and math.isfinite(float(v)):
                by_epoch.setdefault(int(r["epoch"]), []).append(float(v))
    epochs = np.array(sorted(by_epoch), dtype=float)
    vals = [by_epoch[int(e)] for e in epochs]
    return (epochs, np.array([np.mean(v) for v in vals]), np.array([min(v) for v in vals]),
            np.array([max(v) for v in vals]))


def plot_curves(cells: Sequence[CellSummary], axes: Sequence[str],
                curves: dict[tuple[str, int], list[dict]], path: str | Path,
                kind: str = "acc", sweep: str | None = None) -> Path:
    """Small multiples, one panel per cell: mean train and validation ``kind`` ("acc" or
    "loss") per epoch, with a min–max band over repetitions. Two varying axes lay the panels
    out as the grid (first axis across, second down); otherwise they wrap, five per row."""
    if kind not in ("acc", "loss"):
        raise ValueError(f"kind must be 'acc' or 'loss', got {kind!r}")
    if not any(curves.get((c.cell, int(r["rep"]))) for c in cells for r in c.runs):
        return _no_results(cells, path, sweep, "accuracy per epoch" if kind == "acc"
                           else "loss per epoch")
    scale = 100.0 if kind == "acc" else 1.0
    n = len(cells)
    if len(axes) == 2:
        xs, ys = axis_values(cells, axes[0]), axis_values(cells, axes[1])
        ncols, nrows = len(xs), len(ys)
        pos = {id(c): (ys.index(c.params.get(axes[1])), xs.index(c.params.get(axes[0])))
               for c in cells}
        titles_axes: Sequence[str] = axes
    else:
        ncols = min(5, max(n, 1))
        nrows = max(1, math.ceil(n / ncols))
        pos = {id(c): divmod(k, ncols) for k, c in enumerate(cells)}
        titles_axes = axes
    all_vals: list[float] = []
    with rc_context(STYLE):
        # fixed margins in inches instead of constrained layout: many panels, same geometry,
        # and constrained layout would take most of the drawing time
        w, h = max(6.5, 2.9 * ncols + 0.9), 2.45 * nrows + 1.75
        fig = Figure(figsize=(w, h))
        fig.subplots_adjust(left=0.85 / w, right=1 - 0.15 / w, top=1 - 1.0 / h,
                            bottom=0.95 / h, wspace=0.08, hspace=0.36)
        axs = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
        used = set()
        chance = _chance(cells)
        for c in cells:
            i, j = pos[id(c)]
            used.add((i, j))
            ax = axs[i][j]
            runs_curves = [curves.get((c.cell, int(r["rep"])), []) for r in c.runs]
            for split, color, style in (("train", "C0", "-"), ("val", "C1", "--")):
                e, mean, lo, hi = _curve_stats(runs_curves, f"{split}_{kind}")
                if not len(e):
                    continue
                ax.fill_between(e, lo * scale, hi * scale, color=color, alpha=0.2, linewidth=0)
                ax.plot(e, mean * scale, style, color=color, marker="o", markersize=3,
                        linewidth=1.8)
                all_vals.extend((hi * scale).tolist())
            if kind == "acc" and chance is not None:
                ax.axhline(chance * scale, color="0.5", linestyle=":", linewidth=1)
            ax.set_title(cell_label(c, titles_axes), fontsize=10)
            note = c.status_note()
            if note:
                ax.text(0.97, 0.95 if kind == "acc" else 0.05, note, transform=ax.transAxes,
                        ha="right", va="top" if kind == "acc" else "bottom", fontsize=9,
                        color=STUCK_COLOR,
                        bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8))
            if not any(runs_curves):
                ax.text(0.5, 0.5, "no curves", transform=ax.transAxes, ha="center",
                        va="center", color="0.4")
            ax.grid(True, alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for i, j in itertools.product(range(nrows), range(ncols)):
            if (i, j) not in used:
                axs[i][j].set_visible(False)
        for j in range(ncols):  # the lowest panel of each column gets ticks and a label
            rows = [i for i, jj in used if jj == j]
            if rows:
                axs[max(rows)][j].xaxis.set_tick_params(labelbottom=True)
                axs[max(rows)][j].set_xlabel("epoch")
        if kind == "acc":
            top = max(all_vals, default=100.0)
            axs[0][0].set_ylim(0, min(100.0, top * 1.08 + 2))
        elif all_vals:
            top = float(np.percentile(all_vals, 98))  # a diverged run must not flatten the rest
            axs[0][0].set_ylim(0, top * 1.1)
        what = "accuracy" if kind == "acc" else "loss"
        fig.supylabel("accuracy (%)" if kind == "acc" else "loss", x=0.15 / w)
        fig.suptitle(_title(sweep, f"training and validation {what} per epoch\n"
                                   f"line: mean over repetitions; band: min–max"),
                     y=1 - 0.15 / h, va="top")
        handles: list[Any] = [
            (Patch(facecolor="C0", alpha=0.3), Line2D([], [], color="C0", linestyle="-")),
            (Patch(facecolor="C1", alpha=0.3), Line2D([], [], color="C1", linestyle="--")),
        ]
        labels = [f"train {what}", f"validation {what}"]
        if kind == "acc" and chance is not None:
            handles.append(Line2D([], [], color="0.5", linestyle=":"))
            labels.append("chance")
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0),
                   ncols=len(handles), frameon=False, handlelength=3)
        return save_figure(fig, Path(path))
