import math

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.errors import TrainingError
from cnnlab.experiments.run import build_model
from cnnlab.train import EarlyStopping, fit


def _model(ds, **kw):
    args = {"blocks": 2, "layers": 1, "width": 8, "input_size": ds.train.shape[0], **kw}
    return cnnlab.create_model("vgg", num_classes=ds.num_classes, **args)


def test_loop_lowers_loss_and_writes_run_folder(toy, tiny_cfg, tmp_path):
    torch.manual_seed(0)
    cfg = tiny_cfg.set(**{"train.epochs": 4})
    result = fit(_model(toy), toy, cfg, out_dir=tmp_path / "run", progress=False)
    h = result.history
    assert result.status == "ok" and len(h) == 4
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert result.summary["test_acc"] > 0.5  # chance is 0.25
    for name in ("config.json", "run.toml", "metrics.csv", "summary.json",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (tmp_path / "run" / name).exists(), name
    assert len((tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()) == 5


def test_overfits_a_single_batch(toy, tiny_cfg):
    torch.manual_seed(0)
    one = toy.train.subset(torch.arange(32))
    cfg = tiny_cfg.set(**{"train.epochs": 60, "data.val_fraction": 0.0, "optim.lr": 1e-2,
                          "model.width": 16})
    result = fit(_model(toy, width=16), one, cfg, progress=False)
    assert result.history[-1]["train_acc"] == 1.0
    assert result.history[-1]["train_loss"] < 0.05


def test_runs_are_reproducible(toy, tiny_cfg):
    def once():
        torch.manual_seed(1)
        return fit(_model(toy), toy, tiny_cfg.set(**{"data.augment": "flip-crop"}),
                   progress=False).model.state_dict()

    a, b = once(), once()
    assert all(torch.equal(a[k], b[k]) for k in a)


class RecordWeights(cnnlab.train.Callback):
    def __init__(self):
        self.weights = []

    def on_epoch_end(self, trainer, epoch, metrics):
        self.weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})


def test_early_stopping_stops_at_right_epoch_and_restores_best(toy, tiny_cfg):
    # Fake the monitored metric so the best epoch is known: val_acc peaks at epoch 2.
    values = iter([0.5, 0.8, 0.7, 0.75, 0.6, 0.9, 0.9])

    class FakeMetric(cnnlab.train.Callback):
        def on_epoch_end(self, trainer, epoch, metrics):
            metrics["val_acc"] = next(values)

    rec = RecordWeights()
    stopper = EarlyStopping("val_acc", patience=2)
    cfg = tiny_cfg.set(**{"train.epochs": 7})
    torch.manual_seed(0)
    result = fit(_model(toy), toy, cfg, callbacks=[FakeMetric(), rec, stopper], progress=False)
    assert len(result.history) == 4  # epochs 3 and 4 did not improve on epoch 2
    assert result.status == "stopped"
    assert stopper.best_epoch == 1
    final = result.model.state_dict()
    assert all(torch.equal(final[k], rec.weights[1][k]) for k in final)
    assert not all(torch.equal(final[k], rec.weights[3][k]) for k in final)


def test_min_delta_and_mode():
    es = EarlyStopping("val_loss", patience=1, min_delta=0.1)
    assert es.mode == "min"
    es.best = 1.0
    assert not es.improved(0.95) and es.improved(0.85)


def test_divergence_is_reported_not_raised(toy, tiny_cfg, tmp_path):
    torch.manual_seed(0)
    # tanh: ReLUs would just die at a huge rate and keep the loss finite
    cfg = tiny_cfg.set(**{"optim.lr": 1e37, "optim.name": "sgd", "train.epochs": 5})
    result = fit(_model(toy, act="tanh"), toy, cfg, out_dir=tmp_path / "r", progress=False)
    assert result.status == "diverged"
    assert "non-finite" in result.message and "optim.lr" in result.message
    assert result.summary["status"] == "diverged"
    assert (tmp_path / "r" / "summary.json").exists()


def test_bad_labels_rejected(toy, tiny_cfg):
    toy.train.labels[3] = 7
    with pytest.raises(TrainingError, match=r"labels must lie in \[0, 4\), found 0\.\.7"):
        fit(_model(toy), toy, tiny_cfg, progress=False)


def test_head_size_mismatch(toy, tiny_cfg):
    model = cnnlab.create_model("vgg", num_classes=10, blocks=2, layers=1, width=8)
    with pytest.raises(TrainingError, match="4 classes; build it with num_classes=4"):
        fit(model, toy, tiny_cfg, progress=False)


def test_channel_mismatch(toy, tiny_cfg):
    model = cnnlab.create_model("vgg", num_classes=4, in_chans=1, blocks=2, layers=1, width=8)
    with pytest.raises(TrainingError, match="takes 1 input channels but the images have 3"):
        fit(model, toy, tiny_cfg, progress=False)


