"""A sweep that cannot run is refused before it starts: one line, exit 2, nothing written."""

from __future__ import annotations

import pytest
import torch

from cnnlab.cli import main
from cnnlab.experiments import spec_from_dict
from cnnlab.experiments.executor import _log_row, check_sweep

SPEC = """
name = "tiny-check"
reps = 1
[base.data]
spec = "digits"
limit = 64
batch_size = 32
[base.model]
name = "vgg"
width = 4
[base.train]
epochs = 1
device = "cpu"
[grid]
{grid}
"""


def _refused(tmp_path, capsys, grid: str, *args: str) -> str:
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(grid=grid))
    out = tmp_path / "out"
    rc = main(["sweep", str(spec), "--out", str(out), *args])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert rc == 2, captured
    assert err.startswith("cnnlab: error: ") and "\n" not in err, err
    assert "Traceback" not in captured.out + captured.err
    assert not out.exists()  # no folder, no results.sqlite, no runs/, no report/
    assert "run(s) to do" not in captured.out  # no run started
    return err


def test_misspelled_model_axis_key(tmp_path, capsys):
    err = _refused(tmp_path, capsys, '"model.layrs" = [1, 2]')
    assert "cell model.layrs=1" in err and "'layrs'" in err
    assert "did you mean 'layers'?" in err


def test_bad_data_spec(tmp_path, capsys):
    err = _refused(tmp_path, capsys, '"model.blocks" = [1, 2]', "--data", "digts")
    assert "unknown dataset 'digts'" in err and "digits" in err


def test_bad_augment(tmp_path, capsys):
    err = _refused(tmp_path, capsys, '"model.blocks" = [1]', "--set", "data.augment='flipp'")
    assert "'flipp'" in err and "did you mean 'flip'?" in err


def test_cell_whose_model_cannot_take_the_input(tmp_path, capsys):
    err = _refused(tmp_path, capsys, '"model.blocks" = [5, 6]')
    assert "cell model.blocks=6" in err and "32x32" in err and "at most 5 blocks" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is available here")
def test_device_without_cuda(tmp_path, capsys):
    err = _refused(tmp_path, capsys, '"model.blocks" = [1]', "--device", "cuda")
    assert "device 'cuda'" in err and "no CUDA GPU" in err


def test_check_passes_a_good_grid():
    spec = spec_from_dict({"name": "ok", "reps": 1,
                           "base": {"data": {"spec": "digits", "limit": 64},
                                    "model": {"name": "vgg", "width": 4},
                                    "train": {"device": "cpu"}},
                           "grid": {"model.blocks": [1, 5], "model.layers": [1, 3]}})
    check_sweep(spec)  # no error, nothing built for real


def test_run_lines_show_the_whole_error():
    lines = []
    msg = "TrainingError: " + "a long message naming what to fix " * 6 + "and the end"
    _log_row(lines.append, {"cell": "model.blocks=1", "rep": 0, "status": "failed",
                            "error": msg + "\nsecond line"}, 1, 2)
    assert lines[0].endswith(f"({msg})")


def test_bad_value_inside_an_axis(tmp_path, capsys):
    err = _refused(tmp_path, capsys, '"optim.lr" = [1e-3, "fast", 1e-2]')
    assert "cell optim.lr=fast" in err and "optim.lr" in err
