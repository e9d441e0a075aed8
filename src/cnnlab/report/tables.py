"""Per-cell summaries of a sweep's runs (mean ± std over repetitions) and their tables.

Everything here is plain Python (no matplotlib), so the sweep driver can print
:func:`format_table` at the end of a sweep cheaply.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.status import FAILED, FINAL_STATUSES, OK, STUCK
from cnnlab.utils.table import text_table

__all__ = [
    "METRICS",
    "METRIC_NAMES",
    "CellSummary",
    "Metric",
    "ReportError",
    "Stat",
    "axis_order_from_spec",
    "cell_label",
    "format_table",
    "human_count",
    "infer_axes",
    "resolve_metric",
    "short_axis_names",
    "summarize",
    "table_csv",
    "table_rows",
    "varying_axes",
]


#: The statuses tables count in columns of their own, in the order shown.
_NOT_OK = tuple(s for s in FINAL_STATUSES if s != OK)  # stuck, diverged, failed


class ReportError(CnnlabError):
    """A report that cannot be made: no store, an empty sweep, an unknown metric."""


@dataclass(frozen=True)
class Metric:
    """A run-row column to summarise: ``column`` in the store, a ``label`` for humans."""

    name: str
    column: str
    label: str
    is_acc: bool  # fraction in [0, 1], shown in percent; else a loss (lower is better)

    def fmt(self, value: float) -> str:
        """``value`` as shown in tables: accuracies in percent, losses with 3 decimals."""
        return f"{100 * value:.1f}" if self.is_acc else f"{value:.3f}"

    @property
    def unit_label(self) -> str:
        """The label with its unit, e.g. ``"test acc (%)"``."""
        return f"{self.label} (%)" if self.is_acc else self.label


_M = [
    Metric("test_acc", "test_acc", "test acc", True),
    Metric("val_acc", "final_val_acc", "val acc", True),
    Metric("best_val_acc", "best_val_acc", "best val acc", True),
    Metric("train_acc", "final_train_acc", "train acc", True),
    Metric("test_loss", "test_loss", "test loss", False),
    Metric("val_loss", "final_val_loss", "val loss", False),
    Metric("train_loss", "final_train_loss", "train loss", False),
]
#: The canonical metric names, for ``--metric`` choices.
METRIC_NAMES = tuple(m.name for m in _M)
#: Metric names accepted by :func:`resolve_metric` (the store's column names work too).
METRICS: dict[str, Metric] = {m.name: m for m in _M} | {
    m.column: m for m in _M if m.column != m.name}


def resolve_metric(name: str | Metric) -> Metric:
    """The :class:`Metric` for ``name`` ("test_acc", "val_acc", "final_val_acc", ...)."""
    if isinstance(name, Metric):
        return name
    try:
        return METRICS[name]
    except KeyError:
        names = ", ".join(m.name for m in _M)
        raise ReportError(f"unknown metric {name!r}; choose one of: {names}") from None


@dataclass(frozen=True)
class Stat:
    """Finite values of one column over a cell's runs, with mean / std (n - 1) / min / max."""

    values: tuple[float, ...] = ()

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation; NaN with fewer than two values."""
        return statistics.stdev(self.values) if len(self.values) > 1 else math.nan

    @property
    def min(self) -> float:
        return min(self.values) if self.values else math.nan

    @property
    def max(self) -> float:
        return max(self.values) if self.values else math.nan


def _finite(v: Any) -> float | None:
    if v is None or isinstance(v, str):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


@dataclass
class CellSummary:
    """One grid cell: its parameters and the runs (repetitions) recorded for it."""

    cell: str
    params: dict[str, Any]
    runs: list[dict] = field(default_factory=list)
    #: axis -> its values in the spec's order (shared by the cells of one summary)
    order: dict[str, list[Any]] = field(default_factory=dict, repr=False)

    def stat(self, column: str) -> Stat:
        """The finite values of ``column`` over this cell's runs."""
        vals = (_finite(r.get(column)) for r in self.runs)
        return Stat(tuple(v for v in vals if v is not None))

    def count(self, status: str) -> int:
        """How many runs ended with ``status``."""
        return sum(1 for r in self.runs if r.get("status") == status)

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def all_stuck(self) -> bool:
        """Every run of the cell that finished with numbers (not failed) stuck at chance."""
        stuck = self.count(STUCK)
        return stuck > 0 and stuck == len(self.runs) - self.count(FAILED)

    def first(self, column: str) -> Any:
        """The first non-null value of ``column`` (params, FLOPs, classes: same for all reps)."""
        return next((r[column] for r in self.runs if r.get(column) is not None), None)

    @property
    def num_classes(self) -> int | None:
        return self.first("num_classes")

    @property
    def chance(self) -> float | None:
        """Chance accuracy 1 / classes, when the runs recorded their class count."""
        n = self.num_classes
        return 1.0 / n if n else None

    def status_note(self, sep: str = ", ") -> str:
        """``"stuck 2/3, failed 1/3"`` for the statuses other than ok; ``""`` if all ok."""
        parts = [f"{s} {self.count(s)}/{self.n_runs}" for s in _NOT_OK if self.count(s)]
        return sep.join(parts)