def test_batch_larger_than_data(toy, tiny_cfg):
    with pytest.raises(TrainingError, match="larger than"):
        fit(_model(toy), toy, tiny_cfg.set(**{"data.batch_size": 100000}), progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu(toy, tiny_cfg):
    with pytest.raises(TrainingError, match="no CUDA GPU"):
        fit(_model(toy), toy, tiny_cfg.set(**{"train.device": "cuda"}), progress=False)


def test_soft_targets_and_label_smoothing():
    from cnnlab.train.losses import cross_entropy

    logits = torch.randn(5, 3)
    y = torch.tensor([0, 2, 1, 1, 0])
    onehot = nn.functional.one_hot(y, 3).float()
    assert torch.allclose(cross_entropy(logits, y, 0.1), cross_entropy(logits, onehot, 0.1))
    assert torch.allclose(cross_entropy(logits, y), nn.functional.cross_entropy(logits, y))


def test_tta_views_average(toy, tiny_cfg):
    torch.manual_seed(0)
    for tta in ("flip", "flip-translate"):
        r = fit(_model(toy), toy, tiny_cfg.set(**{"train.tta": tta, "train.epochs": 1}),
                progress=False)
        assert 0 <= r.summary["test_acc"] <= 1 and math.isfinite(r.summary["test_loss"])


def test_build_model_takes_channels_and_classes_from_data(toy, tiny_cfg):
    model = build_model(tiny_cfg, toy)
    assert model.head.out_features == 4 and model.input_size == 16


def test_l1_proximal_training_reports_sparsity(toy, tiny_cfg, tmp_path):
    torch.manual_seed(0)
    cfg = tiny_cfg.set(**{"optim.l1": 0.05, "optim.proximal_l1": True, "optim.name": "sgd",
                          "optim.lr": 0.1})
    result = fit(_model(toy), toy, cfg, out_dir=tmp_path / "r", progress=False)
    sparsity = result.summary["sparsity"]
    assert sparsity["weight_fraction"] > 0.3  # soft-thresholding gives exact zeros
    assert "total" in (tmp_path / "r" / "sparsity.txt").read_text()


def test_summary_has_per_class_test_accuracy(toy, tiny_cfg, tmp_path):
    import json

    torch.manual_seed(0)
    result = fit(_model(toy), toy, tiny_cfg, out_dir=tmp_path / "run", progress=False)
    per_class = json.loads((tmp_path / "run" / "summary.json").read_text())["test_per_class_acc"]
    assert list(per_class) == toy.classes
    counts = toy.test.labels.bincount(minlength=toy.num_classes).tolist()
    # the class accuracies, weighted by the class sizes, give the overall test accuracy
    overall = sum(a * n for a, n in zip(per_class.values(), counts)) / sum(counts)
    assert overall == pytest.approx(result.summary["test_acc"])
    assert all(0.0 <= a <= 1.0 for a in per_class.values())


def test_target_train_acc_stops_at_the_first_epoch_that_reaches_it(toy, tiny_cfg):
    torch.manual_seed(0)
    cfg = tiny_cfg.set(**{"train.epochs": 40, "train.target_train_acc": 0.9,
                          "model.width": 16})
    result = fit(_model(toy, width=16), toy, cfg, progress=False)
    accs = [h["train_acc"] for h in result.history]
    assert accs[-1] >= 0.9 and all(a < 0.9 for a in accs[:-1]) and len(accs) < 40
    assert result.status == "stopped"
    assert result.summary["steps_to_target"] == result.history[-1]["step"]
    never = fit(_model(toy), toy, tiny_cfg.set(**{"train.target_train_acc": 1.0}),
                progress=False)
    assert never.summary["steps_to_target"] is None and never.status == "ok"


def test_test_curve_adds_test_metrics_per_epoch_equal_to_the_final_test(toy, tiny_cfg):
    torch.manual_seed(0)
    result = fit(_model(toy), toy, tiny_cfg.set(**{"train.test_curve": True}), progress=False)
    assert all(0 <= h["test_acc"] <= 1 for h in result.history)
    assert result.history[-1]["test_acc"] == result.summary["test_acc"]
    torch.manual_seed(0)
    plain = fit(_model(toy), toy, tiny_cfg, progress=False)
    assert "test_acc" not in plain.history[0]
    assert plain.summary["test_acc"] == result.summary["test_acc"]  # curves change nothing


def test_mse_loss_is_the_squared_error_to_one_hot(toy, tiny_cfg):
    from cnnlab.train.losses import classification_loss

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    y = torch.tensor([0, 2])
    want = ((1.0 + 0 + 1) + (0.25 + 0.25 + 1)) / 2
    assert classification_loss("mse", logits, y).item() == pytest.approx(want)
    assert classification_loss("mse", logits, y, reduction="sum").item() == pytest.approx(
        2 * want)
    torch.manual_seed(0)
    result = fit(_model(toy), toy, tiny_cfg.set(**{"optim.loss": "mse", "train.epochs": 4}),
                 progress=False)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.summary["test_acc"] > 0.5
