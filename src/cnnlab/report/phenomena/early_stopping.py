"""Early stopping (Prechelt 1998, "Early Stopping — But When?"; Goodfellow et al. 2016,
§7.8): stop when the validation accuracy has not improved for ``patience`` epochs and
keep the weights of the best epoch; the claim is that this saves most of the training
at no cost in test accuracy, often with a gain over training to the end.

The sweep has a cell without early stopping (the baseline) and one or more with it
(``train.early_stopping``); their runs share seeds rep by rep, so they are compared in
pairs. The rules behind the verdict:

- epochs trained are ``epochs_completed`` (else the length of the curves); the epochs
  saved are 1 - (epochs of the stopped runs) / (epochs of the baseline's runs);
- the restored epoch is ``best_epoch`` (1-based); a run counts as stopped by patience
  when ``epochs_completed - best_epoch >= patience``;
- test accuracy is ``test_acc``; without a test split it is the validation accuracy of
  the weights the run ended with (``best_val_acc`` for a stopped run that restored its
  best weights, else ``final_val_acc``), which favours the stopped run: it chose them;
- the difference in test accuracy is the mean ± sample std over the paired reps; it is
  "above" or "below" when its magnitude exceeds the larger of 1 percentage point and two
  standard errors of the mean difference (std / sqrt(pairs)), else "within the noise".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from cnnlab.report.phenomena import Finding, Study, mean_std, pm, register_analysis
from cnnlab.report.plots import STYLE, save_figure
from cnnlab.report.tables import CellSummary
from cnnlab.status import FAILED

MIN_DIFF = 0.01  # 1 percentage point: the smallest test-accuracy difference that counts
BASE_COLOR = "#2c6fad"
STOP_COLORS = ("#d35400", "#27ae60", "#8e44ad", "#c0392b")


@dataclass
class Variant:
    """One cell of the sweep: its runs by rep and what stopping did to them."""

    cell: CellSummary
    name: str
    stopping: bool
    restore: bool
    patience: int
    budget: int | None  # train.epochs
    runs: dict[int, dict] = field(default_factory=dict)  # rep -> run with numbers
    curves: dict[int, list[dict]] = field(default_factory=dict)  # rep -> per-epoch rows

    def epochs(self, rep: int) -> int | None:
        run = self.runs[rep]
        n = run.get("epochs_completed")
        return int(n) if n is not None else (len(self.curves.get(rep, [])) or None)

    def stopped(self, rep: int) -> bool:
        """Whether patience ran out (the callback stopped the run, restoring if asked)."""
        n, best = self.epochs(rep), self.runs[rep].get("best_epoch")
        return self.stopping and n is not None and best is not None \
            and n - int(best) >= self.patience

    def acc(self, rep: int) -> float | None:
        """The held-out accuracy of the weights the run ended with (see the module doc)."""
        run = self.runs[rep]
        if run.get("test_acc") is not None:
            return float(run["test_acc"])
        if self.restore and self.stopped(rep) and run.get("best_val_acc") is not None:
            return float(run["best_val_acc"])
        return None if run.get("final_val_acc") is None else float(run["final_val_acc"])

    def stat(self, what: str, reps=None) -> tuple[float, float]:
        reps = sorted(self.runs) if reps is None else reps
        if what == "acc":
            return mean_std([self.acc(r) for r in reps])
        if what == "epochs":
            return mean_std([self.epochs(r) for r in reps])
        return mean_std([self.runs[r].get("best_epoch") for r in reps])


def _variants(study: Study) -> list[Variant]:
    out = []
    for cell in study.cells:
        epochs = study.setting(cell, "train.epochs")
        v = Variant(cell, str(cell.params.get("variant", cell.cell)),
                    bool(study.setting(cell, "train.early_stopping", False)),
                    bool(study.setting(cell, "train.restore_best", True)),
                    int(study.setting(cell, "train.patience", 5)),
                    int(epochs) if epochs is not None else None)
        for r in cell.runs:
            if r.get("status") == FAILED or r.get("rep") is None:
                continue
            v.runs[int(r["rep"])] = r
            v.curves[int(r["rep"])] = study.results.curves.get((cell.cell, int(r["rep"]))) or []
        out.append(v)
    return out


def _compare(base: Variant, stop: Variant, label: str) -> tuple[str, dict]:
    """One stopped variant against the baseline, over the reps both have a number for."""
    reps = [r for r in sorted(stop.runs) if r in base.runs
            and stop.acc(r) is not None and base.acc(r) is not None]
    if not reps:
        return (f"{stop.name} and {base.name} share no repetition with results, so they "
                f"cannot be compared"), {"pairs": 0}
    ep_s, ep_b = [stop.epochs(r) or 0 for r in reps], [base.epochs(r) or 0 for r in reps]
    saved = 1.0 - sum(ep_s) / sum(ep_b) if sum(ep_b) else math.nan
    diffs = [stop.acc(r) - base.acc(r) for r in reps]
    d_mean, d_std = mean_std(diffs)
    se = d_std / math.sqrt(len(diffs)) if not math.isnan(d_std) else 0.0
    margin = max(MIN_DIFF, 2 * se)
    n_stopped = sum(stop.stopped(r) for r in reps)
    acc_s, acc_b = stop.stat("acc", reps), base.stat("acc", reps)
    budget = round(sum(ep_b) / len(ep_b)) if base.budget is None else base.budget
    numbers = {"pairs": len(reps), "stopped_runs": n_stopped,
               "epochs": stop.stat("epochs", reps)[0], "epochs_std": stop.stat("epochs", reps)[1],
               "baseline_epochs": base.stat("epochs", reps)[0], "budget": budget,
               "epochs_saved": saved, "restored_epoch": stop.stat("best", reps)[0],
               "test_acc": acc_s[0], "test_acc_std": acc_s[1],
               "baseline_test_acc": acc_b[0], "baseline_test_acc_std": acc_b[1],
               "diff": d_mean, "diff_std": d_std, "margin": margin}
    d_txt = pm(abs(d_mean), d_std)
    if d_mean > margin:
        cmp_txt, numbers["outcome"] = f"is {d_txt} points above", "better"
        end = "stopping early saved compute and generalized better"
    elif d_mean < -margin:
        cmp_txt, numbers["outcome"] = f"is {d_txt} points below", "worse"
        end = "stopping early cost test accuracy here"
    else:
        cmp_txt, numbers["outcome"] = (f"is within the noise ({d_mean * 100:+.1f} points, "
                                       f"margin {100 * margin:.1f}) of"), "same"
        end = "the saved epochs cost no test accuracy"
    if n_stopped == 0:
        head = (f"{label} never triggered within {budget} epochs (patience "
                f"{stop.patience}; best epoch {pm(*stop.stat('best', reps), scale=1, digits=0)})")
        end = "early stopping had no effect at this budget"
    else:
        some = "" if n_stopped == len(reps) else f"{n_stopped} of {len(reps)} runs stopped; "
        kept = (f"restored epoch {pm(*stop.stat('best', reps), scale=1, digits=0)}"
                if stop.restore else "kept the last weights")
        head = (f"{label} ended at epoch {pm(*stop.stat('epochs', reps), scale=1, digits=0)} "
                f"of {budget} ({some}{100 * saved:.0f}% of the epochs saved) and {kept}")
    what = "test" if all(stop.runs[r].get("test_acc") is not None for r in reps) else \
        "held-out (validation: no test split)"
    return (f"{head}; its {what} accuracy, {pm(*acc_s)}%, {cmp_txt} training to the end "
            f"({pm(*acc_b)}%): {end}"), numbers


def _verdict(variants: list[Variant]) -> tuple[str, dict]:
    base = next((v for v in variants if not v.stopping and v.runs), None)
    stops = [v for v in variants if v.stopping and v.runs]
    if base is None or not stops:
        lacking = "without early stopping" if base is None else "with early stopping"
        return (f"The sweep has no run {lacking} that finished with numbers, so early "
                f"stopping cannot be compared with training to the end."), {}
    parts, numbers = [], {"baseline": base.name}
    for v in stops:
        label = "early stopping" if len(stops) == 1 else f"early stopping ({v.name})"
        text, nums = _compare(base, v, label)
        parts.append(text)
        numbers[v.name] = nums
    verdict = "; ".join(parts) + "."
    return verdict[0].upper() + verdict[1:], numbers


def _figure(study: Study, variants: list[Variant]):
    shown = [v for v in variants if v.runs]
    colors = {}
    stop_colors = iter(STOP_COLORS * 4)
    for v in shown:
        colors[v.name] = BASE_COLOR if not v.stopping else next(stop_colors)
    with rc_context(STYLE):
        fig = Figure(figsize=(14, 5), layout="constrained")
        ax_c, ax_t = fig.subplots(1, 2, width_ratios=[2.2, 1])
        handles, marks = [], []  # marks: val acc (%) at every stop, restore and run end
        for v in shown:
            c = colors[v.name]
            for rep in sorted(v.runs):
                curve = v.curves.get(rep) or []
                ep = [row["epoch"] for row in curve]
                va = [100 * row["val_acc"] if row.get("val_acc") is not None else math.nan
                      for row in curve]
                tr = [100 * row["train_acc"] if row.get("train_acc") is not None else math.nan
                      for row in curve]
                ls, lw = ("--", 1.8) if v.stopping else ("-", 1.2)
                ax_c.plot(ep, tr, color=c, lw=0.9, alpha=0.3, ls=ls)
                ax_c.plot(ep, va, color=c, lw=lw, alpha=0.9, ls=ls, zorder=3 if v.stopping else 2)
                marks += [y for y in va[-1:] if math.isfinite(y)]
                if not v.stopping or not curve:
                    continue
                ax_c.plot([ep[-1]], [va[-1]], marker="X", ms=10, color=c, mec="white",
                          ls="none", zorder=5)
                best = v.runs[rep].get("best_epoch")
                row = next((r for r in curve if r["epoch"] == best), None)
                if row is not None and row.get("val_acc") is not None and v.restore:
                    marks.append(100 * row["val_acc"])
                    ax_c.plot([best], [100 * row["val_acc"]], marker="*", ms=14, color=c,
                              mec="black", mew=0.6, ls="none", zorder=6)
            handles.append(Line2D([], [], color=c, ls="--" if v.stopping else "-",
                                  lw=1.8, label=f"{v.name}: validation"))
        handles += [Line2D([], [], color="0.5", lw=0.9, alpha=0.5, label="training (lighter)"),
                    Line2D([], [], marker="X", ms=9, color="0.3", ls="none",
                           label="stopped (last epoch)"),
                    Line2D([], [], marker="*", ms=12, color="0.3", mec="black", mew=0.6,
                           ls="none", label="restored (best) epoch")]
        ax_c.legend(handles=handles, fontsize=9, loc="lower right")
        if marks:  # zoom onto the late epochs: 15 points below the lowest mark or end
            lo, hi = ax_c.get_ylim()
            ax_c.set_ylim(max(lo, min(marks) - 15), min(hi, 101))
        ax_c.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_c.set(xlabel="epoch", ylabel="accuracy (%)",
                 title="(a) validation and training accuracy, every repetition")

        has_test = all(r.get("test_acc") is not None for v in shown for r in v.runs.values())
        pos: dict[tuple[str, int], tuple[float, float]] = {}  # (variant, rep) -> (x, y)
        for i, v in enumerate(shown):
            reps = sorted(v.runs)
            for j, r in enumerate(reps):
                a = v.acc(r)
                if a is not None:
                    pos[(v.name, r)] = (i - 0.1 + 0.08 * (j - (len(reps) - 1) / 2), 100 * a)
            pts = [pos[(v.name, r)] for r in reps if (v.name, r) in pos]
            ax_t.plot([p[0] for p in pts], [p[1] for p in pts], "o", color=colors[v.name],
                      alpha=0.6, ms=6)
            m, s = v.stat("acc")
            if not math.isnan(m):
                ax_t.errorbar([i + 0.2], [100 * m], yerr=[0 if math.isnan(s) else 100 * s],
                              fmt="D", ms=8, capsize=5, color=colors[v.name])
        base = next((v for v in shown if not v.stopping), None)
        for v in shown:  # paired reps: one grey line per seed, baseline to each stopped run
            if base is None or v is base:
                continue
            for r in sorted(set(v.runs) & set(base.runs)):
                if (v.name, r) in pos and (base.name, r) in pos:
                    (x0, y0), (x1, y1) = pos[(base.name, r)], pos[(v.name, r)]
                    ax_t.plot([x0, x1], [y0, y1], color="0.7", lw=0.8, zorder=0)
        ax_t.set_xticks(range(len(shown)), [v.name for v in shown])
        ax_t.set_xlim(-0.5, len(shown) - 0.2)
        what = "test" if has_test else "held-out (val)"
        ax_t.set(ylabel=f"{what} accuracy (%)",
                 title=f"(b) {what} accuracy\n(dots: reps, lines pair seeds; ◆ mean ± std)")
        n = max((len(v.runs) for v in shown), default=0)
        fig.suptitle(f"{study.name}: early stopping vs training to the end "
                     f"({n} repetition{'s' if n != 1 else ''})")
        return save_figure(fig, study.out / "early-stopping.png")


@register_analysis("early-stopping")
def early_stopping(study: Study) -> Finding:
    variants = _variants(study)
    verdict, numbers = _verdict(variants)
    header = ["variant", "early stopping", "epochs trained", "restored epoch",
              "test acc (%)", "runs"]
    rows = [[v.name, f"patience {v.patience}" if v.stopping else "off",
             pm(*v.stat("epochs"), scale=1, digits=0),
             pm(*v.stat("best"), scale=1, digits=0) if v.stopping and v.restore else "–",
             pm(*v.stat("acc")), f"{len(v.runs)}/{v.cell.n_runs}"] for v in variants]
    figures = {"Early stopping: accuracy per epoch with the stopping and restored epochs; "
               "test accuracy of both": _figure(study, variants)}
    return Finding(verdict, header, rows, figures, numbers)
