"""Treatments of the training data for generalization experiments (Zhang et al., 2017,
"Understanding deep learning requires rethinking generalization").

Each function takes an :class:`ImageSet` and a seed (or ``torch.Generator``) and returns a
new ``ImageSet``; the input is never modified. :func:`apply_treatments` applies the ones a
``DataConfig`` names to a ``Dataset`` after its test/validation carving, in this order:

1. ``data.train_size``: a seeded, class-stratified subset of the training split.
2. ``data.label_noise``: exactly ``round(f * N)`` training labels, chosen at random, each
   replaced by a uniformly random *other* class (``data.label_noise_to = "other"``, the
   default: so ``label_noise = 1.0`` changes every label, and a network that fits them
   learns to avoid the true class, scoring below chance), or by a uniformly random class
   among all K (``"any"``: Zhang et al.'s corruption, where a label stays right with chance
   1/K and ``label_noise = 1.0`` gives truly random labels, independent of the images).
3. ``data.pixels``: ``shuffled``, one fixed permutation of the H*W pixel positions
   (channels kept together), applied to every image of every split, the validation and
   test splits too, as the paper does (it is a fixed transform of the input space);
   ``random``, a different permutation per training image; ``gaussian``, training images
   replaced by Gaussian noise with the training split's per-channel mean and variance,
   rounded and clipped to 0..255. ``random`` and ``gaussian`` change the training split only.

Validation and test images and labels are never changed, except by ``shuffled``.
All are seeded by ``data.treatment_seed`` (not ``data.split_seed``, so that the treatment
can vary with the splits held fixed); each treatment draws from its own stream, so e.g.
changing ``data.pixels`` does not change which labels ``data.label_noise`` flips.
"""

from __future__ import annotations

import torch

from cnnlab.config import CHOICES
from cnnlab.data.dataset import Dataset, ImageSet
from cnnlab.errors import ConfigError, did_you_mean

PIXELS = CHOICES["data.pixels"]
_CHUNK = 4096  # images per block in the per-image treatments (bounds temporary memory)


def _generator(seed: int | torch.Generator, stream: int = 0) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(int(seed) * 8 + stream)


def stratified_subset(data: ImageSet, size: int, seed: int | torch.Generator = 0) -> ImageSet:
    """A seeded subset of ``size`` images keeping each class's share (largest-remainder
    rounding, ties to the lower class index, so the total is exactly ``size``)."""
    n = len(data)
    if not 0 <= size <= n:
        raise ConfigError(f"data.train_size = {size} must be between 0 and the training "
                          f"split's {n} images (after the val/test carving and data.limit)")
    g = _generator(seed)
    counts = torch.bincount(data.labels, minlength=data.num_classes)
    exact = counts.double() * size / max(n, 1)
    quota = exact.floor().long()
    short = size - int(quota.sum())
    if short:
        order = torch.argsort(-(exact - quota), stable=True)  # largest remainder first
        quota[order[:short]] += 1
    picked = []
    for c in torch.nonzero(quota).flatten().tolist():  # one draw per class, not per image
        idx = torch.nonzero(data.labels == c).flatten()
        picked.append(idx[torch.randperm(len(idx), generator=g)[: int(quota[c])]])
    index = torch.cat(picked).sort().values if picked else torch.empty(0, dtype=torch.long)
    return data.subset(index)


def noisy_labels(data: ImageSet, fraction: float, seed: int | torch.Generator = 0,
                 to: str = "other") -> tuple[ImageSet, int]:
    """Replace exactly ``round(fraction * N)`` seeded-random labels by a uniformly random
    other class (``to="other"``) or class among all K (``to="any"``, which may draw the
    true one). Returns the new set and the number of labels that now differ."""
    if not 0 <= fraction <= 1:
        raise ConfigError(f"data.label_noise must be in [0, 1], got {fraction}")
    n, k = len(data), data.num_classes
    changed = int(round(fraction * n))
    if changed == 0:
        return data, 0
    if k < 2:
        raise ConfigError("data.label_noise needs at least 2 classes to change labels to")
    g = _generator(seed)
    which = torch.randperm(n, generator=g)[:changed]
    labels = data.labels.clone()
    if to == "any":
        labels[which] = torch.randint(0, k, (changed,), generator=g)
    else:
        shift = torch.randint(1, k, (changed,), generator=g)  # 1..K-1: never the same class
        labels[which] = (labels[which] + shift) % k
    changed = int((labels != data.labels).sum())
    return ImageSet(data.images, labels, data.classes), changed


