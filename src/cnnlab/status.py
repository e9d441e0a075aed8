"""The statuses of a run, defined once for the trainer, the results store, the sweep
executor, the report and the command line.

    Trainer.fit ends      ok | stopped (early stopping) | diverged (non-finite loss)
    a stored run holds    ok | stuck | diverged | failed

:func:`stored_status` maps the first to the second: ``ok`` and ``stopped`` are stored as
``ok``, or as ``stuck`` when the run's final accuracy is within :data:`STUCK_MARGIN` of
chance (:func:`is_stuck`); ``failed`` is a run that raised or whose worker died, and has no
numbers. Every stored status is final (the run has ended); a rerun of the sweep tries the
:data:`RETRIED` ones again and skips the rest. :data:`FAILURES` make a command's exit code
non-zero.

Stdlib only, like :mod:`cnnlab.errors`, so every layer can read it.
"""

from __future__ import annotations

import math

OK = "ok"
STOPPED = "stopped"
STUCK = "stuck"
DIVERGED = "diverged"
FAILED = "failed"

#: What :meth:`cnnlab.train.Trainer.fit` ends with.
TRAINER_STATUSES = (OK, STOPPED, DIVERGED)
#: What a run in the results store can hold, in the order reports count them.
FINAL_STATUSES = (OK, STUCK, DIVERGED, FAILED)
#: Stored statuses that a rerun of the sweep tries again (a crash need not recur).
RETRIED = (FAILED,)
#: Stored statuses of runs that are done: a rerun of the sweep skips them.
DONE = tuple(s for s in FINAL_STATUSES if s not in RETRIED)
#: Statuses that count as failures in a sweep's summary and a command's exit code.
FAILURES = (DIVERGED, FAILED)

#: How close to chance (absolute, a fraction: 0.02 = 2 points) a final accuracy is "stuck".
STUCK_MARGIN = 0.02


def is_done(status: str) -> bool:
    """Whether a stored run with ``status`` is skipped when its sweep runs again."""
    return status in DONE


def is_failure(status: str) -> bool:
    """Whether ``status`` counts as a failure (failed or diverged)."""
    return status in FAILURES


def is_stuck(final_acc: float, num_classes: int, margin: float = STUCK_MARGIN) -> bool:
    """Whether a run "did not train": its final accuracy is within ``margin`` of chance.

    Chance is ``1 / num_classes`` (a constant prediction on balanced data). Accuracy at or
    below ``chance + margin`` counts as stuck, including the odd run that ends below chance.
    ``margin`` is absolute (a fraction, 0.02 = 2 points). A NaN accuracy is not "stuck":
    that run diverged, which the caller detects from its loss.

    >>> is_stuck(0.104, 10), is_stuck(0.35, 10)
    (True, False)
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be a fraction in [0, 1), got {margin!r}")
    acc = float(final_acc)
    if math.isnan(acc):
        return False
    return acc <= 1.0 / num_classes + margin


def stored_status(trainer_status: str, final_acc: float | None,
                  num_classes: int | None) -> str:
    """The status to store for a run the trainer ended with ``trainer_status``.

    ``ok`` / ``stopped`` become ``ok``, or ``stuck`` when ``final_acc`` (test accuracy, else
    the last validation accuracy) is known and :func:`is_stuck` for ``num_classes``;
    ``diverged`` stays; anything else is ``failed``.

    >>> stored_status("stopped", 0.9, 10), stored_status("ok", 0.1, 10)
    ('ok', 'stuck')
    """
    status = {OK: OK, STOPPED: OK, DIVERGED: DIVERGED}.get(trainer_status, FAILED)
    if status == OK and final_acc is not None and num_classes and is_stuck(final_acc,
                                                                           num_classes):
        return STUCK
    return status


__all__ = [
    "DIVERGED", "DONE", "FAILED", "FAILURES", "FINAL_STATUSES", "OK", "RETRIED", "STOPPED",
    "STUCK", "STUCK_MARGIN", "TRAINER_STATUSES", "is_done", "is_failure", "is_stuck",
    "stored_status",
]
