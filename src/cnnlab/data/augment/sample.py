"""Write N augmented images to a folder, as the Augmentor library's ``Pipeline.sample(n)``.

    from cnnlab.data import load_dataset
    from cnnlab.data.augment.sample import sample_images
    sample_images(load_dataset("digits").train, [{"op": "skew"}], 100, "out/")

Each image is drawn uniformly, with replacement, from the split (seeded), augmented on the
device in batches through one seeded generator, and written as a PNG into a folder per
class: ``out/<class>/<number>_from_<index>.png`` (``index``: the source image's position
in the split), so ``--data folder:out`` reads the samples back as a dataset.

The folder must be new or empty: nothing already there is overwritten.  Mixing ops
(MixUp, CutMix) are refused, as one file cannot carry a soft label.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.augment.pipeline import Pipeline, build_pipeline
from cnnlab.data.dataset import ImageSet
from cnnlab.errors import ConfigError
from cnnlab.utils.progress import progress_enabled


def check_out_dir(out: str | Path) -> Path:
    """``out`` as a Path if it is absent or an empty folder; a one-line error otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; give a new folder")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty; give a new or empty folder "
                          "(nothing was written)")
    return out


def _folder_name(name: str) -> str:
    """A class name as a safe folder name (no separators, no leading dot)."""
    safe = re.sub(r"[^\w.+-]+", "_", str(name)).lstrip(".")
    return safe or "_"


def sample_images(data: ImageSet, pipeline: Any, n: int, out: str | Path, seed: int = 0,
                  device: torch.device | str = "cpu", batch_size: int = 256,
                  progress: bool | None = None) -> list[Path]:
    """Write ``n`` augmented images of ``data`` under ``out`` and return their paths.

    ``pipeline``: a preset name, TOML file, op list or a ``Pipeline`` (see
    :func:`~cnnlab.data.augment.pipeline.build_pipeline`); None writes plain copies.
    """
    from PIL import Image
    from tqdm import tqdm

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"-n must be a whole number >= 1, got {n!r}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    out = check_out_dir(out)
    device = torch.device(device)
    h = data.images.shape[1]
    aug = build_pipeline(pipeline, data.num_classes, h)
    if isinstance(aug, Pipeline):
        mixing = [op.name for op in aug if op.kind == "mix"]
        if mixing:
            raise ConfigError(f"augment sample writes one class per image; {', '.join(mixing)} "
                              "mixes images into soft labels (see them with augment preview)")
    folders = {c: _folder_name(name) for c, name in enumerate(data.classes)}
    if len(set(folders.values())) < len(folders):  # e.g. "a/b" and "a_b"
        folders = {c: f"{c:0{len(str(len(folders)))}d}_{f}" for c, f in folders.items()}
    # which images: uniform with replacement, as Augmentor (CPU draws: the same on every device)
    source = torch.randint(0, len(data), (n,), generator=torch.Generator().manual_seed(seed))
    generator = torch.Generator(device).manual_seed(seed)
    width = len(str(n - 1))
    written: list[Path] = []
    bar = tqdm(total=n, unit="img", desc="sample", disable=not progress_enabled(progress))
    for start in range(0, n, batch_size):
        idx = source[start:start + batch_size]
        x = data.images[idx].to(device).permute(0, 3, 1, 2).float().div_(255)  # (B, C, H, W)
        y = data.labels[idx].to(device)
        if aug is not None:
            x, y = aug(x, y, generator)
        if y.ndim != 1:
            raise ConfigError("augment sample: the pipeline made soft labels; one file "
                              "cannot carry them")
        pixels = (x.clamp(0, 1) * 255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu()
        for k, (img, label, src) in enumerate(zip(pixels.numpy(), y.tolist(), idx.tolist())):
            folder = out / folders[label]
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{start + k:0{width}d}_from_{src}.png"
            Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(path)
            written.append(path)
        bar.update(len(idx))
    bar.close()
    return written