# -- axes and ordering ---------------------------------------------------------------------

def infer_axes(runs: Iterable[dict]) -> list[str]:
    """The cell-parameter keys of ``runs`` in first-seen order (when no spec names them)."""
    axes: list[str] = []
    for r in runs:
        for k in r.get("cell_params") or {}:
            if k not in axes:
                axes.append(k)
    return axes


def value_key(v: Any, order: Sequence[Any] | None = None) -> tuple:
    """Sort key: the value's place in ``order`` (the spec's list) if it is there; else numbers
    numerically, then strings, with None first."""
    if order is not None:
        for i, o in enumerate(order):
            if o == v and isinstance(o, bool) == isinstance(v, bool):
                return (0, i)
    if v is None:
        return (1, 0)
    if isinstance(v, bool):
        return (2, int(v))
    if isinstance(v, int | float):
        return (2, v)
    return (3, str(v))


def axis_values(cells: Sequence[CellSummary], axis: str) -> list[Any]:
    """The distinct values of ``axis`` over ``cells``, in the spec's or natural order."""
    seen: dict[str, Any] = {}
    for c in cells:
        v = c.params.get(axis)
        seen.setdefault(repr(v), v)
    order = cells[0].order.get(axis) if cells else None
    return sorted(seen.values(), key=lambda v: value_key(v, order))


def axis_order_from_spec(spec: Any, axes: Sequence[str]) -> dict[str, list[Any]]:
    """Each axis's list of values as written in a sweep spec, found anywhere in it as a dotted
    key (``{"grid": {"model.norm": [...]}}``) or nested tables (``{"grid": {"model":
    {"norm": [...]}}}``, what TOML makes of ``model.norm = [...]``)."""
    found: dict[str, list[Any]] = {}

    def resolve(node: dict, axis: str) -> Any:
        if axis in node:
            return node[axis]
        head, _, rest = axis.partition(".")
        if rest and isinstance(node.get(head), dict):
            return resolve(node[head], rest)
        return None

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for a in axes:
                v = resolve(node, a)
                if a not in found and isinstance(v, list) and v:
                    found[a] = v
            for v in node.values():
                walk(v)

    walk(spec)
    return found


def varying_axes(cells: Sequence[CellSummary], axes: Sequence[str]) -> list[str]:
    """The axes that take more than one value over ``cells`` (what plots lay out)."""
    return [a for a in axes if len(axis_values(cells, a)) > 1]


def short_axis_names(axes: Sequence[str]) -> dict[str, str]:
    """``model.blocks`` -> ``blocks``, unless two axes would share a short name."""
    last = [a.rsplit(".", 1)[-1] for a in axes]
    return {a: (s if last.count(s) == 1 else a) for a, s in zip(axes, last)}


def fmt_value(v: Any) -> str:
    """An axis value for labels: ``0.001`` -> ``"0.001"``, ``3.0`` -> ``"3"``."""
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def cell_label(cell: CellSummary, axes: Sequence[str], sep: str = ", ") -> str:
    """``"blocks=3, layers=2"`` over ``axes`` (short names); the cell key if no axes."""
    if not axes:
        return cell.cell
    short = short_axis_names(axes)
    return sep.join(f"{short[a]}={fmt_value(cell.params.get(a))}" for a in axes)


def summarize(runs: Iterable[dict], axes: Sequence[str] | None = None,
              order: dict[str, list[Any]] | None = None) -> list[CellSummary]:
    """Group run rows by cell, ordered by the axes' values (first axis slowest). ``order``
    gives an axis's values in the order to show them (see :func:`axis_order_from_spec`);
    other values sort naturally."""
    runs = list(runs)
    if axes is None:
        axes = infer_axes(runs)
    order = dict(order or {})
    cells: dict[str, CellSummary] = {}
    for r in runs:
        key = str(r.get("cell"))
        if key not in cells:
            cells[key] = CellSummary(key, dict(r.get("cell_params") or {}), order=order)
        cells[key].runs.append(r)
    for c in cells.values():
        c.runs.sort(key=lambda r: (r.get("rep") is None, r.get("rep")))
    return sorted(cells.values(),
                  key=lambda c: (tuple(value_key(c.params.get(a), order.get(a)) for a in axes),
                                 c.cell))


# -- tables --------------------------------------------------------------------------------

