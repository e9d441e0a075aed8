import os

import pytest
import torch

torch.set_num_threads(1)  # tests use tiny models; one thread is faster and deterministic

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
CIFAR_JPEG = os.path.join(SHARED_DATA, "cifar10-train.tar.gz")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's real cache from tests."""
    if "CNNLAB_HOME" not in os.environ:
        monkeypatch.setenv("CNNLAB_HOME", str(tmp_path_factory.getbasetemp() / "cnnlab-home"))


@pytest.fixture
def toy():
    from cnnlab.data.sources.synthetic import toy_dataset

    return toy_dataset(n=192, size=16, channels=3, classes=4, seed=0, test=64)


@pytest.fixture
def tiny_cfg():
    from cnnlab.config import RunConfig

    return RunConfig().set(**{
        "model.blocks": 2, "model.layers": 1, "model.width": 8, "train.epochs": 2,
        "data.batch_size": 16, "optim.lr": 1e-2, "train.quiet": True, "data.augment": "none",
        "train.device": "cpu",
    })
