"""Stacked repetitions: repetition i of a stacked run matches a separate run of its seed
(initial weights, weights and optimizer state after the first steps, metrics, statuses,
checkpoints, resume), on the bundled digits, CPU, fp32."""

import pytest
import torch
from torch import nn

from cnnlab.config import RunConfig
from cnnlab.errors import TrainingError
from cnnlab.train import Callback, fit
from cnnlab.train.checkpoint import load_checkpoint, seed_everything
from cnnlab.train.stacked import StackedTrainer, fit_stacked

SEEDS = (3, 11)
# vmapped (grouped) convolutions sum in another order; measured after <= 30 steps: weights
# and optimizer state within 1e-6..7e-5 of the separate run (largest: Adam on a net still at
# chance, whose tiny gradients it normalizes), metrics within 1e-7
ATOL, RTOL = 1e-4, 1e-4


def _cfg(**kw) -> RunConfig:
    base = {"data.limit": 320, "data.batch_size": 32, "data.eval_batch_size": 256,
            "train.epochs": 1, "train.device": "cpu", "train.precision": "fp32",
            "train.channels_last": "false", "train.quiet": True, "optim.lr": 3e-3}
    return RunConfig().set(**{**base, **kw})


def bn_net() -> nn.Module:
    # no bias before batch norm: its true gradient is 0, and Adam turns the rounding noise
    # of a zero gradient into steps of +-lr in any summation order (stacked or not)
    return nn.Sequential(nn.Conv2d(1, 6, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(6),
                         nn.ReLU(),
                         nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def plain_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 10))


def _model(seed: int, build):
    seed_everything(seed)  # as experiments.run.train_run builds a run's model
    return build()


def _separate(cfg, build, tmp_path, tag="sep"):
    return [fit(_model(s, build), "digits", cfg.set(**{"train.seed": s}),
                out_dir=tmp_path / f"{tag}{s}") for s in SEEDS]


def _stacked(cfg, build, tmp_path, tag="stk", resume=False, models=None):
    models = models or [_model(s, build) for s in SEEDS]
    return fit_stacked(models, "digits", [cfg.set(**{"train.seed": s}) for s in SEEDS],
                       out_dirs=[tmp_path / f"{tag}{s}" for s in SEEDS], resume=resume)


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0
               for k in a)


def _assert_same_state(sa, sb):
    """Model weights and buffers, and optimizer state, of two checkpoints."""
    assert _max_diff(sa["model"], sb["model"]) < ATOL
    oa, ob = sa["optimizer"]["state"], sb["optimizer"]["state"]
    assert oa.keys() == ob.keys() and oa
    for k in oa:
        assert oa[k].keys() == ob[k].keys()
        for name in oa[k]:
            torch.testing.assert_close(oa[k][name], ob[k][name], atol=ATOL, rtol=RTOL)
    assert sa["optimizer"]["param_groups"] == sb["optimizer"]["param_groups"]
    assert sa["scheduler"] == sb["scheduler"]
    assert sa["loader"]["epoch"] == sb["loader"]["epoch"]
    assert sa["loader"]["batch"] == sb["loader"]["batch"]
    assert torch.equal(sa["loader"]["generator"], sb["loader"]["generator"])
    assert (sa["epoch"], sa["step"]) == (sb["epoch"], sb["step"])


def _assert_same_runs(sep, stk, tmp_path, sep_tag="sep", stk_tag="stk"):
    for s, a, b in zip(SEEDS, sep, stk):
        assert a.status == b.status and a.message == b.message
        assert len(a.history) == len(b.history)
        for ha, hb in zip(a.history, b.history):
            for key in ("epoch", "step", "train_acc", "val_acc", "lr"):
                assert ha[key] == pytest.approx(hb[key], abs=1e-6), key
            for key in ("train_loss", "val_loss"):
                # fused Adam rounds a stacked tensor by other chunks than R separate ones
                assert ha[key] == pytest.approx(hb[key], rel=1e-4), key
        for key in ("status", "steps", "epochs_completed", "test_acc", "best_epoch"):
            assert a.summary[key] == b.summary[key], key
        assert b.summary["stacked_reps"] == len(SEEDS)
        if a.status != "diverged":
            _assert_same_state(load_checkpoint(tmp_path / f"{sep_tag}{s}/checkpoints/last.pt"),
                               load_checkpoint(tmp_path / f"{stk_tag}{s}/checkpoints/last.pt"))
        assert _max_diff(a.model.state_dict(), b.model.state_dict()) < ATOL


