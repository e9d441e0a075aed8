"""The confusion-matrix figure of ``cnnlab eval``: rows are the true classes, columns the
predicted ones; each cell shows its count and its share of the row (the row's recall on
the diagonal), coloured by that share.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnlab.utils.io import atomic_write

MAX_ANNOTATED = 30  # classes beyond which cells are coloured only (text would not fit)


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str],
                   path: str | Path, title: str | None = None) -> Path:
    """Draw ``confusion`` (K, K) counts with class names on both axes; write a PNG
    atomically to ``path`` and return it."""
    counts = np.asarray(confusion, dtype=np.int64)
    k = counts.shape[0]
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)  # row shares
    side = min(max(4.0, 0.6 * k + 2.0), 24.0)
    with rc_context({"font.size": 9 if k <= 12 else 7, "savefig.dpi": 110}):
        fig = Figure(figsize=(side + 1.0, side))
        ax = fig.add_subplot()
        im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
        ax.set_xticks(range(k), [str(c) for c in classes], rotation=45 if k > 6 else 0,
                      ha="right" if k > 6 else "center")
        ax.set_yticks(range(k), [str(c) for c in classes])
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        if k <= MAX_ANNOTATED:
            for i in range(k):
                for j in range(k):
                    if counts[i, j] == 0 and i != j:
                        continue
                    ax.text(j, i, f"{counts[i, j]}\n{100 * share[i, j]:.0f}%", ha="center",
                            va="center", fontsize="small",
                            color="white" if share[i, j] > 0.5 else "black")
        n = int(counts.sum())
        acc = float(np.trace(counts)) / n if n else 0.0
        ax.set_title(title or f"confusion matrix: {n} images, top-1 {100 * acc:.1f}%")
        fig.tight_layout()
        FigureCanvasAgg(fig)
        return atomic_write(path, lambda f: fig.savefig(f, format="png"))


__all__ = ["plot_confusion"]
