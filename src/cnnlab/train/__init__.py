"""Training: the loop, callbacks, optimizers and schedules, checkpoints and resume.

The trainer takes any ``nn.Module``; building the model a config names is done one floor
up, in :mod:`cnnlab.experiments.run`.
"""

from cnnlab.train.callbacks import (
    Callback,
    Checkpoint,
    CSVLogger,
    DataInit,
    EarlyStopping,
    Penalty,
    PreciseBN,
    ProgressBar,
    ProximalL1,
    SparsityReport,
    WeightAveraging,
    callbacks_from_config,
)
from cnnlab.train.run import fit, saved_config
from cnnlab.train.trainer import Loaders, RunResult, Trainer

__all__ = [
    "CSVLogger", "Callback", "Checkpoint", "EarlyStopping", "Loaders", "Penalty", "PreciseBN",
    "ProgressBar", "ProximalL1", "RunResult", "SparsityReport", "Trainer",
    "DataInit", "WeightAveraging",
    "callbacks_from_config", "fit", "saved_config",
]
