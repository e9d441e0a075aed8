"""Optimizers, weight decay (coupled or decoupled) and per-batch learning-rate schedules.

Weight decay two ways, chosen by ``optim.decay_mode``:
  coupled   (L2 in the gradient): g <- g + wd * w, then the optimizer's update. Under Adam the
            decay term is rescaled by the adaptive denominator like any gradient.
  decoupled (Loshchilov & Hutter 2019, AdamW): w <- w - lr * wd * w, separate from the
            gradient-based update. Under plain SGD the two coincide; under Adam they differ.
  auto      decoupled for adamw and lamb, coupled for sgd and adam.
LAMB (``optim.name = "lamb"``, :class:`Lamb`) always decays in its update, as the paper.
Norm and bias parameters (ndim <= 1) are excluded from decay unless
``optim.decay_norm_and_bias`` is set.

The speed records' options (Jordan 2024, arXiv 2404.00498; Page 2018):
  optim.per_1024            lr and weight decay per 1,024 examples, step decoupled from
                            momentum (:func:`per_1024`);
  optim.norm_bias_lr_scale  the biases of norm layers get lr x this (the record: 64);
  optim.freeze_norm_scale   norm scales fixed at 1 and untrained (:func:`freeze_norm_scales`);
  optim.muon                conv filters by Muon (:class:`MuonSGD`), the rest by SGD.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnlab.config import OptimConfig
from cnnlab.errors import ConfigError

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def norm_biases(model: nn.Module) -> list[nn.Parameter]:
    """The bias parameters of the model's norm layers (batch, group, layer norm)."""
    return [m.bias for m in model.modules()
            if isinstance(m, NORM_TYPES) and getattr(m, "bias", None) is not None]


def freeze_norm_scales(model: nn.Module) -> int:
    """Set every norm layer's scale to 1 and stop training it; returns how many."""
    n = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, NORM_TYPES) and getattr(m, "weight", None) is not None:
                m.weight.fill_(1.0)
                m.weight.requires_grad_(False)
                n += 1
    return n


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool,
                 norm_bias_lr_scale: float = 1.0, muon: bool = False,
                 layer_decay: float = 1.0) -> list[dict]:
    """Trainable parameters in groups, each with ``weight_decay`` and ``lr_scale`` (a
    multiplier of the base lr): decayed, not decayed (ndim <= 1 unless
    ``decay_norm_and_bias``), norm biases (``lr_scale = norm_bias_lr_scale``, only when it
    is not 1) and, with ``muon``, the conv filters (4-D, ``muon: True``). Empty groups are
    dropped. ``layer_decay < 1`` splits each group by layer, its ``lr_scale`` times
    ``layer_decay ** (L + 1 - layer)`` (:func:`cnnlab.train.finetune.layer_lr_scales`)."""
    groups = _param_groups(model, weight_decay, decay_norm_and_bias, norm_bias_lr_scale, muon)
    if layer_decay == 1.0:
        return groups
    if muon:
        raise ConfigError("optim.layer_decay does not combine with optim.muon (Muon's step is "
                          "set per weight norm, not by the lr)")
    from cnnlab.train.finetune import layer_lr_scales

    scales = layer_lr_scales(model, layer_decay)
    out = []
    for g in groups:
        by_scale: dict[float, list] = {}
        for p in g["params"]:
            by_scale.setdefault(scales[id(p)], []).append(p)
        for scale, params in sorted(by_scale.items()):
            out.append({**g, "params": params, "lr_scale": g["lr_scale"] * scale})
    return out


def _param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool,
                  norm_bias_lr_scale: float, muon: bool) -> list[dict]:
    nb = {id(p) for p in norm_biases(model)} if norm_bias_lr_scale != 1 else set()
    decay, no_decay, biases, filters = [], [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if muon and p.ndim == 4:
            filters.append(p)
        elif id(p) in nb:
            biases.append(p)
        else:
            (decay if p.ndim > 1 or decay_norm_and_bias else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "lr_scale": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0},
              {"params": biases, "weight_decay": weight_decay if decay_norm_and_bias else 0.0,
               "lr_scale": norm_bias_lr_scale},
              {"params": filters, "weight_decay": 0.0, "lr_scale": 1.0, "muon": True}]
    return [g for g in groups if g["params"]] or groups[:1]


