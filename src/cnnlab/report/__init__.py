"""Sweep reports from the results store: tables (Markdown, CSV), PNG figures and an HTML page.

>>> paths = write_report("runs/seed-depth")          # reads runs/seed-depth/results.sqlite
>>> paths["heatmap"]                                   # runs/seed-depth/report/heatmap.png

Figures need matplotlib, imported only when a report is written; :func:`format_table` and
the rest of :mod:`cnnlab.report.tables` do not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.experiments.store import STORE_FILENAME, ResultsStore, StoreError
from cnnlab.report.tables import (
    METRICS,
    CellSummary,
    Metric,
    ReportError,
    axis_order_from_spec,
    format_table,
    resolve_metric,
    summarize,
    table_csv,
    table_rows,
    varying_axes,
)
from cnnlab.status import FAILED, FINAL_STATUSES, STUCK, is_failure
from cnnlab.utils.io import atomic_write_text

__all__ = [
    "METRICS",
    "CellSummary",
    "Report",
    "ReportError",
    "SweepResults",
    "format_table",
    "generate_report",
    "load_sweep",
    "summarize",
    "write_report",
]

REPORT_DIRNAME = "report"


@dataclass
class SweepResults:
    """Everything the store holds about one sweep, loaded into memory."""

    sweep: str
    runs: list[dict]
    axes: list[str]
    curves: dict[tuple[str, int], list[dict]]
    spec: dict | None = None
    store_path: Path | None = None

    @property
    def sweep_dir(self) -> Path | None:
        """The sweep folder (the store's folder)."""
        return self.store_path.parent if self.store_path else None


@dataclass
class Report:
    """A written report: file paths by kind, the Markdown table and the cell summaries."""

    sweep: str
    paths: dict[str, Path]
    table: str
    cells: list[CellSummary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. the metric fallen back to
    verdict: str = ""  # the phenomenon analysis's one sentence, when the spec names one


def load_sweep(sweep_dir: str | Path, sweep: str | None = None) -> SweepResults:
    """Read one sweep from ``sweep_dir/results.sqlite``; ``sweep=None`` takes the only one."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ReportError(f"no sweep folder {sweep_dir}")
    store_path = sweep_dir / STORE_FILENAME
    if not store_path.is_file():
        raise ReportError(f"no results store in {sweep_dir} (expected {STORE_FILENAME}; "
                          f"run `cnnlab sweep` first)")
    try:
        with ResultsStore(store_path, readonly=True) as store:
            names = store.sweeps()
            if not names:
                raise ReportError(f"results store {store_path} is empty: no run recorded yet")
            if sweep is None:
                if len(names) > 1:
                    raise ReportError(f"results store {store_path} holds sweeps "
                                      f"{', '.join(names)}: choose one with --sweep")
                sweep = names[0]
            elif sweep not in names:
                raise ReportError(f"no sweep {sweep!r} in {store_path}; it holds "
                                  f"{', '.join(names)}")
            runs = store.runs(sweep)
            meta = store.sweep_meta(sweep)
            curves = store.all_curves(sweep)
    except StoreError as e:
        raise ReportError(str(e)) from None
    if not runs:
        raise ReportError(f"sweep {sweep!r} in {store_path} has no finished run yet")
    axes = list(meta["axes"]) if meta and meta.get("axes") else []
    for r in runs:  # axes the spec did not list (an old spec) still separate cells
        for k in r.get("cell_params") or {}:
            if k not in axes:
                axes.append(k)
    return SweepResults(sweep, runs, axes, curves, meta["spec"] if meta else None, store_path)


def _notes(cells: list[CellSummary], metric_label: str) -> list[str]:
    n_runs = sum(c.n_runs for c in cells)
    counts = {s: sum(c.count(s) for c in cells) for s in FINAL_STATUSES}
    status = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    return [
        f"{len(cells)} cells, {n_runs} runs ({status}).",
        f"{metric_label}: mean ± sample std over repetitions, in percent for accuracies. "
        "Stuck runs (final accuracy within a small margin of chance) count in the mean; "
        "failed runs have no numbers and do not.",
    ]


def _failures(cells: list[CellSummary]) -> list[str]:
    out = []
    for c in cells:
        for r in c.runs:
            if is_failure(r.get("status")) and r.get("error"):
                msg = str(r["error"]).strip().splitlines()[-1]  # whole: never cut mid-word
                out.append(f"{c.cell} rep {r.get('rep')} ({r['status']}): {msg}")
    return out


def _write_files(res: SweepResults, cells: list[CellSummary], m: Metric,
                 fallback: list[str]) -> tuple[dict[str, Path], str, str]:
    """Write every report file; the paths by kind, the Markdown table and the verdict."""
    from cnnlab.report import plots  # matplotlib: only when figures are drawn
    from cnnlab.report.html import render_html, write_html
    from cnnlab.report.phenomena import Study, analyze, json_ready

    out = Path(res.sweep_dir) / REPORT_DIRNAME
    out.mkdir(exist_ok=True)
    grid_axes = varying_axes(cells, res.axes)
    table = format_table(cells, res.axes, m)
    notes = fallback + _notes(cells, m.label)
    failures = _failures(cells)
    analysis = (res.spec or {}).get("analysis")
    finding = analyze(analysis, Study(res, cells, out)) if analysis else None
    md = f"# {res.sweep}\n\n"
    if finding:
        md += f"**Verdict:** {finding.verdict}\n\n{finding.table}\n\n"
    md += "\n\n".join(notes) + "\n\n" + table + "\n"
    if failures:
        md += "\n## Failed or diverged runs\n\n" + "".join(f"- {f}\n" for f in failures)
    paths: dict[str, Path] = {
        "table_md": atomic_write_text(out / "table.md", md),
        "table_csv": atomic_write_text(out / "table.csv", table_csv(cells, res.axes, m)),
    }
    if finding:
        paths["verdict"] = atomic_write_text(out / "verdict.json", json.dumps(
            json_ready({"analysis": analysis, "verdict": finding.verdict,
                        "numbers": finding.numbers}), indent=2, default=str) + "\n")
        for i, fig in enumerate(finding.figures.values()):
            paths[analysis if i == 0 else f"{analysis}_{i + 1}"] = Path(fig)
    if len(grid_axes) >= 2:
        paths["heatmap"] = plots.plot_heatmap(cells, grid_axes, out / "heatmap.png", m,
                                              res.sweep)
    else:
        paths["line"] = plots.plot_line(cells, grid_axes[0] if grid_axes else None,
                                        out / "line.png", m, res.sweep)
    paths["acc_vs_params"] = plots.plot_metric_vs_params(cells, grid_axes,
                                                         out / "acc_vs_params.png", m,
                                                         res.sweep)
    paths["curves"] = plots.plot_curves(cells, grid_axes, res.curves, out / "curves.png",
                                        "acc", res.sweep)
    paths["loss_curves"] = plots.plot_curves(cells, grid_axes, res.curves,
                                             out / "loss_curves.png", "loss", res.sweep)
    header, rows = table_rows(cells, res.axes, m)
    captions = {
        "heatmap": f"Mean {m.label} over the grid",
        "line": f"{m.label} by {grid_axes[0] if grid_axes else 'cell'}",
        "acc_vs_params": f"{m.label} vs parameters",
        "curves": "Training and validation accuracy per epoch",
        "loss_curves": "Training and validation loss per epoch",
    }
    # embedded (data: URIs): report.html is one file that can be mailed as it is
    figures = {cap: Path(p) for cap, p in (finding.figures.items() if finding else ())}
    figures.update({captions[k]: Path(p) for k, p in paths.items() if k in captions})
    page = render_html(f"Sweep {res.sweep}", header, rows, max(len(res.axes), 1), figures,
                       notes + ([f"Failed or diverged: {f}" for f in failures]),
                       [c.count(STUCK) > 0 for c in cells],
                       verdict=finding.verdict if finding else "",
                       finding_tables=finding.tables if finding else ())
    paths["html"] = write_html(out / "report.html", page)
    return paths, table, finding.verdict if finding else ""


def generate_report(sweep_dir: str | Path, sweep: str | None = None,
                    metric: str = "test_acc") -> Report:
    """Write the report of one sweep into ``sweep_dir/report/`` and describe it.

    Files (keys of ``Report.paths``): ``table_md``, ``table_csv``, ``heatmap`` (two or more
    varying axes) or ``line`` (one or none), ``acc_vs_params``, ``curves`` (accuracy),
    ``loss_curves`` and ``html``.
    """
    m = resolve_metric(metric)
    res = load_sweep(sweep_dir, sweep)
    cells = summarize(res.runs, res.axes, axis_order_from_spec(res.spec, res.axes))
    have_numbers = [r for r in res.runs if r.get("status") != FAILED]
    fallback: list[str] = []
    if have_numbers and not any(r.get(m.column) is not None for r in have_numbers):
        alt = [name for name, mm in METRICS.items() if name == mm.name and mm.is_acc
               and any(r.get(mm.column) is not None for r in have_numbers)]
        if m.name == "test_acc" and alt:  # a dataset without a test split: say so, go on
            fallback.append(f"No run recorded test_acc (no test split?): the report shows "
                            f"{METRICS[alt[0]].label} instead.")
            m = METRICS[alt[0]]
        else:
            hint = f"; try --metric {alt[0]}" if alt else ""
            raise ReportError(f"no run of sweep {res.sweep!r} recorded {m.name}{hint}")

    try:
        paths, table, verdict = _write_files(res, cells, m, fallback)
    except OSError as e:
        raise ReportError(f"cannot write the report into {Path(sweep_dir) / REPORT_DIRNAME}: "
                          f"{e.strerror or e}") from None
    return Report(res.sweep, paths, table, cells, fallback, verdict)


def write_report(sweep_dir: str | Path, sweep: str | None = None,
                 metric: str = "test_acc") -> dict[str, Path]:
    """Regenerate ``sweep_dir/report/`` from ``sweep_dir/results.sqlite``; the written paths.

    See :func:`generate_report` for the files; ``metric`` picks what tables and plots
    summarise (``test_acc``, ``val_acc``, ``best_val_acc``, ``train_acc`` or a loss).
    """
    return generate_report(sweep_dir, sweep, metric).paths
