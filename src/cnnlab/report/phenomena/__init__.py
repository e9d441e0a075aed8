"""Phenomenon analyses: the figure, table and one-sentence verdict a preset's report adds.

A sweep spec names one with ``analysis = "NAME"``; :func:`analyze` finds it among the
modules of this package (one per phenomenon, each registering itself with
:func:`register_analysis`) and runs it on the stored results. Every verdict is computed
from those results and says so when a phenomenon does not appear.

    @register_analysis("memorization")
    def memorization(study: Study) -> Finding: ...
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.config import parse_value
from cnnlab.report.tables import CellSummary, ReportError, fmt_value
from cnnlab.utils.table import text_table

if TYPE_CHECKING:
    from cnnlab.report import SweepResults

__all__ = ["Finding", "Study", "analyze", "list_analyses", "register_analysis"]


@dataclass
class Finding:
    """What an analysis found: ``verdict`` (one sentence), a table (``header``, ``rows``),
    the PNG ``figures`` by caption, the ``numbers`` behind the verdict (for JSON) and any
    ``more_tables`` (``(header, rows)`` pairs, shown after the first)."""

    verdict: str
    header: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    figures: dict[str, Path] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    more_tables: list[tuple[list[str], list[list[Any]]]] = field(default_factory=list)

    @property
    def tables(self) -> list[tuple[list[str], list[list[Any]]]]:
        """Every table as ``(header, rows)``, the main one first."""
        main = [(self.header, self.rows)] if self.header else []
        return main + [t for t in self.more_tables if t[0]]

    @property
    def table(self) -> str:
        """The tables in Markdown, a blank line apart ("" when there is none)."""
        return "\n\n".join(markdown_table(h, r) for h, r in self.tables)


@dataclass
class Study:
    """An analysis's input: the sweep's stored results, its cells and the report folder."""

    results: SweepResults
    cells: list[CellSummary]
    out: Path

    @property
    def name(self) -> str:
        return self.results.sweep

    def curves(self, cell: CellSummary) -> list[list[dict]]:
        """The per-epoch rows of each of the cell's runs that has curves."""
        runs = (self.results.curves.get((cell.cell, int(r["rep"]))) for r in cell.runs)
        return [c for c in runs if c]

    def setting(self, cell: CellSummary, key: str, default: Any = None) -> Any:
        """The value of config key ``key`` (``"data.label_noise"``) in ``cell``: its grid
        value, its variant's, else the sweep's base or overrides, else ``default``."""
        if key in cell.params:
            return cell.params[key]
        spec = self.results.spec or {}
        variant = cell.params.get("variant")
        if variant is not None and key in spec.get("variants", {}).get(variant, {}):
            return spec["variants"][variant][key]
        for item in reversed(spec.get("overrides", [])):
            k, _, v = item.partition("=")
            if k.strip() == key:
                return parse_value(v.strip())  # as apply_overrides reads it
        group, _, name = key.partition(".")
        return spec.get("base", {}).get(group, {}).get(name, default)


Analysis = Callable[[Study], Finding]
_ANALYSES: dict[str, Analysis] = {}


def register_analysis(name: str) -> Callable[[Analysis], Analysis]:
    def deco(fn: Analysis) -> Analysis:
        _ANALYSES[name] = fn
        return fn
    return deco


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def list_analyses() -> list[str]:
    _load_all()
    return sorted(_ANALYSES)


def analyze(name: str, study: Study) -> Finding:
    """Run the analysis ``name`` (see :func:`list_analyses`) on ``study``."""
    _load_all()
    if name not in _ANALYSES:
        raise ReportError(f"unknown analysis {name!r} in the sweep spec; known: "
                          f"{', '.join(sorted(_ANALYSES))}")
    study.out.mkdir(parents=True, exist_ok=True)
    return _ANALYSES[name](study)


# -- small helpers the analyses share ------------------------------------------------------

def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (NaN std for one value; NaN both for none) of finite values."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else math.nan)


def pm(mean: float, std: float, scale: float = 100.0, digits: int = 1) -> str:
    """``"42.1 ± 0.8"`` (percent by default); ``"–"`` for NaN; no ± for one value."""
    if math.isnan(mean):
        return "–"
    text = f"{mean * scale:.{digits}f}"
    return text if math.isnan(std) else f"{text} ± {std * scale:.{digits}f}"


def json_ready(value: Any) -> Any:
    """``value`` with NaN and infinite floats as None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An analysis table in Markdown, through the project's one table formatter."""
    return text_table(header, [[fmt_value(v) for v in row] for row in rows], markdown=True)


def held_out_acc(run: dict) -> float | None:
    """The run's test accuracy (its validation accuracy for a dataset without a test
    split)."""
    acc = run.get("test_acc")
    return run.get("final_val_acc") if acc is None else acc


def test_error(run: dict) -> float | None:
    """1 - :func:`held_out_acc`."""
    acc = held_out_acc(run)
    return None if acc is None else 1.0 - float(acc)


def mean_curve(curves: list[list[dict]], key: str) -> tuple[list[float], list[float]]:
    """(x = steps, mean of ``key``) over runs, cut to the shortest run's length."""
    if not curves:
        return [], []
    n = min(len(c) for c in curves)
    xs = [float(curves[0][i].get("step") or curves[0][i]["epoch"]) for i in range(n)]
    ys = [statistics.fmean(float(c[i][key]) for c in curves
                           if c[i].get(key) is not None and math.isfinite(c[i][key]))
          if any(c[i].get(key) is not None for c in curves) else math.nan for i in range(n)]
    return xs, ys
