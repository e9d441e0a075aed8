"""Memorization (Zhang et al. 2017): how fast a network fits true, corrupted and random
labels and permuted or random inputs, and what it then scores on clean test images."""

from __future__ import annotations

import math

from matplotlib import colormaps, rc_context
from matplotlib.figure import Figure

from cnnlab.report.phenomena import (
    Finding,
    Study,
    held_out_acc,
    mean_std,
    pm,
    register_analysis,
    test_error,
)
from cnnlab.report.plots import STYLE, save_figure

NEAR_FIT = 0.99  # training accuracy of the steadier "steps to fit" measure


def _condition(study: Study, cell) -> dict:
    noise = float(study.setting(cell, "data.label_noise", 0.0) or 0.0)
    pixels = str(study.setting(cell, "data.pixels", "keep") or "keep")
    runs = [r for r in cell.runs if r.get("status") != "failed"]
    steps = [r.get("steps_to_target") for r in runs]
    fitted = [s for s in steps if s is not None]
    # 100% needs the last hard example right in one epoch, which Adam's noise can delay by
    # many epochs; the step of 99% is the steadier measure of how fast a condition fits
    near = [next((row["step"] for row in curve if (row.get("train_acc") or 0) >= NEAR_FIT),
                 None) for curve in study.curves(cell)]
    return {
        "cell": cell, "name": cell.params.get("variant", cell.cell), "noise": noise,
        "pixels": pixels, "runs": len(runs), "fitted": len(fitted),
        "steps": mean_std(fitted), "steps_near": mean_std([n for n in near if n is not None]),
        "budget": max((r.get("steps") or 0 for r in runs), default=0),
        "train_acc": mean_std([r.get("final_train_acc") for r in runs]),
        "test_acc": mean_std([held_out_acc(r) for r in runs]),
        "test_err": mean_std([test_error(r) for r in runs]),
    }


def _verdict(conds: list[dict], chance: float | None) -> tuple[str, dict]:
    true = next((c for c in conds if c["noise"] == 0 and c["pixels"] == "keep"), None)
    rand = next((c for c in conds if c["noise"] == 1 and c["pixels"] == "keep"), None)
    unfit = [c["name"] for c in conds if c["fitted"] < c["runs"]]
    numbers: dict = {"not_fitted": unfit}
    if true is None or rand is None:
        return ("The sweep lacks the true-label or the random-label condition, so the "
                "memorization comparison cannot be made."), numbers
    chance_txt = f" (chance {100 * chance:.0f}%)" if chance else ""
    if rand["fitted"] < rand["runs"]:
        return (f"Random labels reached only {pm(*rand['train_acc'])}% training accuracy "
                f"within {rand['budget']:,} steps ({rand['fitted']} of {rand['runs']} runs "
                f"fitted): memorization not observed at this scale."), numbers
    ratio = rand["steps"][0] / true["steps"][0] if true["fitted"] else math.nan
    near = rand["steps_near"][0] / true["steps_near"][0]
    numbers.update(steps_ratio=ratio, steps_ratio_99=near, random_test_acc=rand["test_acc"][0],
                   true_test_acc=true["test_acc"][0])
    fit_txt = ("All conditions fit the training set (100% training accuracy)" if not unfit
               else f"Every condition but {', '.join(unfit)} fit the training set")
    ratio_txt = (f"random labels took {ratio:.2f}x the steps of true labels to 100% "
                 f"({rand['steps'][0]:,.0f} vs {true['steps'][0]:,.0f})"
                 if math.isfinite(ratio) else "true labels were not fitted")
    if math.isfinite(near):
        ratio_txt += (f" and {near:.2f}x to {100 * NEAR_FIT:.0f}% ({rand['steps_near'][0]:,.0f} "
                      f"vs {true['steps_near'][0]:,.0f})")
    at_chance = chance is not None and abs(rand["test_acc"][0] - chance) <= 0.05
    observed = "memorization observed" if at_chance else \
        "random labels were fitted but their test accuracy is not at chance"
    return (f"{fit_txt}; {ratio_txt}; test accuracy falls from {pm(*true['test_acc'])}% "
            f"with true labels to {pm(*rand['test_acc'])}% with random ones{chance_txt}: "
            f"{observed}."), numbers


