"""`cnnlab speedrun` end to end on the bundled digits, and its one-line errors."""

import json

from cnnlab.cli import main

TINY = ["--data", "digits", "--limit", "256", "--epochs", "2", "--set", "model.name='speednet-s'",
        "--set", "data.batch_size=64", "--set", "data.eval_batch_size=256", "--quiet"]


def test_speedrun_digits_writes_a_run_folder(tmp_path, capsys):
    out = tmp_path / "speed"
    assert main(["speedrun", "--out", str(out), "--curve", "--target", "0.2", *TINY]) == 0
    text = capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert s["tta"] == "flip-translate" and s["recipe"] == "fast"
    for key in ("test_acc", "test_acc_no_tta"):
        assert 0 <= s[key] <= 1
    assert s["total_wall_time"] > s["wall_time"] > 0  # set-up and evaluation included
    assert s["epochs_completed"] == 2 and s["target"] == 0.2
    assert (s["time_to_target"] is None) == (s["target_epoch"] is None)
    assert (out / "config.json").is_file() and (out / "metrics.csv").is_file()
    assert "with flip-translate TTA" in text and "wall" in text
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["optim"]["muon"] and cfg["data"]["alternating_flip"]
    assert cfg["model"]["name"] == "speednet-s"


def test_speedrun_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(["speedrun", "--target", "1.5", "--out", str(tmp_path / "a"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnnlab: error: --target") and "\n" not in err
    assert main(["speedrun", "--recipe", "fastest", "--out", str(tmp_path / "b"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown recipe 'fastest'" in err and "fast" in err and "\n" not in err
    assert main(["speedrun", "--data", "nosuchdata", "--out", str(tmp_path / "c"),
                 "--quiet"]) == 2
    assert "\n" not in capsys.readouterr().err.strip()