def pixel_permutation(shape: tuple[int, int, int], seed: int | torch.Generator = 0
                      ) -> torch.Tensor:
    """The fixed permutation of the H*W pixel positions ``shuffled`` uses for ``shape``."""
    h, w, _ = shape
    return torch.randperm(h * w, generator=_generator(seed))


def permute_pixels(data: ImageSet, perm: torch.Tensor) -> ImageSet:
    """Every image with its pixel positions reordered by ``perm`` (channels kept together)."""
    n, h, w, c = data.images.shape
    images = data.images.reshape(n, h * w, c)[:, perm].reshape(n, h, w, c)
    return ImageSet(images, data.labels, data.classes)


def random_pixels(data: ImageSet, seed: int | torch.Generator = 0) -> ImageSet:
    """Every image with its own random permutation of pixel positions (channels together)."""
    g = _generator(seed)
    n, h, w, c = data.images.shape
    flat = data.images.reshape(n, h * w, c)
    out = torch.empty_like(flat)
    for start in range(0, n, _CHUNK):  # blocks of images, each block one tensor op
        block = flat[start:start + _CHUNK]
        perm = torch.argsort(torch.rand(len(block), h * w, generator=g), dim=1)
        out[start:start + _CHUNK] = torch.gather(block, 1, perm[:, :, None].expand(-1, -1, c))
    return ImageSet(out.reshape(n, h, w, c), data.labels, data.classes)


def gaussian_pixels(data: ImageSet, seed: int | torch.Generator = 0) -> ImageSet:
    """Images replaced by Gaussian noise with ``data``'s per-channel mean and variance
    (in pixel units), rounded and clipped to 0..255; labels kept."""
    g = _generator(seed)
    mean, std = data.mean_std()  # per channel, of values scaled to [0, 1]
    mean_t = torch.tensor(mean, dtype=torch.float32) * 255
    std_t = torch.tensor(std, dtype=torch.float32) * 255
    out = torch.empty_like(data.images)
    n, h, w, c = data.images.shape
    for start in range(0, n, _CHUNK):
        m = min(_CHUNK, n - start)
        noise = torch.randn(m, h, w, c, generator=g) * std_t + mean_t
        out[start:start + m] = noise.round_().clamp_(0, 255).to(torch.uint8)
    return ImageSet(out, data.labels, data.classes)


def apply_treatments(ds: Dataset, cfg) -> tuple[Dataset, dict]:
    """Apply the treatments ``cfg`` (a ``DataConfig``) names to ``ds``'s training split
    (and, for ``pixels = "shuffled"``, to every split). Returns the new dataset and a
    JSON-ready record of what was done (also stored as ``info["treatments"]``)."""
    seed = cfg.treatment_seed
    if cfg.pixels not in PIXELS:
        raise ConfigError(f"data.pixels = {cfg.pixels!r} is not one of {', '.join(PIXELS)}"
                          f"{did_you_mean(cfg.pixels, PIXELS)}")
    train, val, test = ds.train, ds.val, ds.test
    if cfg.train_size:
        train = stratified_subset(train, cfg.train_size, _generator(seed, 1))
    train, changed = noisy_labels(train, cfg.label_noise, _generator(seed, 2),
                                  cfg.label_noise_to)
    if cfg.pixels == "shuffled":
        perm = pixel_permutation(train.shape, _generator(seed, 3))
        train, val, test = (None if s is None else permute_pixels(s, perm)
                            for s in (train, val, test))
    elif cfg.pixels == "random":
        train = random_pixels(train, _generator(seed, 4))
    elif cfg.pixels == "gaussian":
        train = gaussian_pixels(train, _generator(seed, 5))
    record = {
        "train_size": len(train),
        "label_noise": cfg.label_noise,
        "label_noise_to": cfg.label_noise_to,
        "labels_changed": changed,
        "labels_changed_fraction": changed / len(train) if len(train) else 0.0,
        "pixels": cfg.pixels,
        "treatment_seed": seed,
    }
    out = Dataset(ds.name, train, test, val, ds.official_test, ds.cache_path,
                  {**ds.info, "treatments": record})
    return out, record


__all__ = ["PIXELS", "apply_treatments", "gaussian_pixels", "noisy_labels",
           "permute_pixels", "pixel_permutation", "random_pixels", "stratified_subset"]
