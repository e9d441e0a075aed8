"""Experiments: sweep specifications, the executor and the results store."""

from __future__ import annotations

from pathlib import Path

from cnnlab.experiments.executor import SweepResult, run_sweep
from cnnlab.experiments.spec import SweepSpec, list_presets, load_spec, spec_from_dict


def sweep(spec_or_path: str | Path | SweepSpec | dict, out: str | Path | None = None, *,
          data: str | None = None, overrides: list[str] | None = None, reps: int | None = None,
          seed: int | None = None,
          workers: int | None = None, threads: int | None = None, force: bool = False,
          report: bool = True, log=print) -> SweepResult:
    """Run a sweep (preset name, TOML path, dict or SweepSpec) and return its results.

    ``data`` replaces ``data.spec``; ``overrides`` (``["optim.lr=3e-3"]``) apply to every
    cell; ``seed`` replaces the sweep's base seed (run seeds derive from it); the default
    folder is ``sweeps/NAME``.
    """
    if isinstance(spec_or_path, SweepSpec):
        spec = spec_or_path
    elif isinstance(spec_or_path, dict):
        spec = spec_from_dict(spec_or_path)
    else:
        spec = load_spec(spec_or_path)
    extra = list(overrides or [])
    if data:
        extra.insert(0, f"data.spec={data!r}")
    if extra or reps or seed is not None:
        spec = spec_from_dict({**spec.to_dict(), "overrides": spec.overrides + extra,
                               "reps": reps or spec.reps,
                               "seed": spec.seed if seed is None else seed})
    folder = Path(out) if out else Path("sweeps") / spec.name
    return run_sweep(spec, folder, workers=workers, threads=threads, force=force,
                     report=report, log=log)


__all__ = ["SweepResult", "SweepSpec", "list_presets", "load_spec", "run_sweep", "sweep"]
