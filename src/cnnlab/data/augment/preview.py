"""See what a pipeline does: a grid of originals and augmented versions, labelled.

    from cnnlab.data import load_dataset
    from cnnlab.data.augment.preview import preview_grid
    preview_grid(load_dataset("digits").train, "modern", "grid.png", n=4, k=6)

The first column holds ``n`` originals (one per class where the split allows), the next
``k`` columns augmented versions of each; every cell is captioned with its class name,
or for MixUp / CutMix with the mixed soft label ("0.62 cat / 0.38 dog").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.augment.pipeline import Pipeline, build_pipeline
from cnnlab.data.dataset import ImageSet
from cnnlab.errors import ConfigError


@dataclass
class Examples:
    """Originals (n, C, H, W), augmented (n, k, C, H, W) in [0, 1] and their captions."""

    originals: torch.Tensor
    augmented: torch.Tensor
    original_captions: list[str]
    captions: list[list[str]]  # n x k


def pick(data: ImageSet, n: int, seed: int) -> torch.Tensor:
    """Indices of ``n`` images in a seeded order, distinct classes first."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=g)
    chosen, seen = [], set()
    for i in order.tolist():  # at most N steps, over indices only
        c = int(data.labels[i])
        if c not in seen:
            chosen.append(i)
            seen.add(c)
            if len(chosen) == n:
                break
    rest = [i for i in order.tolist() if i not in set(chosen)]
    return torch.tensor((chosen + rest)[:n], dtype=torch.long)


def caption(target: torch.Tensor, classes: list[str], width: int = 14) -> str:
    """Class name of a hard label, or the two largest weights of a soft one."""
    if target.ndim == 0:
        return classes[int(target)]
    weights, idx = target.float().topk(min(2, len(target)))
    if weights[0] >= 0.995 or len(weights) < 2 or weights[1] < 0.005:
        return classes[int(idx[0])]
    parts = [f"{float(w):.2f} {classes[int(i)][:width]}" for w, i in zip(weights, idx)]
    return "\n".join(parts)  # two lines: readable under a small thumbnail


def augment_examples(data: ImageSet, pipeline: Any, n: int = 4, k: int = 6, seed: int = 0,
                     pool: int = 64) -> Examples:
    """Apply ``pipeline`` (a spec or a callable) ``k`` times to ``n`` images of ``data``.

    The batch holds the n x k copies plus ``pool`` other images, so mixing ops find
    partners of other classes as they would in training; one seeded generator drives it.
    """
    if n < 1 or k < 1:
        raise ConfigError(f"preview needs n >= 1 and k >= 1, got n={n}, k={k}")
    h = data.images.shape[1]
    aug = pipeline if callable(pipeline) else build_pipeline(pipeline, data.num_classes, h)
    idx = pick(data, n, seed)
    extra = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 1))
    extra = extra[: min(pool, len(data))]
    batch_idx = torch.cat([idx.repeat_interleave(k), extra])
    x = data.images[batch_idx].permute(0, 3, 1, 2).float() / 255  # (B, C, H, W)
    y = data.labels[batch_idx]
    if aug is not None:
        x, y = aug(x, y, torch.Generator().manual_seed(seed))
    c = x.shape[1]
    augmented = x[: n * k].reshape(n, k, c, *x.shape[2:]).clamp(0, 1)
    caps = [caption(t, data.classes) for t in y[: n * k]]
    originals = data.images[idx].permute(0, 3, 1, 2).float() / 255
    return Examples(originals, augmented, [data.classes[int(data.labels[i])] for i in idx],
                    [caps[r * k : (r + 1) * k] for r in range(n)])


def _describe(pipeline: Any) -> str:
    if isinstance(pipeline, Pipeline):
        ops = ", ".join(op.name for op in pipeline)
        return f"{pipeline.name}: {ops}" if pipeline.name else ops
    if isinstance(pipeline, str):
        return pipeline
    return "custom pipeline"


def render(ex: Examples, out: str | Path, title: str = "", cell: float = 1.3,
           dpi: int = 100) -> Path:
    """Draw ``ex`` as a PNG grid (matplotlib, no display needed) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, k = ex.augmented.shape[:2]
    soft = any("\n" in c for row in ex.captions for c in row)
    height = cell + (0.55 if soft else 0.35)  # room for one or two caption lines
    fig, axes = plt.subplots(n, k + 1, figsize=((k + 1) * cell, n * height + 0.5),
                             squeeze=False)
    for r in range(n):
        images = [ex.originals[r], *ex.augmented[r]]
        captions = [ex.original_captions[r], *ex.captions[r]]
        for j, (img, cap) in enumerate(zip(images, captions)):
            ax = axes[r][j]
            arr = img.permute(1, 2, 0).numpy()
            if arr.shape[2] == 1:
                ax.imshow(arr[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(arr, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(j == 0)
                spine.set_color("tab:blue")
                spine.set_linewidth(2)
            ax.set_xlabel(cap, fontsize=7.5, labelpad=2, linespacing=1.1)
            if r == 0:
                ax.set_title("original" if j == 0 else f"#{j}", fontsize=8,
                             color="tab:blue" if j == 0 else "black")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.4, h_pad=0.3, w_pad=0.2)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def preview_grid(data: ImageSet, pipeline: Any, out: str | Path, n: int = 4, k: int = 6,
                 seed: int = 0, title: str | None = None) -> Path:
    """Write a preview PNG of ``pipeline`` (preset name, file, op list or callable) on
    ``data``: ``n`` originals in the first column, ``k`` augmented versions beside each."""
    h = data.images.shape[1]
    aug = pipeline if callable(pipeline) else build_pipeline(pipeline, data.num_classes, h)
    ex = augment_examples(data, aug, n, k, seed)
    if title is None:
        title = f"{_describe(aug if aug is not None else 'none')}  (seed {seed})"
    return render(ex, out, title)
