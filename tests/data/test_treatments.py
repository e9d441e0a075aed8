"""Training-data treatments (data.train_size, data.label_noise, data.pixels) on tiny sets."""

import json
from pathlib import Path

import pytest
import torch

from cnnlab.config import RunConfig, apply_overrides
from cnnlab.data.dataset import Dataset, ImageSet
from cnnlab.data.treatments import (
    apply_treatments,
    gaussian_pixels,
    noisy_labels,
    permute_pixels,
    pixel_permutation,
    random_pixels,
    stratified_subset,
)
from cnnlab.errors import ConfigError


def _set(n=60, k=3, side=4, c=3, seed=0, counts=None) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    labels = (torch.cat([torch.full((m,), i) for i, m in enumerate(counts)]) if counts
              else torch.arange(n) % k)
    n = len(labels)
    images = torch.randint(0, 256, (n, side, side, c), generator=g, dtype=torch.uint8)
    return ImageSet(images, labels, [f"c{i}" for i in range(max(labels.tolist()) + 1)])


def _ds() -> Dataset:
    return Dataset("tiny", _set(60, seed=0), test=_set(12, seed=1), val=_set(9, seed=2))


def _data_cfg(**kw):
    return apply_overrides(RunConfig(), {f"data.{k}": v for k, v in kw.items()}).data


def test_stratified_subset_sizes_and_determinism():
    data = _set(counts=[50, 30, 20])
    sub = stratified_subset(data, 10, 0)
    assert len(sub) == 10 and sub.counts() == [5, 3, 2]
    odd = stratified_subset(data, 7, 0)  # 3.5, 2.1, 1.4 -> largest remainders: 4, 2, 1
    assert len(odd) == 7 and odd.counts() == [4, 2, 1]
    assert torch.equal(stratified_subset(data, 10, 3).images, stratified_subset(data, 10, 3).images)
    assert not torch.equal(stratified_subset(data, 10, 3).images, sub.images)
    assert len(stratified_subset(data, 100, 0)) == 100
    with pytest.raises(ConfigError, match=r"data.train_size = 101 .* 100 images"):
        stratified_subset(data, 101, 0)


def test_label_noise_changes_exact_count_never_same_class():
    data = _set(n=90, k=3)
    noisy, changed = noisy_labels(data, 0.3, 0)
    diff = noisy.labels != data.labels
    assert changed == 27 and int(diff.sum()) == 27  # round(0.3 * 90), each really changed
    assert torch.equal(noisy.images, data.images)
    again, _ = noisy_labels(data, 0.3, 0)
    assert torch.equal(again.labels, noisy.labels)
    assert not torch.equal(noisy_labels(data, 0.3, 1)[0].labels, noisy.labels)
    every, n_all = noisy_labels(data, 1.0, 0)
    assert n_all == 90 and bool((every.labels != data.labels).all())
    assert set(every.labels.tolist()) == {0, 1, 2}  # other classes, both of them drawn
    assert noisy_labels(data, 0.0, 0) == (data, 0)


def test_label_noise_to_any_draws_among_all_classes():
    """Zhang et al.'s corruption: 1.0 = labels independent of the images, right 1/K of the
    time; the count returned is of the labels that really changed."""
    data = _set(n=3000, k=10)
    rand, changed = noisy_labels(data, 1.0, 0, to="any")
    kept = float((rand.labels == data.labels).float().mean())
    assert abs(kept - 0.1) < 0.02 and changed == int((rand.labels != data.labels).sum())
    assert sorted(set(rand.labels.tolist())) == list(range(10))
    counts = torch.bincount(rand.labels, minlength=10)
    assert int(counts.min()) > 240  # uniform over the 10 classes (300 expected each)
    half, _ = noisy_labels(data, 0.5, 0, to="any")
    assert abs(float((half.labels != data.labels).float().mean()) - 0.45) < 0.03
    cfg = _data_cfg(label_noise=1.0, label_noise_to="any")
    _, record = apply_treatments(_ds(), cfg)
    assert record["label_noise_to"] == "any"
    with pytest.raises(ConfigError, match="data.label_noise_to = 'al' is not one of other, any"):
        _data_cfg(label_noise_to="al")


def test_shuffled_is_one_permutation_for_every_image():
    data = _set(n=8)
    perm = pixel_permutation(data.shape, 0)
    out = permute_pixels(data, perm)
    flat_in, flat_out = data.images.reshape(8, 16, 3), out.images.reshape(8, 16, 3)
    assert torch.equal(flat_out, flat_in[:, perm])  # same positions for all, channels together
    assert not torch.equal(out.images, data.images)
    assert torch.equal(out.images.reshape(8, -1).sort(1).values,
                       data.images.reshape(8, -1).sort(1).values)


