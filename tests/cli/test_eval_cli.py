import json

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main

SMALL = ["--set", "data.limit=160", "--set", "model.width=4", "--set", "model.blocks=2",
         "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    assert main(["train", "vgg", "--data", "digits", "--epochs", "1", "--out", str(out),
                 *SMALL]) == 0
    return out


def test_eval_writes_metrics_and_confusion_png(run_dir, capsys):
    capsys.readouterr()
    assert main(["eval", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "digits test split" in out and "top-1" in out and "top-5" in out
    result = json.loads((run_dir / "eval" / "eval.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert result["n"] == sum(result["counts"]) == 359  # the run's own test carving
    assert result["top1"] == pytest.approx(summary["test_acc"], abs=1e-6)
    assert result["top1"] <= result["top5"] and result["topk"] == 5
    assert len(result["confusion"]) == 10 and set(result["per_class"]) == set(result["classes"])
    assert (run_dir / "eval" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["eval", str(run_dir), "--which", "last", "--split", "val", "--json",
                 "--out", str(run_dir / "ev2")]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "val"


def _three_class_folder(root):
    rng = np.random.default_rng(0)
    for c in "abc":
        (root / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), "L").save(
                root / c / f"{i}.png")
    return root


def test_eval_bad_inputs_are_one_line(run_dir, tmp_path, capsys):
    folder = _three_class_folder(tmp_path / "f3")
    no_best = tmp_path / "nobest"
    (no_best / "checkpoints").mkdir(parents=True)
    (no_best / "config.json").write_text((run_dir / "config.json").read_text())
    cases = [
        ([str(tmp_path / "nothing")], "run folder", "does not exist"),
        ([str(tmp_path)], "run folder", "has no config.json"),
        ([str(no_best)], "checkpoints/best.pt does not exist", "try --which last"),
        ([str(run_dir), "--data", f"folder:{folder}"], "has 3 classes",
         "trained on 10 (digits)"),
        ([str(run_dir), "--resize", "16"], "has images of 16x16x1", "pass --resize 32"),
    ]
    capsys.readouterr()
    for args, *parts in cases:
        assert main(["eval", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("cnnlab: error: ") and len(err.strip().splitlines()) == 1, err
        assert all(p in err for p in parts) and "Traceback" not in err, err
