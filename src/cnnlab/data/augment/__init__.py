"""Batched, per-sample augmentation on the device: the public entry point.

Every operation takes a float batch ``x`` (B, C, H, W) with values in [0, 1] and an
explicit ``torch.Generator`` (on x's device) and draws one random parameter per sample
with tensor ops: no Python loop over samples.  The parts live in

* :mod:`~cnnlab.data.augment.augbase`: the ``Op`` base class and the op registry
  (``register_op``, ``OPS``);
* :mod:`~cnnlab.data.augment.geometry`: flips, crop with padding, translation, rotation,
  shear, scale (alias zoom), random resized crop (fused into one resampling per batch in
  a pipeline);
* :mod:`~cnnlab.data.augment.distort`: perspective skew (a homography, fused too) and
  elastic distortion, after Augmentor;
* :mod:`~cnnlab.data.augment.color`: brightness, contrast, saturation, hue, grayscale,
  solarize, posterize, equalize, autocontrast, sharpness, invert, cutout / random
  erasing, noise;
* :mod:`~cnnlab.data.augment.mixing`: MixUp, CutMix and the per-batch switch (soft
  targets);
* :mod:`~cnnlab.data.augment.randaugment`: RandAugment(N, M);
* :mod:`~cnnlab.data.augment.pipeline`: ordered pipelines, presets and
  :func:`build_pipeline`;
* :mod:`~cnnlab.data.augment.preview`: a PNG grid of what a pipeline does;
* :mod:`~cnnlab.data.augment.sample`: N augmented images written to a folder (Augmentor's
  ``sample``).

This package exports the pipeline API and every registered op class by its class name
(``Crop``, ``HFlip``, ``RandAugment``, ``MixUp``, ...); the functional forms (``hflip``,
``rotate``, ``brightness``, ``mixup``, ...) stay in their modules.

    aug = build_pipeline("modern", num_classes=10, image_size=32)
    x, y = aug(x, y, generator)  # x (B, C, H, W) in [0, 1]; y (B,) -> soft (B, 10)
"""

from __future__ import annotations

# the op modules register their ops when imported: all of them before OPS is read
from cnnlab.data.augment import color, distort, geometry, mixing, randaugment  # noqa: F401
from cnnlab.data.augment.augbase import OPS, Op, register_op
from cnnlab.data.augment.pipeline import PRESETS, FlipCrop, Pipeline, build_pipeline, make_op

globals().update({cls.__name__: cls for cls in OPS.values()})

__all__ = ["OPS", "PRESETS", "FlipCrop", "Op", "Pipeline", "build_pipeline", "make_op",
           "register_op", *(cls.__name__ for cls in OPS.values())]