def human_count(n: float | None) -> str:
    """``1234567`` -> ``"1.23M"``; ``None`` -> ``"—"``."""
    if n is None:
        return "—"
    n = float(n)
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            v = n / div
            return f"{v:.3g}{suffix}" if v < 100 else f"{v:.0f}{suffix}"
    return f"{n:.0f}"


def mean_pm_std(stat: Stat, metric: Metric) -> str:
    """``"61.2 ± 1.3"``; just the mean for one value; ``"—"`` for none."""
    if stat.n == 0:
        return "—"
    if stat.n == 1:
        return metric.fmt(stat.mean)
    return f"{metric.fmt(stat.mean)} ± {metric.fmt(stat.std)}"


def _secondary(metric: Metric) -> Metric:
    """The second accuracy column shown beside the chosen metric."""
    return METRICS["val_acc"] if metric.name != "val_acc" else METRICS["test_acc"]


def _as_cells(runs_or_cells: Iterable, axes: Sequence[str] | None, spec: Any = None
              ) -> tuple[list[CellSummary], list[str]]:
    items = list(runs_or_cells)
    if items and isinstance(items[0], CellSummary):
        cells = items
        axes = list(axes) if axes is not None else infer_axes(
            {"cell_params": c.params} for c in cells)
    else:
        axes = list(axes) if axes is not None else infer_axes(items)
        cells = summarize(items, axes, axis_order_from_spec(spec, axes) if spec else None)
    return cells, list(axes)


def table_rows(runs_or_cells: Iterable, axes: Sequence[str] | None = None,
               metric: str | Metric = "test_acc", *, spec: Any = None
               ) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of the summary table (what Markdown and HTML show)."""
    m = resolve_metric(metric)
    m2 = _secondary(m)
    cells, axes = _as_cells(runs_or_cells, axes, spec)
    short = short_axis_names(axes)
    header = [short[a] for a in axes] or ["cell"]
    header += [m.unit_label, m2.unit_label, "params", "FLOPs", "wall time (s)",
               "runs", *_NOT_OK]
    rows = []
    for c in cells:
        t = c.stat("wall_time")
        row = [fmt_value(c.params.get(a)) for a in axes] or [c.cell]
        row += [
            mean_pm_std(c.stat(m.column), m),
            mean_pm_std(c.stat(m2.column), m2),
            human_count(c.first("params")),
            human_count(c.first("flops")),
            "—" if t.n == 0 else f"{t.mean:.1f}",
            str(c.n_runs),
            *(str(c.count(s)) for s in _NOT_OK),
        ]
        rows.append(row)
    return header, rows


def format_table(runs_or_cells: Iterable, axes: Sequence[str] | None = None,
                 metric: str | Metric = "test_acc", *, spec: Any = None) -> str:
    """A Markdown table, one line per cell, columns aligned so it also reads in a terminal.

    ``runs_or_cells`` is either run rows (``ResultsStore.runs(sweep)``) or the output of
    :func:`summarize`; ``axes`` the sweep's axis names (default: the cells' parameter keys);
    ``spec`` the sweep spec, to list axis values in the order it gives them. Accuracies are
    mean ± sample std over repetitions, in percent; stuck / diverged runs count in the mean,
    failed runs (no numbers) do not.
    """
    header, rows = table_rows(runs_or_cells, axes, metric=metric, spec=spec)
    n_axes = len(header) - 9  # axis columns (left-aligned), then the numbers
    return text_table(header, rows, right=range(n_axes, len(header)), markdown=True)


def table_csv(runs_or_cells: Iterable, axes: Sequence[str] | None = None,
              metric: str | Metric = "test_acc", *, spec: Any = None) -> str:
    """The summary as CSV with raw numbers: fractions, counts, seconds; blank when missing."""
    m = resolve_metric(metric)
    m2 = _secondary(m)
    cells, axes = _as_cells(runs_or_cells, axes, spec)

    def num(v: float | None) -> str:
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v)

    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([*axes, "cell", "runs", *(f"n_{s}" for s in FINAL_STATUSES),
                f"{m.name}_mean", f"{m.name}_std", f"{m.name}_n",
                f"{m2.name}_mean", f"{m2.name}_std",
                "params", "flops", "wall_time_mean", "wall_time_std", "images_per_s_mean"])
    for c in cells:
        s1, s2, t, ips = (c.stat(m.column), c.stat(m2.column), c.stat("wall_time"),
                          c.stat("images_per_s"))
        w.writerow([*(c.params.get(a, "") for a in axes), c.cell, c.n_runs,
                    *(c.count(s) for s in FINAL_STATUSES),
                    num(s1.mean), num(s1.std), s1.n, num(s2.mean), num(s2.std),
                    num(c.first("params")), num(c.first("flops")),
                    num(t.mean), num(t.std), num(ips.mean)])
    return out.getvalue()