def per_1024(lr: float, weight_decay: float, momentum: float, batch_size: int
             ) -> tuple[float, float]:
    """PyTorch SGD's (lr, decay per step) from the per-1,024-example parametrization of the
    speed records (Page 2018, "How to train your ResNet 5"; arXiv 2404.00498):

        k      = 1 + 1 / (1 - momentum)      # the records' gain of Nesterov momentum
        lr_t   = lr * batch_size / (1024 k)   # for the batch-MEAN loss cnnlab minimizes
        wd_t   = weight_decay * batch_size / (1024 k)   # fraction of w decayed per step

    Under a constant gradient the Nesterov step grows with momentum by about k; dividing
    by k keeps the step per example independent of momentum, and per 1,024 examples keeps
    it independent of the batch size. The decay fraction ``wd_t`` is independent of the
    lr: a group with lr x s gets PyTorch's coupled weight_decay = wd_t / (lr_t s)."""
    k = 1 + 1 / (1 - momentum)
    return lr * batch_size / (1024 * k), weight_decay * batch_size / (1024 * k)


def _orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The nearest semi-orthogonal matrix to ``g`` (out, in), approximately: a quintic
    Newton-Schulz iteration on the singular values (coefficients of Jordan 2024, "Muon"),
    which maps every singular value into about [0.7, 1.2] in 5 steps. In bf16, as Muon
    does: the iteration tolerates it and the products are 2-3x faster on CPUs and GPUs
    with native bf16."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16()
    wide = x.shape[0] <= x.shape[1]
    if not wide:
        x = x.T
    x = x / (x.norm() + 1e-7)  # spectral norm <= 1
    for _ in range(steps):
        m = x @ x.T  # (rows, rows)
        x = a * x + (b * m + c * m @ m) @ x
    return (x if wide else x.T).to(g.dtype)


class MuonSGD(torch.optim.Optimizer):
    """Muon for the groups marked ``muon`` (conv filters), SGD for the others.

    SGD groups: ``buf = m buf + (g + wd w)``; ``w -= lr (g + wd w + m buf)`` (PyTorch's
    Nesterov SGD with coupled decay; ``w -= lr buf`` without Nesterov). Muon groups
    (Jordan 2024, "Muon: an optimizer for the hidden layers"; airbench94_muon): the
    filter (out, in, k, k) is first rescaled to Frobenius norm sqrt(out) (BN follows it,
    so its scale is free and this fixes the effective step size), then
    ``w -= lr * orthogonalize(g + m buf)`` on the (out, in*k*k) matrix of the Nesterov
    momentum, with ``buf = m buf + g``."""

    def __init__(self, groups: list[dict], lr: float, momentum: float, muon_lr: float,
                 muon_momentum: float, nesterov: bool = True):
        for g in groups:
            if g.get("muon"):
                g.setdefault("lr", muon_lr)
                g.setdefault("momentum", muon_momentum)
                g["nesterov"] = True  # Muon without Nesterov is clearly worse (airbench)
        super().__init__(groups, {"lr": lr, "momentum": momentum, "weight_decay": 0.0,
                                  "muon": False, "nesterov": nesterov})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, m, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if wd and not group["muon"]:
                    g = g.add(p, alpha=wd)
                state = self.state[p]
                if "buf" not in state:
                    state["buf"] = g.clone()
                else:
                    state["buf"].mul_(m).add_(g)
                d = g.add(state["buf"], alpha=m) if group["nesterov"] else state["buf"]
                if group["muon"]:
                    out = p.shape[0]
                    p.mul_(out ** 0.5 / (p.norm() + 1e-12))
                    p.add_(_orthogonalize(d.reshape(out, -1)).view_as(p), alpha=-lr)
                else:
                    p.add_(d, alpha=-lr)


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in
    76 minutes", Algorithm 2), with timm's defaults (the optimizer of "ResNet strikes
    back"). Per parameter tensor w with gradient g, at step t:

        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
        u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + wd w    # Adam step + decay
        r = ||w|| / ||u||        (1 where either norm is 0)           # the trust ratio
        w = w - lr r u

    The weight decay is decoupled (in ``u``, not in ``g``) and inside the trust ratio.
    Tensors of groups without decay (norm weights and biases, unless
    ``optim.decay_norm_and_bias``) take the plain Adam step, r = 1: timm's default
    (``always_adapt=False``). ``eps`` = 1e-6 as timm. PyTorch has no LAMB."""

    def __init__(self, groups: list[dict], lr: float, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0):
        super().__init__(groups, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            b1, b2 = group["betas"]
            wd, eps = group["weight_decay"], group["eps"]
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p,
                                                           memory_format=torch.preserve_format)
            states = [self.state[p] for p in params]
            grads = [p.grad for p in params]
            m = [s["exp_avg"] for s in states]
            v = [s["exp_avg_sq"] for s in states]
            for s in states:
                s["step"] += 1
            t = float(states[0]["step"])  # the tensors of a group step together
            # moments for every tensor of the group at once (foreach: a kernel per op)
            torch._foreach_lerp_(m, grads, 1 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
            denom = torch._foreach_div(v, 1 - b2 ** t)
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, eps)
            update = torch._foreach_div(m, denom)
            torch._foreach_div_(update, 1 - b1 ** t)
            if wd:
                torch._foreach_add_(update, params, alpha=wd)
                w_norm = torch._foreach_norm(params)
                u_norm = torch._foreach_norm(update)
                for u, wn, un in zip(update, w_norm, u_norm):
                    ratio = torch.where((wn > 0) & (un > 0), wn / un, torch.ones_like(wn))
                    u.mul_(ratio)  # a 0-d tensor: no host sync
            torch._foreach_add_(params, update, alpha=-group["lr"])


class SGDW(torch.optim.SGD):
    """SGD with decoupled weight decay: w <- w * (1 - lr * wd) before the SGD step.

    Each param group carries its own ``decoupled_wd``; SGD's coupled weight_decay stays 0."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            wd = group.get("decoupled_wd", 0.0)
            if wd:
                for p in group["params"]:
                    if p.grad is not None:
                        p.mul_(1 - group["lr"] * wd)
        return super().step(closure)