def _figure(study: Study, conds: list[dict], chance: float | None):
    colors = colormaps["tab10"]
    with rc_context(STYLE):
        fig = Figure(figsize=(15, 4.4), layout="constrained")
        ax_loss, ax_steps, ax_err = fig.subplots(1, 3)
        for i, c in enumerate(conds):
            for j, curve in enumerate(study.curves(c["cell"])):
                xs = [row["step"] or row["epoch"] for row in curve]
                ys = [row["train_loss"] for row in curve]
                ax_loss.plot(xs, ys, color=colors(i % 10), lw=1.2, alpha=0.8,
                             label=c["name"] if j == 0 else None)
        ax_loss.set(xlabel="optimizer steps", ylabel="training loss", yscale="log",
                    title="(a) training loss")
        ax_loss.legend(fontsize=8, ncol=2)

        xs = range(len(conds))
        means = [c["steps"][0] for c in conds]
        errs = [0 if math.isnan(c["steps"][1]) else c["steps"][1] for c in conds]
        # a condition no run fitted shows the step budget, hatched
        bars = ax_steps.bar(xs, [c["budget"] if math.isnan(m) else m
                                 for m, c in zip(means, conds)], yerr=errs,
                            color=[colors(i % 10) for i in xs], capsize=3)
        for bar, c in zip(bars, conds):
            if c["fitted"] < c["runs"]:
                bar.set_hatch("//")
                ax_steps.annotate(f"{c['fitted']}/{c['runs']} fitted",
                                  (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                  ha="center", va="bottom", fontsize=8, color="#c0392b")
        ax_steps.plot(list(xs), [c["steps_near"][0] for c in conds], "kD", ms=5,
                      label=f"{100 * NEAR_FIT:.0f}% training accuracy")
        ax_steps.legend(fontsize=8, loc="upper right")
        ax_steps.set_xticks(list(xs), [c["name"] for c in conds], rotation=35, ha="right")
        ax_steps.set(ylabel="optimizer steps", title="(b) steps to fit: bars 100%, marks 99%")

        noisy = sorted((c for c in conds if c["pixels"] == "keep"), key=lambda c: c["noise"])
        ax_err.errorbar([c["noise"] for c in noisy], [100 * c["test_err"][0] for c in noisy],
                        yerr=[0 if math.isnan(c["test_err"][1]) else 100 * c["test_err"][1]
                              for c in noisy], marker="o", capsize=3, label="test error")
        if chance:
            ax_err.axhline(100 * (1 - chance), color="0.5", ls="--", label="chance")
        ax_err.set(xlabel="label corruption (fraction of labels replaced)",
                   ylabel="test error (%)", title="(c) test error vs corruption")
        ax_err.legend(fontsize=9)
        fig.suptitle(f"{study.name}: fitting true and random labels "
                     f"(mean ± std over repetitions)")
        return save_figure(fig, study.out / "memorization.png")


@register_analysis("memorization")
def memorization(study: Study) -> Finding:
    conds = [_condition(study, c) for c in study.cells]
    chance = next((c.chance for c in study.cells if c.chance), None)
    verdict, numbers = _verdict(conds, chance)
    header, rows = (
        ["condition", "label noise", "pixels", "fitted", "train acc (%)", "steps to 99%",
         "steps to 100%", "test acc (%)", "test error (%)"],
        [[c["name"], c["noise"], c["pixels"], f"{c['fitted']}/{c['runs']}",
          pm(*c["train_acc"]), pm(*c["steps_near"], scale=1, digits=0),
          pm(*c["steps"], scale=1, digits=0), pm(*c["test_acc"]),
          pm(*c["test_err"])] for c in conds])
    figures = {"Fitting true and random labels: loss, steps to fit, test error":
               _figure(study, conds, chance)}
    numbers["conditions"] = {c["name"]: {"fitted": c["fitted"], "runs": c["runs"],
                                         "steps_to_fit": c["steps"][0],
                                         "test_acc": c["test_acc"][0]} for c in conds}
    return Finding(verdict, header, rows, figures, numbers)
