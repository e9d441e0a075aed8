"""Training throughput: cnnlab's training step vs a plain PyTorch reference loop.

Both train the seed's VGG-like model (3 blocks x 2 layers, width 32) for one epoch at batch
128 on the same CIFAR-10 images from the same initial weights, then evaluate on the same
held-out split.  The reference is what a tutorial writes: fp32, default memory format, a
``torch.utils.data.DataLoader`` over the uint8 images with a per-sample random crop and
flip in ``__getitem__``.  Prints images/s of both, their ratio, and both accuracies.

    python benchmarks/throughput.py                 # CIFAR-10 JPEGs from ../shared if present
    python benchmarks/throughput.py --limit 8000    # fewer training images (quicker)
    python benchmarks/throughput.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

import cnnlab
from cnnlab.config import apply_overrides
from cnnlab.data.sources.synthetic import toy_dataset
from cnnlab.train import fit
from cnnlab.train.hardware import resolve_device

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                      "cifar10-train.tar.gz")


class CropFlipDataset(torch.utils.data.Dataset):
    """Per-sample augmentation in __getitem__, the way most PyTorch tutorials do it."""

    def __init__(self, images, labels, mean, std, train=True):
        self.images, self.labels, self.train = images, labels, train  # uint8 (N, H, W, C)
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i].permute(2, 0, 1).float() / 255  # (C, H, W)
        if self.train:
            x = F.pad(x, (4, 4, 4, 4))
            dy, dx = torch.randint(0, 9, (2,)).tolist()
            x = x[:, dy:dy + 32, dx:dx + 32]
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
        return (x - self.mean) / self.std, self.labels[i]


def reference_epoch(model, ds, mean, std, device, batch_size, lr, augment=True):
    """One epoch of the plain loop (crop + flip unless ``augment`` is False); returns its
    training images/s and the test accuracy after it."""
    loader = torch.utils.data.DataLoader(
        CropFlipDataset(ds.train.images, ds.train.labels, mean, std, train=augment),
        batch_size=batch_size,
        shuffle=True, drop_last=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    n, t0 = 0, time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ips = n / (time.perf_counter() - t0)
    model.eval()
    correct = 0
    test = torch.utils.data.DataLoader(
        CropFlipDataset(ds.test.images, ds.test.labels, mean, std, train=False), batch_size=512)
    with torch.no_grad():
        for x, y in test:
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    return ips, correct / len(ds.test)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=SHARED, help="CIFAR-10 image-folder archive")
    p.add_argument("--limit", type=int, default=0, help="training images (0 = all)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--set", action="append", default=[], dest="overrides",
                   help="extra cnnlab config overrides, e.g. train.channels_last=true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if os.path.exists(args.data):
        ds = cnnlab.load_dataset(f"folder:{args.data}", test_fraction=0.2, split_seed=0)
        source = "CIFAR-10 JPEGs (40,000 train / 10,000 held out)"
    else:
        ds = toy_dataset(n=10000, size=32, channels=3, classes=10, test=2000)
        source = "synthetic 32x32 images (../shared/data not found)"
    if args.limit:
        ds.train = ds.train.subset(torch.arange(args.limit))
        source += f", first {args.limit} training images"
    mean, std = ds.train.mean_std()
    cfg = cnnlab.RunConfig().set(**{
        "model.blocks": 3, "model.layers": 2, "data.batch_size": args.batch_size,
        "data.augment": "flip-crop", "data.val_fraction": 0.0, "optim.lr": 1e-3,
        "train.epochs": 1, "train.device": str(device), "train.quiet": True,
    })
    if args.overrides:
        cfg = apply_overrides(cfg, args.overrides)

    def fresh_model():
        torch.manual_seed(0)
        return cnnlab.create_model("vgg", num_classes=10, blocks=3, layers=2).to(device)

    print(f"data: {source}; device {device}; torch {torch.__version__}; "
          f"{torch.get_num_threads()} threads")
    result = fit(fresh_model(), ds, cfg, progress=False)
    s = result.summary
    ours = s["images_per_s"]
    print(f"cnnlab    : {ours:8.0f} img/s  test acc {s['test_acc']:.4f}  "
          f"({s['precision']}, channels_last={s['channels_last']})")
    torch.manual_seed(0)
    ref_ips, ref_acc = reference_epoch(fresh_model(), ds, mean, std, device,
                                       args.batch_size, 1e-3)
    print(f"reference : {ref_ips:8.0f} img/s  test acc {ref_acc:.4f}  "
          f"(fp32, NCHW, DataLoader with per-sample crop+flip)")
    print(f"ratio     : {ours / ref_ips:.2f}x  (accuracy difference "
          f"{100 * (s['test_acc'] - ref_acc):+.2f} points)")


if __name__ == "__main__":
    main()
