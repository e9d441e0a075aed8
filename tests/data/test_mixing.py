"""MixUp, CutMix, the switch between them and the generator-driven Beta sampler."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.data.augment import CutMix, MixUp, MixUpCutMix, build_pipeline
from cnnlab.data.augment.mixing import cutmix_boxes, sample_beta, sample_gamma, soft_targets


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def constant_images(b: int = 32, h: int = 10, w: int = 12) -> torch.Tensor:
    """Sample i is the constant (i + 1) / (b + 1): every pixel tells where it came from."""
    return ((torch.arange(b).float() + 1) / (b + 1)).view(b, 1, 1, 1).expand(b, 3, h, w).clone()


@pytest.mark.parametrize("alpha", [0.2, 1.0, 3.0])
def test_beta_sampler_moments(alpha):
    lam = sample_beta(alpha, alpha, 20000, gen(1))
    var = 1 / (4 * (2 * alpha + 1))
    assert lam.min() >= 0 and lam.max() <= 1
    assert abs(lam.mean().item() - 0.5) < 0.02
    assert abs(lam.var().item() - var) < 0.1 * var


def test_gamma_sampler_mean_and_reproducibility():
    for shape in (0.3, 1.0, 4.0):
        g = sample_gamma(shape, 20000, gen(2))
        assert abs(g.mean().item() - shape) < 0.05 * shape + 0.02
    assert torch.equal(sample_beta(0.4, 0.4, 64, gen(3)), sample_beta(0.4, 0.4, 64, gen(3)))
    assert not torch.equal(sample_beta(0.4, 0.4, 64, gen(3)), sample_beta(0.4, 0.4, 64, gen(4)))


def test_mixup_labels_sum_to_one_and_equal_lambda():
    x, y = constant_images(), torch.arange(32) % 10
    op = MixUp(alpha=0.4, num_classes=10)
    params = op.sample(x.shape, gen(5), x.device)
    xm, ym = op.apply(x, y, params)
    lam, perm = params["lam"], params["perm"]
    assert ym.shape == (32, 10) and ym.dtype == torch.float32
    assert torch.allclose(ym.sum(1), torch.ones(32))
    expected_x = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[perm]
    assert torch.allclose(xm, expected_x, atol=1e-6)
    for i in range(32):
        if y[i] != y[perm[i]]:
            assert ym[i, y[i]] == pytest.approx(lam[i].item(), abs=1e-6)
            assert ym[i, y[perm[i]]] == pytest.approx(1 - lam[i].item(), abs=1e-6)
        else:
            assert ym[i, y[i]] == pytest.approx(1.0)
    assert len(set(lam.tolist())) > 16  # one lambda per sample


def test_cutmix_label_weight_equals_pasted_fraction():
    x, y = constant_images(64, 9, 13), torch.arange(64)  # all labels distinct
    op = CutMix(alpha=1.0, num_classes=64)
    params = op.sample(x.shape, gen(6), x.device)
    xm, ym = op.apply(x, y, params)
    perm = params["perm"]
    assert torch.allclose(ym.sum(1), torch.ones(64))
    clipped = 0
    for i in range(64):
        pasted = (xm[i, 0] == x[perm[i], 0, 0, 0]).float().mean().item()
        if perm[i] == i:
            continue
        assert ym[i, perm[i]].item() == pytest.approx(pasted, abs=1e-6)
        assert ym[i, i].item() == pytest.approx(1 - pasted, abs=1e-6)
        y0, x0, y1, x1 = (int(t[i]) for t in params["box"])
        clipped += y0 == 0 or x0 == 0 or y1 == 9 or x1 == 13
    assert clipped > 0  # boxes crossing the border were clipped, and weighted as clipped


def test_cutmix_boxes_are_clipped_to_the_image():
    lam = torch.tensor([0.0, 0.5, 0.75, 1.0])
    y0, x0, y1, x1 = cutmix_boxes(lam, torch.tensor([0, 5, 9, 4]), torch.tensor([0, 5, 9, 4]),
                                  10, 10)
    assert (y0 >= 0).all() and (y1 <= 10).all() and (x0 >= 0).all() and (x1 <= 10).all()
    assert (y1 - y0)[3] == 0 and (x1 - x0)[3] == 0  # lam = 1: nothing pasted
    assert ((y1 - y0) * (x1 - x0))[0] == 25  # a 10x10 box centred at the corner keeps 1/4


def test_probability_leaves_unmixed_samples_alone():
    x, y = constant_images(), torch.arange(32) % 10
    for op in (MixUp(alpha=1.0, p=0.5, num_classes=10), CutMix(alpha=1.0, p=0.5, num_classes=10)):
        params = op.sample(x.shape, gen(7), x.device)
        xm, ym = op.apply(x, y, params)
        keep = ~params["mask"]
        assert keep.any() and torch.equal(xm[keep], x[keep])
        assert torch.equal(ym[keep], F.one_hot(y[keep], 10).float())


def test_switch_picks_one_method_per_batch():
    x, y = constant_images(), torch.arange(32) % 10
    kinds = set()
    op = MixUpCutMix(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, num_classes=10)
    g = gen(8)
    for _ in range(12):
        params = op.sample(x.shape, g, x.device)
        xm, _ = op.apply(x, y, params)
        # CutMix keeps pixel values of the originals; MixUp blends them
        values = set(torch.unique(xm).tolist())
        is_cut = values <= set(torch.unique(x).tolist())
        assert is_cut == params["cutmix"]
        kinds.add(is_cut)
    assert kinds == {True, False}
    always = MixUpCutMix(switch_prob=1.0, num_classes=10)
    assert all(always.sample(x.shape, g, x.device)["cutmix"] for _ in range(5))


def test_soft_targets_flow_through_and_compose_with_label_smoothing():
    y = torch.tensor([1, 2])
    soft = soft_targets(y, 4)
    assert torch.equal(soft, torch.tensor([[0.0, 1, 0, 0], [0, 0, 1, 0]]))
    assert soft_targets(soft, None) is not None
    x = constant_images(2, 4, 4)
    # a second mixing op mixes the soft targets of the first
    _, y1 = MixUp(num_classes=4)(x, y, gen())
    _, y2 = CutMix(num_classes=4)(x, y1, gen(1))
    assert y2.shape == (2, 4) and torch.allclose(y2.sum(1), torch.ones(2))
    logits = torch.randn(2, 4)
    loss = F.cross_entropy(logits, y2, label_smoothing=0.1)
    assert torch.isfinite(loss)


def test_seeded_generator_reproduces_a_mixed_batch():
    pipe = build_pipeline("modern", num_classes=10, image_size=32)
    x = torch.rand(16, 3, 32, 32, generator=gen(1))
    y = torch.randint(0, 10, (16,), generator=gen(2))
    a = pipe(x, y, gen(9))
    b = pipe(x, y, gen(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[1].shape == (16, 10)
