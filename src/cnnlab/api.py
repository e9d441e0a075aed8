"""Entry points that span layers: run a sweep, then write its report.

``cnnlab.sweep`` is :func:`sweep` here, above both :mod:`cnnlab.experiments` (which runs
sweeps and never imports the report) and :mod:`cnnlab.report` (which reads the store).
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.experiments import SweepResult, SweepSpec, resolve_spec, run_sweep
from cnnlab.report import generate_report


def sweep(spec_or_path: str | Path | SweepSpec | dict, out: str | Path | None = None, *,
          data: str | None = None, overrides: list[str] | None = None, reps: int | None = None,
          seed: int | None = None, workers: int | None = None, threads: int | None = None,
          force: bool = False, report: bool = True, log=print,
          stack_reps: str = "auto", recipe: str | None = None, backend: str | None = None,
          address: str | None = None, gpus_per_run: float | None = None) -> SweepResult:
    """Run a sweep (preset name, TOML path, dict or SweepSpec) and return its results;
    with ``report`` (default) write ``OUT/report/`` and fill ``result.report`` (paths by
    kind) and ``result.table`` (Markdown).

    ``data`` replaces ``data.spec``; ``overrides`` (``["optim.lr=3e-3"]``) apply to every
    cell; ``seed`` replaces the sweep's base seed (run seeds derive from it); the default
    folder is ``sweeps/NAME``; ``stack_reps`` (auto, on, off) trains each cell's repetitions
    as one stacked model (:mod:`cnnlab.experiments.stacked`); ``recipe`` goes under the
    base of every cell (``cnnlab recipes``); ``backend`` (``local``, the default, or
    ``ray``), ``address`` and ``gpus_per_run`` override the spec's, and send the runs to a
    Ray cluster (:mod:`cnnlab.experiments.ray_backend`).
    """
    spec = resolve_spec(spec_or_path, data=data, overrides=overrides, reps=reps, seed=seed,
                        recipe=recipe)
    folder = Path(out) if out else Path("sweeps") / spec.name
    result = run_sweep(spec, folder, workers=workers, threads=threads, force=force, log=log,
                       stack_reps=stack_reps, backend=backend, address=address,
                       gpus_per_run=gpus_per_run)
    if report and result.runs:
        rep = generate_report(folder, spec.name)
        result.report, result.table, result.verdict = rep.paths, rep.table, rep.verdict
    return result


__all__ = ["sweep"]
