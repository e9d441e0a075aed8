"""Speed runs: a record recipe (a TOML file of config values, like every recipe of
:func:`cnnlab.config.list_recipes`) trained by the ordinary trainer, timed from set-up to
the last evaluation.

    result = speedrun("fast", data="folder:cifar10-train.tar.gz", out="runs/speed")
    result.summary["test_acc"], result.summary["test_acc_no_tta"], result.summary["total_wall_time"]

The clock starts once the dataset is decoded in memory (decoding a JPEG archive is not
training) and stops after the final test evaluation: loaders, model construction, the
whitening fit, training and the TTA evaluation are all inside it, as in the reference
script it is compared with. With ``curve=True`` the test split is also evaluated after
each epoch (without TTA; it costs time, so it is off by default) and the time to
``target`` is the clock at the end of the first evaluation that reaches it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

# recipes are the config's own mechanism (cnnlab.config; `cnnlab recipes` lists them)
from cnnlab.config import apply_overrides, list_recipes, recipe_config
from cnnlab.errors import ConfigError
from cnnlab.train.callbacks import Callback
from cnnlab.train.run import prepare_data
from cnnlab.utils.io import atomic_write_json

DEFAULT_RECIPE = "fast"


class _Clock(Callback):
    """Seconds since ``t0`` at the end of each epoch (after its evaluations), and the first
    epoch whose per-epoch test accuracy reached ``target``."""

    def __init__(self, t0: float, target: float):
        self.t0, self.target = t0, target
        self.hit: dict | None = None

    def on_epoch_end(self, trainer, epoch, metrics):
        metrics["elapsed"] = time.perf_counter() - self.t0
        acc = metrics.get("test_acc")
        if self.hit is None and acc is not None and acc >= self.target:
            self.hit = {"epoch": epoch + 1, "seconds": metrics["elapsed"], "test_acc": acc}


@dataclass
class SpeedrunResult:
    summary: dict
    run_dir: Path | None


def speedrun(recipe: str | Path = DEFAULT_RECIPE, data: str | None = None,
             out: str | Path | None = None, *, target: float = 0.94, seed: int | None = None,
             epochs: int | None = None, device: str | None = None, curve: bool = False,
             limit: int | None = None, overrides: list[str] | None = None,
             progress: bool | None = None) -> SpeedrunResult:
    """Train ``recipe`` on ``data`` and time it (module docstring); writes a run folder to
    ``out`` (as ``cnnlab train``) whose ``summary.json`` adds ``total_wall_time`` (s),
    ``test_acc_no_tta``, ``target`` and ``time_to_target`` (s, None when not reached or
    ``curve`` is off). ``limit``: train on a seeded, class-stratified subset of that many
    images (``data.train_size``)."""
    if not 0 < target <= 1:
        raise ConfigError(f"target accuracy must be in (0, 1], got {target}")
    extra = {k: v for k, v in {"data.spec": data, "train.seed": seed, "train.epochs": epochs,
                               "train.device": device, "data.train_size": limit}.items()
             if v is not None}
    if curve:
        extra["train.test_curve"] = True
    cfg = recipe_config(recipe, list(overrides or []))
    cfg = apply_overrides(cfg, extra) if extra else cfg
    from cnnlab.experiments.run import train_run  # one floor up from train/

    prepare_data(cfg)  # decode once, outside the clock (cached for train_run)
    t0 = time.perf_counter()
    clock = _Clock(t0, target)
    result = train_run(cfg, out, progress=progress, callbacks=[clock])
    total = time.perf_counter() - t0
    s = result.summary
    s.update(recipe=str(recipe), total_wall_time=total, target=target,
             time_to_target=clock.hit["seconds"] if clock.hit else None,
             target_epoch=clock.hit["epoch"] if clock.hit else None)
    if result.run_dir is not None:
        atomic_write_json(Path(result.run_dir) / "summary.json", s)
    return SpeedrunResult(s, result.run_dir)


__all__ = ["DEFAULT_RECIPE", "SpeedrunResult", "list_recipes", "recipe_config", "speedrun"]
