"""Batched, per-sample augmentation on the device: the public entry point.

Every operation takes a float batch ``x`` (B, C, H, W) with values in [0, 1] and an
explicit ``torch.Generator`` (on x's device) and draws one random parameter per sample
with tensor ops: no Python loop over samples.  The parts live in

* :mod:`cnnlab.data.geometry`: flips, crop with padding, translation, rotation, shear,
  scale, random resized crop (fused into one resampling per batch in a pipeline);
* :mod:`cnnlab.data.color`: brightness, contrast, saturation, hue, grayscale, solarize,
  posterize, equalize, autocontrast, sharpness, invert, cutout / random erasing, noise;
* :mod:`cnnlab.data.mixing`: MixUp, CutMix and the per-batch switch (soft targets);
* :mod:`cnnlab.data.randaugment`: RandAugment(N, M);
* :mod:`cnnlab.data.pipeline`: ordered pipelines, presets and :func:`build_pipeline`.

    aug = build_pipeline("modern", num_classes=10, image_size=32)
    x, y = aug(x, y, generator)  # x (B, C, H, W) in [0, 1]; y (B,) -> soft (B, 10)
"""

from __future__ import annotations

from cnnlab.data.augbase import Op
from cnnlab.data.color import (
    AutoContrast,
    Brightness,
    ColorJitter,
    Contrast,
    Cutout,
    Equalize,
    GaussianNoise,
    Grayscale,
    Hue,
    Invert,
    Posterize,
    RandomErasing,
    Saturation,
    Sharpness,
    Solarize,
    autocontrast,
    brightness,
    contrast,
    equalize,
    erase,
    gaussian_noise,
    grayscale,
    hue,
    invert,
    posterize,
    saturation,
    sharpness,
    solarize,
)
from cnnlab.data.geometry import (
    Crop,
    HFlip,
    ResizedCrop,
    Rotate,
    Scale,
    Shear,
    Translate,
    VFlip,
    affine,
    flip_mask,
    hflip,
    random_crop,
    random_hflip,
    random_vflip,
    rotate,
    scale,
    shear,
    shift,
    translate,
    vflip,
)
from cnnlab.data.mixing import CutMix, MixUp, MixUpCutMix, cutmix, mixup, soft_targets
from cnnlab.data.pipeline import OPS, PRESETS, Pipeline, build_pipeline, make_op
from cnnlab.data.randaugment import RandAugment


class FlipCrop(Pipeline):
    """The classic CIFAR recipe: random crop with padding, then horizontal flip.

    Both run as one exact (nearest) resampling per batch.  ``mode``: ``constant``
    (zero padding) or ``reflect``.
    """

    def __init__(self, pad: int = 4, flip_p: float = 0.5, mode: str = "constant"):
        self.pad, self.flip_p, self.mode = pad, flip_p, mode
        ops: list[Op] = [Crop(pad=pad, padding=mode)] if pad else []
        ops += [HFlip(flip_p)] if flip_p else []
        super().__init__(ops, "flip-crop")

    def __repr__(self) -> str:
        return f"FlipCrop(pad={self.pad}, flip_p={self.flip_p}, mode={self.mode!r})"


__all__ = [
    "OPS", "PRESETS", "Op", "Pipeline", "FlipCrop", "build_pipeline", "make_op",
    # geometry
    "flip_mask", "hflip", "vflip", "random_hflip", "random_vflip", "translate", "random_crop",
    "affine", "rotate", "shift", "shear", "scale",
    "HFlip", "VFlip", "Crop", "Translate", "Rotate", "Shear", "Scale", "ResizedCrop",
    # colour
    "brightness", "contrast", "saturation", "hue", "grayscale", "solarize", "posterize",
    "equalize", "autocontrast", "sharpness", "invert", "erase", "gaussian_noise",
    "Brightness", "Contrast", "Saturation", "Hue", "ColorJitter", "Grayscale", "Solarize",
    "Posterize", "Equalize", "AutoContrast", "Sharpness", "Invert", "Cutout", "RandomErasing",
    "GaussianNoise",
    # mixing and RandAugment
    "mixup", "cutmix", "soft_targets", "MixUp", "CutMix", "MixUpCutMix", "RandAugment",
]