_TO_DENSE, _FROM_DENSE = (0, 2, 3, 1), (0, 3, 1, 2)  # (O, I, kh, kw) <-> (O, kh, kw, I)


def _channels_last_only(p: torch.Tensor) -> bool:
    return p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(
        memory_format=torch.channels_last)


def _permute_in_place(optimizer: torch.optim.Optimizer, p: torch.Tensor, dims) -> None:
    """Give ``p``, its gradient and its 4-d state the dims order ``dims``: views only, so
    every tensor keeps its storage and the update lands in the parameter itself."""
    grad, p.grad = p.grad, None
    p.data = p.data.permute(dims)
    if grad is not None:
        p.grad = grad.permute(dims)
    state = optimizer.state.get(p, {})
    for key, value in state.items():
        if torch.is_tensor(value) and value.dim() == 4:
            state[key] = value.permute(dims)


class _DenseViewStep:
    """Mixin for Adam / AdamW with the fused kernel: each step runs on contiguous
    (O, kh, kw, I) views of the channels_last filters. The kernel is elementwise, so the
    update is the same to the bit; but over channels_last tensors it took 14.5-17.6 ms per
    step for the 7.86 M parameters of the 5x3 VGG (one thread, AMD Zen 5) against 4.2-4.4 ms
    over the views. Parameters, gradients and state are back in their own shape after the
    step, so state dicts and checkpoints are those of the plain optimizer."""

    def step(self, closure=None):
        if closure is not None:  # a closure runs the model: the filters keep their shape
            return super().step(closure)
        swapped = [p for g in self.param_groups for p in g["params"]
                   if _channels_last_only(p)]
        for p in swapped:
            _permute_in_place(self, p, _TO_DENSE)
        try:
            return super().step()
        finally:
            for p in swapped:
                _permute_in_place(self, p, _FROM_DENSE)


class FusedAdam(_DenseViewStep, torch.optim.Adam):
    """``torch.optim.Adam(fused=True)`` stepping channels_last filters as dense views."""


