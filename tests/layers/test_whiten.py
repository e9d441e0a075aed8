"""The patch-whitening layer whitens the patches it was fitted to."""

import torch

from cnnlab.layers.whiten import PatchWhitening, image_patches, whitening_filters


def _correlated_images(n=48, c=3, size=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, size, size, generator=g)
    mix = torch.randn(n, c, size, size, generator=g) * 0.3
    x = base + mix  # channels strongly correlated
    return x + 0.5 * x.roll(1, dims=-1)  # and neighbouring pixels too


def test_output_has_identity_covariance_on_its_training_patches():
    x = _correlated_images()
    layer = PatchWhitening(in_chans=3, kernel=2, eps=1e-9)
    layer.init_from_data(x)
    with torch.no_grad():
        out = layer(x)  # (N, 24, H-1, W-1)
    d = 3 * 2 * 2
    assert out.shape == (48, 2 * d, 9, 9)
    z = out[:, :d].permute(0, 2, 3, 1).reshape(-1, d).double()  # one row per patch
    cov = z.T @ z / len(z)
    assert torch.allclose(cov, torch.eye(d, dtype=torch.float64), atol=1e-3)
    # the input patches themselves are far from white
    p = image_patches(x, 2).double()
    assert (p.T @ p / len(p) - torch.eye(d, dtype=torch.float64)).abs().max() > 0.5
    # the second half are the negatives; weights frozen, bias trainable and zero
    assert torch.allclose(out[:, d:], -out[:, :d])
    assert not layer.weight.requires_grad and layer.bias.requires_grad
    assert layer.bias.abs().max() == 0


def test_filters_are_ordered_by_variance_and_eps_damps_small_directions():
    x = _correlated_images(seed=1)
    w_small = whitening_filters(x, 2, eps=1e-9)
    w_big = whitening_filters(x, 2, eps=10.0)
    assert w_small.shape == (12, 3, 2, 2)
    norms = w_small.flatten(1).norm(dim=1)  # 1 / sqrt(eigenvalue): grows down the list
    assert norms[0] < norms[-1]
    assert (w_big.flatten(1).norm(dim=1) < norms).all()
