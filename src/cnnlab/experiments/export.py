"""``cnnlab.export_run(RUN_DIR, OUT_DIR)``: a training run folder as a model folder whose card
says how the weights were made: the settings that differ from cnnlab's defaults (the
recipe), the seed, the command and the data (spec, split seed and sizes)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path

from cnnlab.config import RunConfig
from cnnlab.models import hub


def run_training(run_cfg: Mapping) -> dict:
    """How a run was trained, from its ``config.json``, for the card."""
    defaults = RunConfig().flat()
    flat = {f"{g}.{k}": v for g, table in dict(run_cfg.get("config") or {}).items()
            if isinstance(table, Mapping) for k, v in table.items()}
    norm = lambda v: json.loads(json.dumps(v, default=str))  # noqa: E731 (tuples -> lists)
    recipe = {k: v for k, v in flat.items()
              if k != "data.spec" and (k not in defaults or norm(defaults[k]) != norm(v))}
    ds = dict(run_cfg.get("dataset") or {})
    argv = run_cfg.get("command")
    command = ("cnnlab " + " ".join(shlex.quote(str(a)) for a in argv[1:])
               if isinstance(argv, list) and argv else None)
    return {
        "recipe": recipe, "seed": run_cfg.get("seed"), "command": command,
        "data": {"spec": flat.get("data.spec"), "sizes": ds.get("sizes"),
                 "split_seed": flat.get("data.split_seed", defaults["data.split_seed"]),
                 "test_fraction": flat.get("data.test_fraction",
                                           defaults["data.test_fraction"]),
                 "val_fraction": flat.get("data.val_fraction", defaults["data.val_fraction"])},
    }


def export_run(run_dir: str | Path, out_dir: str | Path, which: str = "best",
               extra: Mapping | None = None) -> Path:
    """:func:`cnnlab.models.hub.export_run` with the card's training section filled from
    the run's ``config.json``. Returns ``out_dir``."""
    run_cfg_path = Path(run_dir) / "config.json"
    training = None
    if run_cfg_path.is_file():
        try:
            training = run_training(json.loads(run_cfg_path.read_text()))
        except (ValueError, AttributeError, TypeError):
            training = None  # hub.export_run reports what is wrong with the folder
    return hub.export_run(run_dir, out_dir, which=which, training=training, extra=extra)