class FusedAdamW(_DenseViewStep, torch.optim.AdamW):
    """``torch.optim.AdamW(fused=True)`` stepping channels_last filters as dense views."""


def _fused_ok(model: nn.Module) -> bool:
    """Whether Adam's fused kernel can take every parameter: one update kernel for all of
    them instead of a dozen elementwise ops per tensor (measured 0.29 against 0.94 ms per
    step for the 288k parameters of the 3x2 VGG on one CPU thread; same formula, rounding
    aside).  CPU and CUDA floating-point parameters only."""
    params = [p for p in model.parameters() if p.requires_grad]
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                                for p in params)


def decay_mode(cfg: OptimConfig) -> str:
    if cfg.decay_mode != "auto":
        return cfg.decay_mode
    return "decoupled" if cfg.name in ("adamw", "lamb") else "coupled"


def build_optimizer(model: nn.Module, cfg: OptimConfig, batch_size: int | None = None
                    ) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.name`` with decay applied as ``decay_mode(cfg)`` says
    (``batch_size`` is needed by ``optim.per_1024``)."""
    mode = decay_mode(cfg)
    groups = param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias,
                          cfg.norm_bias_lr_scale, cfg.muon, cfg.layer_decay)
    if cfg.per_1024 or cfg.muon:
        if cfg.name != "sgd":
            raise ConfigError(f"optim.per_1024 and optim.muon need optim.name = 'sgd', got "
                              f"{cfg.name!r}")
        lr, wd_step = cfg.lr, None
        if cfg.per_1024:
            if batch_size is None:
                raise ConfigError("optim.per_1024 needs the batch size")
            lr, wd_step = per_1024(cfg.lr, cfg.weight_decay, cfg.momentum, batch_size)
        for g in groups:
            if g.get("muon"):
                continue
            g["lr"] = lr * g.pop("lr_scale")
            if wd_step is not None and g["weight_decay"]:
                g["weight_decay"] = wd_step / g["lr"]  # the same decay fraction per step
        return MuonSGD(groups, lr=lr, momentum=cfg.momentum, muon_lr=cfg.muon_lr,
                       muon_momentum=cfg.muon_momentum, nesterov=cfg.nesterov)
    for g in groups:
        g["lr"] = cfg.lr * g.pop("lr_scale")
        g.pop("muon", None)
    if cfg.name == "sgd":
        if mode == "decoupled":
            for g in groups:
                g["decoupled_wd"] = g.pop("weight_decay")
            return SGDW(groups, lr=cfg.lr, momentum=cfg.momentum,
                        nesterov=cfg.nesterov and cfg.momentum > 0)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.name in ("adam", "adamw"):
        if _fused_ok(model):
            cls = FusedAdamW if mode == "decoupled" else FusedAdam
            return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=True)
        cls = torch.optim.AdamW if mode == "decoupled" else torch.optim.Adam
        return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    if cfg.name == "lamb":
        return Lamb(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    raise ConfigError(f"unknown optimizer '{cfg.name}'; choose sgd, adam, adamw or lamb")


def lr_factor(cfg: OptimConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the base lr after ``step`` optimizer steps (schedules step per batch)."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "onecycle" and warmup == 0:
        warmup = int(round(0.25 * total_steps))  # default one-cycle ramp: first quarter
    floor = cfg.min_lr_ratio
    if warmup and step < warmup:
        return cfg.warmup_from + (1 - cfg.warmup_from) * (step + 1) / warmup
    t = (step - warmup) / max(1, total_steps - warmup)  # progress after warm-up, in [0, 1]
    t = min(max(t, 0.0), 1.0)
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        period = max(1, int(round(cfg.step_epochs * steps_per_epoch)))
        return cfg.gamma ** (step // period)
    if cfg.schedule == "multistep":  # He et al. 2016 on CIFAR: /10 at 50 % and 75 %
        return cfg.gamma ** sum(step >= round(m * total_steps) for m in cfg.milestones)
    if cfg.schedule in ("cosine", "warmup-cosine"):
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule in ("onecycle", "warmup-linear"):
        return floor + (1 - floor) * (1 - t)
    raise ConfigError(f"unknown schedule '{cfg.schedule}'")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(cfg, s, total_steps, steps_per_epoch)
    )