def test_random_pixels_differs_per_image():
    # identical images: any difference after the treatment is from per-image permutations
    base = torch.arange(16 * 3, dtype=torch.uint8).reshape(1, 4, 4, 3).expand(6, -1, -1, -1)
    data = ImageSet(base.clone(), torch.zeros(6, dtype=torch.long), ["a"])
    out = random_pixels(data, 0)
    pixels = out.images.reshape(6, 16, 3)
    assert len({tuple(p.flatten().tolist()) for p in pixels}) == 6
    # each is a permutation of whole pixels: the (r, g, b) triples are kept together
    rows = {tuple(r) for r in base[0].reshape(16, 3).tolist()}
    assert all({tuple(r) for r in p.tolist()} == rows for p in pixels)
    assert torch.equal(random_pixels(data, 0).images, out.images)


def test_gaussian_matches_training_mean_and_std():
    g = torch.Generator().manual_seed(0)
    images = (torch.randn(400, 8, 8, 3, generator=g) * torch.tensor([20.0, 30.0, 10.0])
              + torch.tensor([100.0, 150.0, 60.0])).round().clamp(0, 255).to(torch.uint8)
    data = ImageSet(images, torch.arange(400) % 4, list("abcd"))
    out = gaussian_pixels(data, 0)
    assert out.images.dtype == torch.uint8 and torch.equal(out.labels, data.labels)
    assert not torch.equal(out.images, data.images)
    m_in, s_in = data.mean_std()
    m_out, s_out = out.mean_std()
    assert m_out == pytest.approx(m_in, abs=1 / 255)
    assert s_out == pytest.approx(s_in, rel=0.02)


@pytest.mark.parametrize("pixels", ["keep", "shuffled", "random", "gaussian"])
def test_only_training_split_changes_except_shuffled(pixels):
    ds = _ds()
    out, record = apply_treatments(ds, _data_cfg(train_size=30, label_noise=0.5, pixels=pixels))
    assert len(out.train) == 30  # (counts: test_stratified_subset_sizes_and_determinism)
    assert record["train_size"] == 30 and record["labels_changed"] == 15
    assert record["labels_changed_fraction"] == 0.5 and record["pixels"] == pixels
    assert out.info["treatments"] == record
    for name in ("val", "test"):
        before, after = getattr(ds, name), getattr(out, name)
        assert torch.equal(after.labels, before.labels)
        if pixels == "shuffled":  # the same fixed permutation as the training images
            perm = pixel_permutation(ds.train.shape, torch.Generator().manual_seed(3))
            assert torch.equal(after.images, permute_pixels(before, perm).images)
        else:
            assert after.images is before.images
    assert len(ds.train) == 60  # the input is left alone


@pytest.mark.parametrize("override, message", [
    ({"data.label_noise": 1.5}, r"^data.label_noise must be in \[0, 1\], got 1.5$"),
    ({"data.train_size": -1}, r"^data.train_size must be >= 0"),
    ({"data.pixels": "shufled"},
     r"^data.pixels = 'shufled' is not one of keep, shuffled, random, gaussian "
     r"\(did you mean 'shuffled'\?\)$"),
])
def test_bad_values_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message) as e:
        apply_overrides(RunConfig(), override)
    assert "\n" not in str(e.value)


def test_train_size_larger_than_split_in_prepare_data():
    from cnnlab.train.run import prepare_data

    cfg = apply_overrides(RunConfig(), {"data.spec": "digits", "data.limit": 100,
                                        "data.train_size": 101})
    with pytest.raises(ConfigError, match="data.train_size = 101") as e:
        prepare_data(cfg)
    assert "\n" not in str(e.value)


def test_sweep_over_label_noise_records_treatments(tmp_path):
    from cnnlab.api import sweep

    spec = {"name": "noise", "reps": 1, "seed": 0,
            "base": {"data": {"spec": "digits", "batch_size": 32, "limit": 120},
                     "model": {"name": "vgg", "width": 4, "blocks": 1, "layers": 1},
                     "train": {"epochs": 1, "device": "cpu"}},
            "grid": {"data.label_noise": [0.0, 1.0]}}
    res = sweep(spec, tmp_path / "s", workers=1, report=False, log=lambda *a: None)
    assert len(res.runs) == 2 and all(r["status"] in ("ok", "stuck") for r in res.runs)
    changed = {}
    for r in res.runs:
        info = json.loads((Path(r["run_dir"]) / "config.json").read_text())
        t = info["dataset"]["treatments"]
        assert t["train_size"] == info["dataset"]["sizes"]["train"]
        changed[t["label_noise"]] = t["labels_changed_fraction"]
    assert changed == {0.0: 0.0, 1.0: 1.0}


def test_prepare_data_cache_tells_label_noise_modes_apart():
    """The per-process dataset cache keys on every data setting that changes the data."""
    from cnnlab.train.run import prepare_data

    base = RunConfig().set(**{"data.spec": "digits", "data.label_noise": 1.0})
    other = prepare_data(base).train.labels.clone()
    anyc = prepare_data(base.set(**{"data.label_noise_to": "any"})).train.labels
    assert not torch.equal(other, anyc)
    assert prepare_data(base.set(**{"data.batch_size": 7})).train.labels.equal(other)
