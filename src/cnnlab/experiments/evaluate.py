"""Evaluate a trained run folder: top-1 / top-5 accuracy, per-class accuracy and the
confusion matrix, on the run's own test split (the same ``split_seed`` carving) or on
other data.

    result = evaluate_run("runs/a")                        # its test split, best checkpoint
    result = evaluate_run("runs/a", data="folder:new", split="all", which="last")
    write_eval(result, "runs/a/eval")                      # eval.json

The figure (``confusion.png``) is drawn by :func:`cnnlab.report.confusion.plot_confusion`.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import torch

from cnnlab.config import apply_overrides, from_dict
from cnnlab.data.dataset import ImageSet
from cnnlab.data.loader import DeviceLoader
from cnnlab.errors import DataError
from cnnlab.models.hub import load_run_model
from cnnlab.train.hardware import resolve_channels_last, resolve_device, resolve_precision
from cnnlab.train.run import prepare_data
from cnnlab.utils.io import atomic_write_json

SPLITS = ("test", "val", "train", "all")
EVAL_FILE = "eval.json"


def _split(ds, split: str, spec: str) -> ImageSet:
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "all":
        parts = list(ds.splits().values())
        return ImageSet(torch.cat([p.images for p in parts]),
                        torch.cat([p.labels for p in parts]), ds.classes)
    chosen = ds.splits().get(split)
    if chosen is None or len(chosen) == 0:
        raise DataError(f"data {spec} has no {split} split; choose another with --split "
                        f"({', '.join(s for s in SPLITS if s != split)})")
    return chosen


def evaluate_run(run_dir: str | Path, which: str = "best", data: str | None = None,
                 split: str = "test", overrides: list[str] | None = None,
                 device: str = "auto", batch_size: int | None = None) -> dict:
    """Rebuild the run's model from ``checkpoints/<which>.pt`` and evaluate it on ``split``
    of the run's data (or of ``data``, a dataset spec), normalized with the run's training
    statistics. Returns a JSON-ready dict: top1, top5 (top-k with k = min(5, classes)),
    per_class accuracy, confusion (rows: true class, columns: predicted), classes, counts."""
    model = load_run_model(run_dir, which)
    info = model.run_info["config"]
    run_ds = info["dataset"]
    cfg = from_dict(info["config"])  # the run's resolved config (config.json, read once)
    changes = list(overrides or []) + ([f"data.spec={json.dumps(data)}"] if data else [])
    if changes:
        cfg = apply_overrides(cfg, changes)
    spec = cfg.data.spec
    ds = prepare_data(cfg)
    images = _split(ds, split, spec)

    run_classes = list(run_ds.get("classes") or [])
    num_classes = int(run_ds.get("num_classes") or len(run_classes))
    if images.num_classes != num_classes:
        raise DataError(f"data {spec} has {images.num_classes} classes but the run's model "
                        f"was trained on {num_classes} ({run_ds.get('name')})")
    if run_classes and list(images.classes) != run_classes:
        warnings.warn(f"data {spec} names its classes differently from the run's "
                      f"({', '.join(images.classes[:3])}, ... vs "
                      f"{', '.join(run_classes[:3])}, ...); matching them by index",
                      stacklevel=2)
    h, w, c = (int(v) for v in run_ds["image_shape"])
    if tuple(images.shape) != (h, w, c):
        raise DataError(f"data {spec} has images of {'x'.join(map(str, images.shape))} "
                        f"(HxWxC) but the run's model takes {h}x{w}x{c}"
                        + (f"; pass --resize {h}" if images.shape[2] == c and h == w else ""))

    dev = resolve_device(device)
    norm = {}
    if cfg.data.normalize and run_ds.get("mean") is not None:
        norm = {"mean": run_ds["mean"], "std": run_ds["std"]}
    # the run's own precision and memory format on this device, so that top-1 matches the
    # run's test_acc (bf16 rounds differently in each layout)
    channels_last = resolve_channels_last(cfg.train.channels_last, dev)
    loader = DeviceLoader(images, batch_size or cfg.data.eval_batch_size, shuffle=False,
                          drop_last=False, device=dev, channels_last=channels_last, **norm)
    model = model.to(dev).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp = resolve_precision(cfg.train.precision, dev)
    autocast = (torch.autocast(dev.type, dtype=amp) if amp is not None
                else contextlib.nullcontext())
    k = min(5, num_classes)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    topk_hits = 0
    with torch.no_grad(), autocast:
        for x, y in loader:
            logits = model(x).float()  # (B, num_classes)
            top = logits.topk(k, dim=1).indices  # (B, k)
            topk_hits += int((top == y[:, None]).any(dim=1).sum())
            pred = top[:, 0]
            confusion += torch.bincount((y * num_classes + pred).cpu(),
                                        minlength=num_classes ** 2
                                        ).view(num_classes, num_classes)
    n = int(confusion.sum())
    counts = confusion.sum(dim=1).tolist()
    names = run_classes or list(images.classes)
    per_class = {name: (confusion[i, i].item() / counts[i] if counts[i] else None)
                 for i, name in enumerate(names)}
    return {
        "run": str(Path(run_dir)),
        "checkpoint": which,
        "data": spec,
        "split": split,
        "n": n,
        "top1": confusion.diag().sum().item() / n if n else None,
        "top5": topk_hits / n if n else None,
        "topk": k,
        "classes": names,
        "per_class": per_class,
        "counts": counts,
        "confusion": confusion.tolist(),
    }


def write_eval(result: dict, out_dir: str | Path) -> Path:
    """Write ``result`` as ``out_dir/eval.json`` (atomically); returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / EVAL_FILE, result)
    return out / EVAL_FILE


__all__ = ["SPLITS", "evaluate_run", "write_eval"]
