"""The statuses of a run, defined once for the trainer, the results store, the sweep
executor, the report and the command line.

    Trainer.fit ends      ok | stopped (early stopping) | diverged (see below)
    a single run's summary.json / final line   ok | stopped | stuck | diverged
    a stored run holds    ok | stuck | diverged | failed

A run **diverged** when a step's loss is non-finite (the run ends before that update is
applied) or when an epoch's mean training loss exceeds :func:`divergence_bound`:
``max(DIVERGE_CHANCE_FACTOR x ln(num_classes), DIVERGE_INITIAL_FACTOR x initial loss)``,
the initial loss being that of the first batch before any update. A constant prediction
scores ``ln(num_classes)`` and a fresh model about that; a loss a thousand times higher
means logits thousands apart, which no healthy run reaches (SGD at lr 1e6 reaches 1e6 to
1e14 and is diverged).  :func:`run_status` says ``stuck`` for a single run as the store does.

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

#: An epoch's mean training loss above this many times ln(num_classes) is divergence.
DIVERGE_CHANCE_FACTOR = 1e3
#: ... unless the loss started that high: the bound is at least this many initial losses.
DIVERGE_INITIAL_FACTOR = 10.0

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


def divergence_bound(num_classes: int, initial_loss: float | None = None) -> float:
    """The mean training loss above which an epoch counts as diverged (see the module doc).

    >>> round(divergence_bound(10))
    2303
    """
    bound = DIVERGE_CHANCE_FACTOR * math.log(max(int(num_classes), 2))
    if initial_loss is not None and math.isfinite(initial_loss):
        bound = max(bound, DIVERGE_INITIAL_FACTOR * float(initial_loss))
    return bound


def is_diverged(train_loss: float, num_classes: int,
                initial_loss: float | None = None) -> bool:
    """Whether an epoch's mean training loss is non-finite or above
    :func:`divergence_bound`.

    >>> is_diverged(2e6, 10), is_diverged(float("nan"), 10), is_diverged(2.1, 10)
    (True, True, False)
    """
    loss = float(train_loss)
    return not math.isfinite(loss) or loss > divergence_bound(num_classes, initial_loss)


def run_status(trainer_status: str, final_acc: float | None,
               num_classes: int | None) -> str:
    """The status a single run reports (its summary.json, ``cnnlab train``'s last line):
    the trainer's ``ok`` / ``stopped``, or ``stuck`` when ``final_acc`` is known and
    :func:`is_stuck`; ``diverged`` stays.

    >>> run_status("stopped", 0.9, 10), run_status("ok", 0.1, 10), run_status("diverged", 0.1, 10)
    ('stopped', 'stuck', 'diverged')
    """
    if trainer_status in (OK, STOPPED) and final_acc is not None and num_classes \
            and is_stuck(final_acc, num_classes):
        return STUCK
    return trainer_status


def stored_status(trainer_status: str, final_acc: float | None,
                  num_classes: int | None) -> str:
    """The status to store for a run the trainer ended with ``trainer_status``.

    ``ok`` / ``stopped`` become ``ok``, or ``stuck`` when ``final_acc`` (test accuracy, else
    the last validation accuracy) is known and :func:`is_stuck` for ``num_classes``;
    ``diverged`` (and a :func:`run_status` of ``stuck``) stays; anything else is ``failed``.

    >>> stored_status("stopped", 0.9, 10), stored_status("ok", 0.1, 10)
    ('ok', 'stuck')
    """
    if trainer_status not in (*TRAINER_STATUSES, STUCK):
        return FAILED
    status = run_status(trainer_status, final_acc, num_classes)
    return OK if status == STOPPED else status


__all__ = [
    "DIVERGED", "DIVERGE_CHANCE_FACTOR", "DIVERGE_INITIAL_FACTOR", "DONE", "FAILED",
    "FAILURES", "FINAL_STATUSES", "OK", "RETRIED", "STOPPED", "STUCK", "STUCK_MARGIN",
    "TRAINER_STATUSES", "divergence_bound", "is_diverged", "is_done", "is_failure",
    "is_stuck", "run_status", "stored_status",
]