def test_initial_weights_are_each_seeds_own(tmp_path):
    from cnnlab.train.run import build_loaders, prepare_data
    from cnnlab.train.trainer import Trainer

    cfgs = [_cfg(**{"train.seed": s}) for s in SEEDS]
    ds = prepare_data(cfgs[0].set(**{"data.spec": "digits"}))
    trainers = [Trainer(_model(c.train.seed, bn_net), build_loaders(ds, c, torch.device("cpu"),
                                                                    False)[0], c)
                for c in cfgs]
    runner = StackedTrainer(trainers)
    for j, s in enumerate(SEEDS):
        fresh = _model(s, bn_net).state_dict()
        for name, p in runner.params.items():
            assert torch.equal(p[j].detach(), fresh[name])
        for name, b in runner.buffers.items():
            assert torch.equal(b[j], fresh[name])
    assert not torch.equal(runner.params["0.weight"][0], runner.params["0.weight"][1])


@pytest.mark.parametrize("build,over", [
    # Adam, batch norm, active clipping by global norm, flip-crop augmentation
    (bn_net, {"optim.grad_clip": 0.05, "data.augment": "flip-crop"}),
    # SGD with Nesterov momentum, decoupled decay (SGDW), cosine schedule
    (plain_net, {"optim.name": "sgd", "optim.lr": 0.05, "optim.nesterov": True,
                 "optim.weight_decay": 5e-3, "optim.decay_mode": "decoupled",
                 "optim.schedule": "cosine", "train.epochs": 2}),
    # AdamW with weight decay on norm and bias too, label smoothing
    (bn_net, {"optim.name": "adamw", "optim.weight_decay": 0.05,
              "optim.decay_norm_and_bias": True, "optim.label_smoothing": 0.1}),
])
def test_stacked_matches_separate_runs(tmp_path, build, over):
    cfg = _cfg(**over)
    sep = _separate(cfg, build, tmp_path)
    stk = _stacked(cfg, build, tmp_path)
    _assert_same_runs(sep, stk, tmp_path)
    assert _max_diff(sep[0].model.state_dict(), sep[1].model.state_dict()) > 1e-3  # not one run


