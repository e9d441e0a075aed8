"""Experiments: sweep specifications, the executor, the results store and the wiring that
builds a run's model from its config (:mod:`cnnlab.experiments.run`).

Running a sweep and writing its report is :func:`cnnlab.sweep` (``cnnlab/api.py``): this
package never imports :mod:`cnnlab.report`.
"""

from __future__ import annotations

from cnnlab.experiments.executor import SweepResult, run_sweep
from cnnlab.experiments.spec import (
    SweepSpec,
    list_presets,
    load_spec,
    resolve_spec,
    spec_from_dict,
)

__all__ = ["SweepResult", "SweepSpec", "list_presets", "load_spec", "resolve_spec",
           "run_sweep", "spec_from_dict"]
