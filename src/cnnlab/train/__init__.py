"""Training: the loop, callbacks, optimizers and schedules, checkpoints and resume."""

from cnnlab.train.callbacks import Callback, Checkpoint, CSVLogger, EarlyStopping, ProgressBar
from cnnlab.train.run import fit, saved_config, train_run
from cnnlab.train.trainer import Loaders, RunResult, Trainer

__all__ = [
    "CSVLogger", "Callback", "Checkpoint", "EarlyStopping", "Loaders", "ProgressBar",
    "RunResult", "Trainer", "fit", "saved_config", "train_run",
]