class Bomb(nn.Module):
    """Identity until its ``at``-th training forward, then inf: a non-finite loss at a step
    drawn from the seed (``at`` comes from the global generator the seed set)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("at", torch.randint(3, 24, ()).float())

    def forward(self, x):
        if self.training:
            self.count += 1
        return x * torch.where(self.count >= self.at, torch.inf, 1.0)


def bomb_net() -> nn.Module:
    return nn.Sequential(plain_net(), Bomb())


def test_divergence_is_per_repetition(tmp_path):
    """Each repetition's loss turns non-finite at its own step: it ends there with status,
    message, steps and weights (the bad update never applied) as a separate run, while the
    other goes on."""
    cfg = _cfg(**{"train.epochs": 3})
    sep = _separate(cfg, bomb_net, tmp_path)
    steps = [r.summary["steps"] for r in sep]
    assert "diverged" in [r.status for r in sep] and len(set(steps)) == 2, steps
    stk = _stacked(cfg, bomb_net, tmp_path)
    _assert_same_runs(sep, stk, tmp_path)


def test_early_stopping_per_repetition(tmp_path):
    cfg = _cfg(**{"train.epochs": 4, "train.early_stopping": True, "train.patience": 1,
                  "train.monitor": "val_loss", "train.min_delta": 0.05, "optim.lr": 1e-2})
    sep = _separate(cfg, plain_net, tmp_path)
    stk = _stacked(cfg, plain_net, tmp_path)
    _assert_same_runs(sep, stk, tmp_path)


def test_resume_matches_uninterrupted(tmp_path):
    """One epoch stacked, then resumed stacked to two: as two-epoch separate runs; and a
    stacked run's folder resumes as a separate run too."""
    cfg = _cfg(**{"optim.grad_clip": 0.05, "data.augment": "flip-crop", "train.epochs": 2})
    sep = _separate(cfg, bn_net, tmp_path)
    _stacked(cfg.set(**{"train.epochs": 1}), bn_net, tmp_path)
    stk = _stacked(cfg, bn_net, tmp_path, resume=True)
    _assert_same_runs(sep, stk, tmp_path)
    _stacked(cfg.set(**{"train.epochs": 1}), bn_net, tmp_path, tag="mix")
    alone = [fit(bn_net(), "digits", cfg.set(**{"train.seed": s}), out_dir=tmp_path / f"mix{s}",
                 resume=True) for s in SEEDS]
    for a, b in zip(sep, alone):
        assert _max_diff(a.model.state_dict(), b.model.state_dict()) < ATOL


class Interrupt(Callback):
    def on_batch_end(self, trainer, step, loss):
        if step == 14:
            raise KeyboardInterrupt


def test_mid_epoch_checkpoints_and_resume(tmp_path):
    """Checkpoints every 4 steps: a stacked run writes each repetition's as a separate run
    does; separate runs interrupted mid-epoch (last checkpoint at step 12 of 20) resume
    stacked to the uninterrupted result."""
    # lr 3e-3: at 1e-2 one seed's net stays near chance, where Adam amplifies the 1-ulp
    # differences of the fused kernel's chunking (stacked vs separate tensors) to 3e-3
    cfg = _cfg(**{"train.checkpoint_every": 4, "train.epochs": 2, "data.augment": "flip-crop"})
    sep = _separate(cfg, bn_net, tmp_path)
    stk = _stacked(cfg, bn_net, tmp_path)
    _assert_same_runs(sep, stk, tmp_path)
    for s in SEEDS:
        with pytest.raises(KeyboardInterrupt):
            fit(_model(s, bn_net), "digits", cfg.set(**{"train.seed": s}),
                out_dir=tmp_path / f"cut{s}", callbacks=[Interrupt()])
        assert load_checkpoint(tmp_path / f"cut{s}/checkpoints/last.pt")["step"] == 12
    resumed = _stacked(cfg, bn_net, tmp_path, tag="cut", resume=True,
                       models=[bn_net() for _ in SEEDS])
    _assert_same_runs(sep, resumed, tmp_path, stk_tag="cut")


def test_refuses_what_it_cannot_stack_exactly(tmp_path):
    def dropout_net():
        return nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(32 * 32, 10))

    with pytest.raises(TrainingError, match="random numbers"):
        _stacked(_cfg(), dropout_net, tmp_path)
    assert not any(tmp_path.iterdir())  # refused before anything was written
    cfgs = [_cfg(**{"train.seed": 0}), _cfg(**{"train.seed": 1, "optim.lr": 0.1})]
    with pytest.raises(TrainingError, match=r"differ in more than train.seed \(optim.lr\)"):
        fit_stacked([plain_net(), plain_net()], "digits", cfgs)
    with pytest.raises(TrainingError, match="penalty"):
        fit_stacked([plain_net(), plain_net()], "digits",
                    [_cfg(**{"train.seed": s, "optim.l2": 1e-3}) for s in (0, 1)])


def test_muon_is_refused():
    from cnnlab.train.stacked import config_problem

    cfgs = [_cfg(**{"optim.name": "sgd", "optim.muon": True, "train.seed": s}) for s in SEEDS]
    assert "muon" in config_problem(cfgs)
